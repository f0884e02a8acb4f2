"""The campaign's rate limit holds across worker processes and nodes, measured at the provider."""

from __future__ import annotations

import json

from .conftest import write_campaign

PROVIDER = ('provider:\n  name: dropcowboy\n  base_url: "${SANDBOX_URL}/v1"\n'
            '  credentials: {team_id: "${DROPCOWBOY_TEAM_ID}", secret: "${DROPCOWBOY_SECRET}"}\n'
            '  options: {pool_id: text, caller_id: "+15557778888"}\n  rate_limit: "%s"\n')


def _ts(value) -> float:  # type: ignore[no-untyped-def]
    from datetime import datetime

    return float(value) if isinstance(value, (int, float)) else datetime.fromisoformat(value).timestamp()


def _max_in_window(times: list[float], window: float = 1.0) -> int:
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


def test_two_worker_nodes_together_hold_the_campaign_rate(env, sandbox):
    n = 60
    contacts = "phone,opt_in,first_name\n" + "".join(f"+1202555{3000 + i:04d},yes,P{i}\n" for i in range(n))
    path = write_campaign(env.tmp, "e2e-rate", contacts, provider_block=PROVIDER % "12/s")
    env.vars["BATCH_SIZE"] = "10"                    # several batches, so both nodes take part
    sandbox.configure(throttle_rps=12)              # a strict provider: anything faster gets 429
    env.start_worker(concurrency=2)
    env.start_worker(concurrency=2)
    env.cli("run", str(path), "--wait", "--timeout", "90", check=True)
    got = [r for r in sandbox.requests("dropcowboy") if r["status"] == 200]
    assert len(got) == n
    assert not [r for r in sandbox.requests("dropcowboy") if r["status"] == 429]
    times = [_ts(r["received_at"]) for r in got]
    assert _max_in_window(times) <= 12 * 1.01 + 1
    span = max(times) - min(times)
    assert span >= (n - 1) / 12 * 0.95             # never faster than the limit allows
    report = json.loads(env.cli("report", "e2e-rate", "--format", "json", check=True).stdout)
    assert report["counts"]["sent"] == n


def test_throttling_lowers_the_effective_rate_and_every_message_still_goes(env, sandbox):
    n = 40
    contacts = "phone,opt_in,first_name\n" + "".join(f"+1202555{4000 + i:04d},yes,P{i}\n" for i in range(n))
    path = write_campaign(env.tmp, "e2e-throttle", contacts, provider_block=PROVIDER % "30/s")
    sandbox.configure(throttle_rps=8)               # the provider is stricter than the campaign says
    env.start_worker()
    env.cli("run", str(path), "--wait", "--timeout", "90", check=True)
    ok = [r for r in sandbox.requests("dropcowboy") if r["status"] == 200]
    throttled = [r for r in sandbox.requests("dropcowboy") if r["status"] == 429]
    assert len({r["json"]["phone_number"] for r in ok}) == n and len(ok) == n
    assert throttled, "the sandbox should have throttled a 30/s sender at 8/s"
    status = env.cli("status", "e2e-throttle", check=True).stdout
    assert "/s of 30/s" in status                   # the effective provider rate is shown
