"""PostgreSQL restarts mid-campaign: workers back off and carry on; nothing is lost or sent twice."""

from __future__ import annotations

import time

import pytest

from .conftest import (audit, campaign_state, contacts, elapsed, record_figures, requests_seen, wait_until,
                       write_campaign)

RECIPIENTS = 2000
DOWN_FOR = 3.0   # seconds the database stays down


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_postgres_restart_mid_campaign_workers_back_off_and_finish(pg_env, private_pg, sandbox):
    env = pg_env
    # STALE_AFTER (default 120 s) only has to outlast the restart here; no worker dies in this test.
    env.vars.update(SEND_CONCURRENCY="8", STALE_AFTER="15")
    sandbox.configure(latency_ms=10)
    path = write_campaign(env.tmp, "rel-pg", contacts(RECIPIENTS))
    started = time.monotonic()
    env.start_beat()
    env.start_worker(concurrency=2)
    env.cli("run", str(path), check=True)
    wait_until(lambda: requests_seen(sandbox) >= RECIPIENTS // 4, timeout=40, interval=0.05,
               what="a quarter of the campaign sent")
    before = requests_seen(sandbox)
    private_pg.restart(down_for=DOWN_FOR)
    during = requests_seen(sandbox) - before

    wait_until(lambda: campaign_state(env.vars["DATABASE_URL"], "rel-pg")[0] == "completed", timeout=90,
               interval=0.5, what="campaign completion after the database restart")
    took = elapsed(started)
    a = audit(sandbox, env.vars["DATABASE_URL"], "rel-pg")
    log = env.output()
    record_figures("postgres_restart", recipients=a.recipients, down_seconds=DOWN_FOR, sent_before=before,
                   requests_during_restart=during, waits_to_record=log.count("outcomes: database unavailable"),
                   claims_given_back=log.count("were given back unsent"),
                   task_retries=log.count("retry: Retry in"), by_status=a.by_status, duplicates=a.duplicates,
                   lost=len(a.lost), seconds=took)

    a.assert_nothing_lost_nothing_twice(final=("sent",))   # waves in flight were recorded after the restart
    assert "database unavailable" in log, "the workers should have met the restart"
    # backing off: a wave waits for the database to record what it sent; a task not yet sending is retried later
    assert "trying again in" in log or "retry: Retry in" in log, "nobody backed off"
