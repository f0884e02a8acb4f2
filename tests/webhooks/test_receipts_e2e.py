"""End to end, as deployed: sandbox receipts -> the receiver (its own process) -> the database, with a
real worker asking for receipts; then a STOP reply keeps the next campaign away from that number."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Iterator

import httpx
import pytest

from tests.conftest import ROOT, free_port, wait_http
from tests.e2e.conftest import Env, wait_until, write_campaign

TOKEN = "e2e-webhook-token-8d7c6b5a4f3e"
CONTACTS = "phone,opt_in,first_name\n+12025550101,yes,Ada\n+12025550102,yes,Grace\n+12025550103,yes,Tim\n"
STOPPED = "+12025550102"


@pytest.fixture()
def webhooks(env: Env) -> Iterator[str]:
    """`python -m dispatcher.webhooks` on a free port, and the worker's environment pointing at it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env.vars.update(WEBHOOK_BASE_URL=url, WEBHOOK_TOKEN=TOKEN)
    log = env.tmp / "webhooks.log"
    env.logs.append(log)
    proc = subprocess.Popen([sys.executable, "-m", "dispatcher.webhooks", "--port", str(port)], cwd=ROOT,
                            env=env.vars, stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    try:
        wait_http(url + "/healthz")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _report(env: Env, name: str) -> dict:
    return json.loads(env.cli("report", name, "--format", "json", check=True).stdout)


def test_receipts_mark_messages_delivered_and_a_stop_reply_keeps_the_next_campaign_away(env, sandbox, webhooks):
    sandbox.configure(receipts={"enabled": True, "delay_ms": 100, "status": "delivered"})
    env.start_worker()
    path = write_campaign(env.tmp, "e2e-receipts", CONTACTS)
    env.cli("run", str(path), "--wait", "--timeout", "60", check=True)

    report = wait_until(lambda: (r := _report(env, "e2e-receipts"))["counts"].get("delivered") == 3 and r,
                        timeout=30, what="three delivery receipts")
    assert all(m["status"] == "delivered" and m["cost"] for m in report["messages"])
    sent = sandbox.requests("dropcowboy")
    assert all(req["json"]["callback_url"].startswith(f"{webhooks}/webhooks/dropcowboy?token=") for req in sent)

    r = httpx.post(f"{webhooks}/webhooks/dropcowboy/inbound", headers={"X-Webhook-Token": TOKEN},
                   json={"phone_number": STOPPED, "message": "Stop"})
    assert r.status_code == 200
    wait_until(lambda: STOPPED in env.cli("suppress", "list", check=True).stdout, timeout=15,
               what="the STOP reply to reach the suppression list")

    path = write_campaign(env.tmp, "e2e-receipts-2", CONTACTS)
    env.cli("run", str(path), "--wait", "--timeout", "60", check=True)
    second = {m["phone"]: m for m in _report(env, "e2e-receipts-2")["messages"]}
    assert second[STOPPED]["status"] == "skipped"
    assert "stop-reply" in second[STOPPED]["reason"] and "replied STOP on" in second[STOPPED]["reason"]
    assert all(m["status"] in ("sent", "delivered") for p, m in second.items() if p != STOPPED)
    assert [req["json"]["phone_number"] for req in sandbox.requests("dropcowboy")].count(STOPPED) == 1

    logs = env.output()
    assert "recorded as event" in logs and "+1202***0102" in logs
    assert TOKEN not in logs and STOPPED not in logs
