"""Batch tasks go to Redis in one pipeline per call, and are still what Celery's own send_task sends: the same
task messages (that a worker consumes, see tests/e2e/test_pipeline.py) and a task-sent event for each (Flower,
see tests/e2e/test_flower.py). A pipeline that fails sends every task again. Real Redis."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from kombu.exceptions import BatchPublishError
from kombu.transport import redis as kombu_redis

from dispatcher.queue import QUEUE, SEND_BATCH, TaskQueue
from dispatcher.settings import Settings

ITEMS = [(7, "spring batch 1 of 3"), (8, "spring batch 2 of 3"), (9, "spring batch 3 of 3")]


def _comparable(raw: bytes) -> dict[str, Any]:
    """A queued task message without what differs between any two sends (ids, delivery tag)."""
    message = json.loads(raw)
    for key in ("id", "root_id"):
        message["headers"].pop(key)
    for key in ("correlation_id", "delivery_tag"):
        message["properties"].pop(key)
    return message


def _queued(redis_client) -> list[bytes]:  # type: ignore[no-untyped-def]
    return list(reversed(redis_client.lrange(QUEUE, 0, -1)))   # LPUSH: the first sent is last


def test_batch_tasks_are_the_messages_send_task_sends_with_a_sent_event_each(redis_url: str, redis_client) -> None:  # type: ignore[no-untyped-def]
    queue = TaskQueue(Settings(redis_url=redis_url))
    with queue.app.producer_or_acquire() as producer:
        for batch_id, label in ITEMS:   # Celery's own way, one task at a time
            queue.app.send_task(SEND_BATCH, args=[batch_id], argsrepr=label, producer=producer, queue=QUEUE)
    one_by_one = _queued(redis_client)
    redis_client.delete(QUEUE)
    events = redis_client.pubsub()
    events.psubscribe(f"/{redis_client.connection_pool.connection_kwargs.get('db', 0)}.celeryev/*")
    events.get_message(timeout=1)   # the subscription's confirmation

    assert queue.send_batches(ITEMS) == 3
    batched = _queued(redis_client)
    assert [_comparable(m) for m in batched] == [_comparable(m) for m in one_by_one]
    for raw, (batch_id, label) in zip(batched, ITEMS):
        message = json.loads(raw)
        assert json.loads(base64.b64decode(message["body"]))[0] == [batch_id]
        assert message["headers"]["argsrepr"] == label and message["headers"]["task"] == SEND_BATCH

    sent: list[dict[str, Any]] = []
    deadline = time.monotonic() + 5
    while len(sent) < 3 and time.monotonic() < deadline:
        got = events.get_message(timeout=0.5)
        if got and got["type"] == "pmessage":
            event = json.loads(got["data"])
            sent.append(json.loads(base64.b64decode(event["body"])))
    events.close()
    assert [e["type"] for e in sent] == ["task-sent"] * 3
    assert [e["uuid"] for e in sent] == [json.loads(m)["headers"]["id"] for m in batched]
    assert {e["queue"] for e in sent} == {QUEUE}


def test_a_failed_pipeline_sends_every_task_again_one_at_a_time(redis_url: str, redis_client,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    def lost(self: Any) -> None:
        self.pipeline.reset()
        raise BatchPublishError("connection lost mid-pipeline")

    monkeypatch.setattr(kombu_redis.PublishBatch, "flush", lost)
    queue = TaskQueue(Settings(redis_url=redis_url))
    assert queue.send_batches(ITEMS) == 3
    assert [json.loads(m)["headers"]["argsrepr"] for m in _queued(redis_client)] == [label for _, label in ITEMS]
