"""Redis loses everything mid-campaign: the reconciler finds the work the database still has queued."""

from __future__ import annotations

import time

import pytest

from .conftest import (audit, campaign_state, contacts, elapsed, record_figures, requests_seen, wait_until,
                       write_campaign)

RECIPIENTS = 3000


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_redis_flushed_mid_campaign_reconciler_re_enqueues_and_nothing_is_sent_twice(multi_env, sandbox, redis_client):
    env = multi_env
    env.vars.update(SEND_CONCURRENCY="8", STALE_AFTER="5")
    sandbox.configure(latency_ms=10)
    path = write_campaign(env.tmp, "rel-flush", contacts(RECIPIENTS))
    started = time.monotonic()
    env.start_beat()
    env.start_worker(concurrency=2)
    env.cli("run", str(path), check=True)
    wait_until(lambda: requests_seen(sandbox) >= RECIPIENTS // 5, timeout=40, interval=0.05,
               what="a fifth of the campaign sent")
    waiting = redis_client.llen("dispatcher")
    redis_client.flushdb()   # the test's Redis database only (db 9), never the whole server
    flushed_at = requests_seen(sandbox)
    assert redis_client.llen("dispatcher") == 0

    wait_until(lambda: campaign_state(env.vars["DATABASE_URL"], "rel-flush")[0] == "completed", timeout=75,
               interval=0.5, what="campaign completion after FLUSHDB")
    took = elapsed(started)
    a = audit(sandbox, env.vars["DATABASE_URL"], "rel-flush")
    requeued = env.output().count("batches re-enqueued")
    record_figures("redis_flush", recipients=a.recipients, tasks_lost_with_redis=waiting, sent_before_flush=flushed_at,
                   reconciler_requeues=requeued, by_status=a.by_status, duplicates=a.duplicates, lost=len(a.lost),
                   seconds=took)

    assert waiting > 0, "the flush should have caught tasks waiting on the broker"
    a.assert_nothing_lost_nothing_twice(final=("sent",))
    assert requeued >= 1, "the reconciler should have re-enqueued the batches Redis lost"
