"""kill -9 of the whole worker process group, several times, in the middle of a 5,000-recipient campaign."""

from __future__ import annotations

import os
import random
import signal
import time

import pytest

from .conftest import (audit, campaign_state, contacts, counts, elapsed, in_flight, record_figures, requests_seen, statuses,
                       wait_until, write_campaign)

RECIPIENTS = 5000
KILLS = 3
PROCESSES = 2          # worker processes per node (celery -c)
SEND_CONCURRENCY = 8   # HTTP requests in flight per process


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_worker_killed_mid_send_three_times_loses_nothing_and_sends_nothing_twice(multi_env, sandbox):
    env = multi_env
    seed = int(os.environ.get("RELIABILITY_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    env.vars.update(SEND_CONCURRENCY=str(SEND_CONCURRENCY), STALE_AFTER="5")
    sandbox.configure(latency_ms=15)
    path = write_campaign(env.tmp, "rel-kill", contacts(RECIPIENTS))
    started = time.monotonic()
    env.start_beat()
    worker = env.start_worker(concurrency=PROCESSES)
    env.cli("run", str(path), check=True)

    caught: set[str] = set()   # recipients claimed (`sending`) and not recorded right after a kill
    per_kill: list[int] = []
    for k in range(KILLS):
        # a random moment in the k-th quarter of the campaign, measured by requests the provider received
        target = int(RECIPIENTS * rng.uniform(0.1 + 0.25 * k, 0.25 + 0.25 * k))
        wait_until(lambda: requests_seen(sandbox) >= target, timeout=40, interval=0.05,
                   what=f"{target} requests before kill {k + 1} (seed {seed})")
        time.sleep(rng.uniform(0, 0.2))
        env.stop(worker, signal.SIGKILL)
        time.sleep(0.3)   # a COMMIT the dead process had already sent still lands: read after it
        now_in_flight = in_flight(env.vars["DATABASE_URL"], "rel-kill")
        per_kill.append(len(now_in_flight - caught))
        caught |= now_in_flight
        worker = env.start_worker(concurrency=PROCESSES)

    try:
        wait_until(lambda: campaign_state(env.vars["DATABASE_URL"], "rel-kill")[0] == "completed", timeout=150,
                   interval=0.5, what=f"campaign completion (seed {seed})")
    except AssertionError as exc:   # say where it stood, for whoever meets this
        tail = "\n".join(env.output().splitlines()[-40:])
        raise AssertionError(f"{exc}: {counts(env.vars['DATABASE_URL'], 'rel-kill')}\n{tail}") from None
    took = elapsed(started)
    a = audit(sandbox, env.vars["DATABASE_URL"], "rel-kill")
    record_figures("worker_kill", seed=seed, recipients=a.recipients, kills=KILLS, caught_in_flight_per_kill=per_kill,
                   by_status=a.by_status, duplicates=a.duplicates, lost=len(a.lost),
                   unknown_received_by_provider=a.unknown_received, requests=a.requests, seconds=took)

    assert a.recipients == RECIPIENTS
    a.assert_nothing_lost_nothing_twice()
    unknown = a.by_status.get("unknown", 0)
    # a process holds SEND_CONCURRENCY requests in flight and as many claimed messages waiting for a thread
    claimed_at_most = PROCESSES * 2 * SEND_CONCURRENCY
    assert all(n <= claimed_at_most for n in per_kill), per_kill
    assert unknown <= KILLS * claimed_at_most, (unknown, per_kill)
    # every message caught between claim and record, and only those, ends unknown (never re-sent)
    final = statuses(env.vars["DATABASE_URL"], "rel-kill")
    assert {p for p, s in final.items() if s == "unknown"} == caught
    explained = "the worker stopped between sending and recording"
    assert all(r.startswith(explained) for r in a.unknown_reasons), a.unknown_reasons
