"""A worker stopped the usual way (SIGTERM: Celery's warm shutdown) while a batch's last requests are still out.

A batch task returns as soon as nothing more of its batch is left to claim, and its last requests are recorded by a
thread of the worker process while the next batch starts (``send_batch(hand_off=True)``). Stopping the worker must
not cut those threads off: what they sent is recorded before the process exits, so nothing is left ``sending``
(which the reconciler would turn into ``unknown``).
"""

from __future__ import annotations

import os
import signal

import pytest

from .conftest import audit, campaign_state, contacts, counts, in_flight, requests_seen, wait_until, write_campaign

RECIPIENTS = 40


@pytest.mark.timeout(120)
def test_warm_shutdown_records_the_sends_still_out_before_the_worker_exits(renv, sandbox):
    env = renv
    # 8 requests in flight and 4 claimed waiting: a batch of 10 is claimed at once and handed off at once
    env.vars.update(SEND_CONCURRENCY="8", BATCH_SIZE="10", STALE_AFTER="60")
    sandbox.configure(latency_ms=2500)
    path = write_campaign(env.tmp, "rel-stop", contacts(RECIPIENTS))
    worker = env.start_worker(concurrency=1)
    env.cli("run", str(path), check=True)
    db = env.vars["DATABASE_URL"]
    wait_until(lambda: len(in_flight(db, "rel-stop")) >= 8, timeout=30, interval=0.05, what="8 messages claimed")
    assert requests_seen(sandbox) == 0    # every one of them still waits for its answer

    os.kill(worker.pid, signal.SIGTERM)   # to the main process only, as `docker stop` or systemd's KillMode=mixed do
    worker.wait(30)
    assert in_flight(db, "rel-stop") == set(), counts(db, "rel-stop")
    stopped_at = counts(db, "rel-stop")
    assert stopped_at["sent"] >= 8 and stopped_at["unknown"] == 0, stopped_at

    # the rest goes out after a restart, and nothing is sent twice
    env.start_worker(concurrency=1)
    wait_until(lambda: campaign_state(db, "rel-stop")[0] == "completed", timeout=60, interval=0.2,
               what=f"completion after the restart ({counts(db, 'rel-stop')})")
    a = audit(sandbox, db, "rel-stop")
    a.assert_nothing_lost_nothing_twice(final=("sent",))
    assert a.requests == RECIPIENTS
