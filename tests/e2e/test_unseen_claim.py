"""An exchange whose answer is lost (the database went away after committing it): its claim is given back, not
left to become ``unknown`` (those messages were never sent), and the outcomes it carried are not recorded twice."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from dispatcher.campaign import load_campaign
from dispatcher.engine import Dispatcher
from dispatcher.errors import TransientError
from dispatcher.loader import load
from dispatcher.queue import TaskQueue
from dispatcher.ratelimit import RateLimiter
from dispatcher.runtime import http_client
from dispatcher.settings import Settings
from dispatcher.store import Store, init_db, make_engine

from .conftest import SECRET_ENV, write_campaign


class _DropsAfterSecondClaim(Store):
    """The second claim commits, then the connection drops before its rows are read back."""

    claims = 0

    def exchange(self, batch_id: int, outcomes: Any, limit: int, now: Any, **kw: Any) -> Any:
        out = super().exchange(batch_id, outcomes, limit, now, **kw)
        if limit > 0:
            self.claims += 1
            if self.claims == 2:
                raise TransientError("database connection lost: server closed the connection unexpectedly")
        return out


def test_messages_claimed_as_the_database_went_away_are_sent_once_by_the_retry(env, sandbox, redis_url, tmp_path):
    contacts = "phone,opt_in,first_name\n" + "".join(f"+1202555{i:04d},yes,P{i}\n" for i in range(40))
    path = write_campaign(env.tmp, "e2e-unseen", contacts)
    environ = {**SECRET_ENV, "SANDBOX_URL": sandbox.url}
    settings = Settings(redis_url=redis_url, database_url=f"sqlite:///{tmp_path / 'unseen.db'}", send_concurrency=4)
    engine = make_engine(settings.database_url)
    init_db(engine)
    store = _DropsAfterSecondClaim(engine)
    d = Dispatcher(settings, store, TaskQueue(settings), RateLimiter(redis.Redis.from_url(redis_url)),
                   lambda: http_client(settings), environ=environ)
    load(load_campaign(path, environ=environ), store, TaskQueue(settings))
    (batch_id,) = {m["batch_id"] for m in store.messages(1)}

    with pytest.raises(TransientError):
        d.send_batch(batch_id)                       # the worker task would be retried
    statuses = [m["status"] for m in store.messages(1)]
    assert "sending" not in statuses and "unknown" not in statuses   # the unseen claim went back to queued
    sent_first = statuses.count("sent")
    assert 0 < sent_first < 40

    result = d.send_batch(batch_id)                  # the retry
    assert result.sent == 40 - sent_first
    phones = [r["json"]["phone_number"] for r in sandbox.requests("dropcowboy") if r["status"] == 200]
    assert len(phones) == 40 and len(set(phones)) == 40     # every recipient once
    assert store.campaign(1).state == "completed"
    attempts = store.attempts_by_message(1)      # the first wave's outcomes, written by the failed exchange, not twice
    assert len(attempts) == 40 and all(len(a) == 1 for a in attempts.values())
