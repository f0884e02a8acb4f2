"""Day-to-day operations with real worker processes: pause/resume, cancel, retry after a provider outage."""

from __future__ import annotations

import json
import time
from collections import Counter

from .conftest import wait_until, write_campaign


def _contacts(n: int) -> str:
    return "phone,opt_in,first_name\n" + "".join(f"+1202555{1000 + i:04d},yes,P{i}\n" for i in range(n))


def _report(env, name):
    return json.loads(env.cli("report", name, "--format", "json", check=True).stdout)


def _start_then(env, sandbox, name: str, recipients: int, command: str, after: int) -> int:  # type: ignore[no-untyped-def]
    """Run a 20/s campaign, issue ``command`` after ``after`` sends; returns the sends once nothing more goes out."""
    path = write_campaign(env.tmp, name, _contacts(recipients), rate_limit="20/s")
    env.start_worker()
    env.cli("run", str(path), check=True)
    wait_until(lambda: len(sandbox.requests("dropcowboy")) >= after, what="first sends")
    env.cli(command, name, check=True)
    time.sleep(3)                      # within a few seconds nothing more goes out
    settled = len(sandbox.requests("dropcowboy"))
    time.sleep(2)
    assert len(sandbox.requests("dropcowboy")) == settled
    return settled


def test_pause_mid_campaign_then_resume_sends_every_recipient_exactly_once(env, sandbox):
    paused_at = _start_then(env, sandbox, "e2e-pause", 120, "pause", after=20)
    assert paused_at < 120
    assert _report(env, "e2e-pause")["campaign"]["state"] == "paused"

    env.cli("resume", "e2e-pause", check=True)
    wait_until(lambda: _report(env, "e2e-pause")["campaign"]["state"] == "completed", timeout=60, what="completion")
    sent = Counter(r["json"]["phone_number"] for r in sandbox.requests("dropcowboy"))
    assert len(sent) == 120 and set(sent.values()) == {1}


def test_cancel_stops_the_campaign_and_cancels_what_was_left(env, sandbox):
    n = _start_then(env, sandbox, "e2e-cancel", 200, "cancel", after=10)
    rep = _report(env, "e2e-cancel")
    assert rep["campaign"]["state"] == "cancelled"
    assert rep["counts"]["cancelled"] + rep["counts"].get("sent", 0) == 200
    assert rep["counts"].get("sent", 0) == n


def test_retry_of_a_failed_batch_after_the_provider_recovers(env, sandbox):
    path = write_campaign(env.tmp, "e2e-retry", _contacts(10), extra="max_attempts: 1\n")
    sandbox.configure(failure_rate=1.0, failure_status=503)
    env.start_worker()
    env.cli("run", str(path), "--wait", "--timeout", "60", check=True)
    rep = _report(env, "e2e-retry")
    assert rep["counts"]["failed"] == 10
    assert all("HTTP 503" in m["reason"] for m in rep["messages"])
    status = env.cli("status", "e2e-retry", check=True).stdout
    assert "batches with failed" in status

    sandbox.configure(failure_rate=0.0)
    dry = env.cli("retry", "e2e-retry", "--batch", "1", "--dry-run", check=True).stdout
    assert "10 message(s)" in dry
    env.cli("retry", "e2e-retry", "--batch", "1", "--yes", check=True)
    wait_until(lambda: _report(env, "e2e-retry")["counts"].get("sent", 0) == 10, timeout=60, what="retried sends")
    rep = _report(env, "e2e-retry")
    assert all(len(m["attempts"]) == 2 for m in rep["messages"])
    assert [a["http_status"] for a in rep["messages"][0]["attempts"]] == [503, 200]
    ok = Counter(r["json"]["phone_number"] for r in sandbox.requests("dropcowboy") if r["status"] == 200)
    assert len(ok) == 10 and set(ok.values()) == {1}
