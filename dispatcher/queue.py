"""The broker side of the pipeline: Celery configuration and enqueueing by task name.

``dispatcher`` never imports ``workers``: it sends tasks by name through a producer-only Celery
app that shares this configuration with the worker app (``workers.app``). Task arguments are ids
only; ``argsrepr`` makes Flower show campaign progress ("winter-sale batch 12 of 400").
"""

from __future__ import annotations

from typing import Any, Iterable

from celery import Celery
from kombu import Exchange, Queue
from kombu.exceptions import BatchPublishError
from kombu.exceptions import OperationalError as KombuOperationalError

from .errors import TransientError
from .settings import Settings

SEND_BATCH = "dispatcher.send_batch"
RELEASE_DUE = "dispatcher.release_due"
RECONCILE = "dispatcher.reconcile"
PROCESS_WEBHOOKS = "dispatcher.process_webhooks"
QUEUE = "dispatcher"                    # send work only: its length tells the reconciler whether work was lost
PERIODIC_QUEUE = "dispatcher-periodic"  # beat's housekeeping, kept apart so it never looks like pending sends
_PERIODIC = (RELEASE_DUE, RECONCILE, PROCESS_WEBHOOKS)
_PIPELINE_COMMANDS = 1000   # Redis commands per pipeline: a task is two (the task and its task-sent event)


def celery_config(settings: Settings) -> dict[str, Any]:
    return {
        "broker_url": settings.redis_url,
        "result_backend": None,
        "task_ignore_result": True,
        "task_default_queue": QUEUE,
        "task_queues": tuple(Queue(q, Exchange(q), routing_key=q) for q in (QUEUE, PERIODIC_QUEUE)),  # workers take both
        "task_routes": {name: {"queue": PERIODIC_QUEUE} for name in _PERIODIC},
        "task_acks_late": True,                 # a task lost with its worker is redelivered ...
        "task_reject_on_worker_lost": True,     # ... at once when a pool process dies
        "worker_prefetch_multiplier": 1,
        "broker_transport_options": {"visibility_timeout": 3600},
        "broker_connection_retry_on_startup": True,
        "task_send_sent_event": True,
        "worker_send_task_events": True,
        "worker_hijack_root_logger": False,
        "beat_schedule": {
            "release-due": {"task": RELEASE_DUE, "schedule": 2.0, "options": {"queue": PERIODIC_QUEUE}},
            "reconcile": {"task": RECONCILE, "schedule": 10.0, "options": {"queue": PERIODIC_QUEUE}},
            "process-webhooks": {"task": PROCESS_WEBHOOKS, "schedule": 5.0, "options": {"queue": PERIODIC_QUEUE}},
        },
        "timezone": "UTC",
    }


class TaskQueue:
    """Sends dispatcher tasks to Redis by name."""

    def __init__(self, settings: Settings) -> None:
        self.app = Celery("dispatcher-producer", set_as_current=False)
        self.app.conf.update(celery_config(settings))

    def send_batches(self, items: Iterable[tuple[int, str]], *, countdown: float | None = None) -> int:
        """Enqueue ``dispatcher.send_batch(batch_id)`` for each (batch_id, argsrepr); returns how many.

        The tasks, and the task-sent events Flower shows, go to Redis in one pipeline (kombu's ``Producer.batch``)
        instead of two round trips each. When the pipeline fails, what it delivered is uncertain: every task is
        sent again one at a time, with kombu's retries (a task sent twice is harmless, a claim takes each message
        once). Raises ``TransientError`` when the broker cannot be reached.
        """
        items = list(items)
        try:
            with self.app.producer_or_acquire() as producer:
                try:
                    with producer.batch(max_size=_PIPELINE_COMMANDS):
                        self._send_each(producer, items, countdown)
                except BatchPublishError:
                    self._send_each(producer, items, countdown)
        except (KombuOperationalError, BatchPublishError, OSError) as exc:
            raise TransientError(f"cannot reach the broker: {exc}") from exc
        return len(items)

    def _send_each(self, producer: Any, items: list[tuple[int, str]], countdown: float | None) -> None:
        for batch_id, label in items:
            self.app.send_task(SEND_BATCH, args=[batch_id], argsrepr=label, countdown=countdown,
                               producer=producer, queue=QUEUE)

    def send(self, name: str, *args: int) -> None:
        try:
            self.app.send_task(name, args=list(args), queue=PERIODIC_QUEUE if name in _PERIODIC else QUEUE)
        except (KombuOperationalError, OSError) as exc:
            raise TransientError(f"cannot reach the broker: {exc}") from exc

    def backlog(self) -> int:
        """Tasks waiting in the broker queue (not counting those a worker holds)."""
        try:
            with self.app.connection_for_write() as conn:
                return int(conn.default_channel.client.llen(QUEUE))
        except Exception as exc:  # noqa: BLE001 - any broker failure is transient here
            raise TransientError(f"cannot reach the broker: {exc}") from exc

    def close(self) -> None:
        self.app.close()


def batch_label(campaign: str, seq: int, total: int) -> str:
    return f"{campaign} batch {seq} of {total}"
