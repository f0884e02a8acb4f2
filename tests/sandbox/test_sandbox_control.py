"""The sandbox control API and the behaviour it scripts: faults, latency, throttling, log, stats, reset."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
SANDBOX_PACKAGE = ROOT / "dispatcher" / "sandbox"


def test_health(sandbox: Any) -> None:
    assert sandbox.http.get("/_sandbox/health").json() == {"ok": True}


def test_fail_next_fails_that_many_requests_then_recovers(sandbox: Any, api: Any) -> None:
    sandbox.configure(fail_next={"count": 2, "status": 500})
    assert api.dc_sms().status_code == 500
    assert api.fone().status_code == 500
    assert api.skycore().status_code == 200
    stats = sandbox.http.get("/_sandbox/stats").json()["by_provider"]
    assert stats["dropcowboy"]["faults"] == 1 and stats["fonedynamics"]["faults"] == 1


def test_fail_next_can_target_one_provider(sandbox: Any, api: Any) -> None:
    sandbox.configure(fail_next={"count": 1, "status": 502, "provider": "skycore"})
    assert api.dc_sms().status_code == 200
    assert api.skycore().status_code == 502
    assert api.skycore().status_code == 200


def test_outage_fails_every_request_for_its_duration(sandbox: Any, api: Any) -> None:
    sandbox.configure(outage_seconds=0.3, failure_status=503)
    assert api.dc_sms().status_code == 503
    assert api.dripcel_sms().status_code == 503
    time.sleep(0.35)
    assert api.dc_sms().status_code == 200


def test_failure_rate_one_fails_everything_with_failure_status(sandbox: Any, api: Any) -> None:
    sandbox.configure(failure_rate=1.0, failure_status=502)
    assert {api.dc_sms().status_code for _ in range(5)} == {502}
    sandbox.configure(failure_rate=0.0)
    assert api.dc_sms().status_code == 200


def test_failure_rate_with_a_seed_fails_about_that_share(sandbox: Any, api: Any) -> None:
    sandbox.configure(failure_rate=0.5, seed=7)
    codes = [api.skycore().status_code for _ in range(60)]
    assert 10 < codes.count(503) < 50


def test_faults_do_not_touch_the_control_api(sandbox: Any) -> None:
    sandbox.configure(outage_seconds=5)
    assert sandbox.http.get("/_sandbox/health").status_code == 200


def test_latency_is_added_to_provider_answers(sandbox: Any, api: Any) -> None:
    sandbox.configure(latency_ms=200)
    started = time.monotonic()
    assert api.dc_sms().status_code == 200
    assert time.monotonic() - started >= 0.2


def test_slow_number_answers_late_and_is_still_accepted(sandbox: Any, api: Any) -> None:
    sandbox.configure(numbers={"+61488023555": "slow"}, slow_ms=400)
    with pytest.raises(httpx.ReadTimeout):
        sandbox.http.post("/v2/Properties/P1/Messages", json={"To": "+61488023555", "Text": "hi"},
                          headers={"Authorization": "Basic QUM6dA=="}, timeout=0.1)
    started = time.monotonic()
    assert api.fone().status_code == 200
    assert time.monotonic() - started >= 0.4
    statuses = [e["status"] for e in sandbox.requests("fonedynamics")]
    assert statuses == [200, 200]  # the timed-out request was accepted: its outcome is unknown to the client


def test_throttle_counts_each_provider_separately(sandbox: Any, api: Any) -> None:
    sandbox.configure(throttle_rps=3)
    dc = [api.dc_sms().status_code for _ in range(8)]
    assert dc.count(200) in (3, 4)
    assert dc.count(429) >= 4
    assert api.fone().status_code == 200
    stats = sandbox.http.get("/_sandbox/stats").json()["by_provider"]
    assert stats["dropcowboy"]["throttled"] == dc.count(429)


def test_throttle_lets_requests_through_again_after_the_wait(sandbox: Any, api: Any) -> None:
    sandbox.configure(throttle_rps={"dropcowboy": 5})
    codes = [api.dc_sms().status_code for _ in range(8)]
    assert 429 in codes
    time.sleep(0.45)
    assert api.dc_sms().status_code == 200


def test_request_log_keeps_bodies_but_no_credentials(sandbox: Any, api: Any) -> None:
    api.dc_sms({"foreign_id": "msg-1"})
    api.dripcel_sms()
    api.skycore()
    api.fone()
    log = sandbox.requests()
    assert [e["provider"] for e in log] == ["dropcowboy", "dripcel", "skycore", "fonedynamics"]
    first = log[0]
    assert {"provider", "method", "path", "json", "status", "received_at"} <= set(first)
    assert first["method"] == "POST" and first["path"] == "/v1/sms" and first["status"] == 200
    assert first["json"]["foreign_id"] == "msg-1"
    assert first["json"]["secret"] == "***"
    for entry in log:
        assert not {"authorization", "x-api-key", "x-secret", "x-team-id"} & set(entry["headers"])
        assert entry["headers"]["content-type"] == "application/json"
    assert [e["provider"] for e in sandbox.requests("skycore")] == ["skycore"]


def test_request_log_rejects_an_unknown_provider(sandbox: Any) -> None:
    assert sandbox.http.get("/_sandbox/requests", params={"provider": "twilio"}).status_code == 400


def test_record_false_keeps_stats_but_no_log(sandbox: Any, api: Any) -> None:
    sandbox.configure(record=False)
    api.dc_sms()
    assert sandbox.requests() == []
    assert sandbox.http.get("/_sandbox/stats").json()["by_provider"]["dropcowboy"]["accepted"] == 1


def test_stats_count_duplicates_of_recipient_and_text(sandbox: Any, api: Any) -> None:
    api.dc_sms({"phone_number": "+61488023555", "sms_body": "Same text"})
    api.fone({"To": "+61488023555", "Text": "Same text"})
    api.fone({"To": "+61488023555", "Text": "Other text"})
    api.skycore({"to": "61488023555", "message-text": "Same text"})
    api.dc_sms({"phone_number": "+61488023555", "sms_body": "Same text", "opt_in": False})  # rejected: not counted
    stats = sandbox.http.get("/_sandbox/stats").json()
    assert stats["duplicates"] == 2
    assert stats["by_provider"]["fonedynamics"]["duplicates"] == 1
    assert stats["by_provider"]["dropcowboy"]["accepted"] == 1
    assert stats["by_provider"]["dropcowboy"]["rejected"] == 1
    assert stats["by_provider"]["dropcowboy"]["requests"] == 2


def test_unauthorized_requests_are_counted(sandbox: Any, api: Any) -> None:
    api.skycore(headers={})
    assert sandbox.http.get("/_sandbox/stats").json()["by_provider"]["skycore"]["unauthorized"] == 1


def test_reset_clears_log_config_lists_and_stats(sandbox: Any, api: Any) -> None:
    sandbox.configure(billing_failure=True, numbers={"+15552223333": "invalid"}, pools=["other"])
    api.dc_sms()
    api.dc("POST", "/v1/list", {"list_name": "x"})
    sandbox.reset()
    assert sandbox.requests() == []
    stats = sandbox.http.get("/_sandbox/stats").json()
    assert stats["requests"] == 0 and stats["duplicates"] == 0 and stats["lists"] == 0
    assert api.dc_sms().status_code == 200
    assert [p["pool_id"] for p in api.dc("GET", "/v1/pool").json()] == ["text"]


def test_a_request_still_waiting_at_a_reset_is_logged_and_counted_nowhere(sandbox: Any, api: Any) -> None:
    # A slow request of one test must not show up in the log of the next one, which reset the sandbox.
    sandbox.configure(numbers={"+61488023555": "slow"}, slow_ms=400)
    with pytest.raises(httpx.ReadTimeout):
        sandbox.http.post("/v2/Properties/P1/Messages", json={"To": "+61488023555", "Text": "hi"},
                          headers={"Authorization": "Basic QUM6dA=="}, timeout=0.1)
    sandbox.reset()
    time.sleep(0.5)                       # the slow request has finished by now
    assert sandbox.requests() == []
    assert sandbox.http.get("/_sandbox/stats").json()["requests"] == 0


def test_reset_cancels_pending_receipts(sandbox: Any, api: Any, receiver: Any) -> None:
    sandbox.configure(receipts={"delay_ms": 300})
    api.dc_sms({"callback_url": receiver.url})
    sandbox.reset()
    time.sleep(0.5)
    assert receiver.received == []


def test_receipts_can_be_turned_off(sandbox: Any, api: Any, receiver: Any) -> None:
    sandbox.configure(receipts={"enabled": False, "delay_ms": 0})
    api.dc_sms({"callback_url": receiver.url})
    time.sleep(0.2)
    assert receiver.received == []


def test_receipt_attempts_are_logged_with_the_receivers_status(sandbox: Any, api: Any, receiver: Any) -> None:
    receiver.status = 500
    sandbox.configure(receipts={"delay_ms": 0})
    api.dc_sms({"callback_url": receiver.url})
    receiver.wait(1)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        receipts = sandbox.http.get("/_sandbox/receipts").json()["receipts"]
        if receipts:
            break
        time.sleep(0.02)
    assert receipts[0]["status"] == 500 and receipts[0]["provider"] == "dropcowboy"
    assert sandbox.http.get("/_sandbox/stats").json()["by_provider"]["dropcowboy"]["receipts_failed"] == 1


def test_answer_does_not_wait_for_the_receipt(sandbox: Any, api: Any, receiver: Any) -> None:
    sandbox.configure(receipts={"delay_ms": 500})
    started = time.monotonic()
    assert api.dc_sms({"callback_url": receiver.url}).status_code == 200
    assert time.monotonic() - started < 0.4
    assert receiver.received == []
    assert receiver.wait(1, timeout=3)


@pytest.mark.parametrize("config", [
    {"latency": 5},
    {"latency_ms": -1},
    {"failure_rate": 2},
    {"fail_next": {"count": -1}},
    {"fail_next": {"count": 1, "status": 99}},
    {"fail_next": {"count": 1, "provider": "twilio"}},
    {"numbers": {"15550001111": "invalid"}},
    {"numbers": {"+15550001111": "grumpy"}},
    {"credentials": {"dropcowboy": {"api_key": "x"}}},
    {"receipts": {"status": "maybe"}},
    {"throttle_rps": {"twilio": 3}},
    {"record": "yes"},
    {"pools": [{"name": "no id"}]},
    {"skycore_postback_url": "ftp://example.com"},
])
def test_bad_config_is_a_400_and_changes_nothing(sandbox: Any, config: dict[str, Any]) -> None:
    before = sandbox.http.get("/_sandbox/config").json()
    r = sandbox.http.post("/_sandbox/config", json={"billing_failure": True, **config})
    assert r.status_code == 400
    assert r.json()["error"]
    assert sandbox.http.get("/_sandbox/config").json() == before


def test_config_answer_shows_the_effective_config_without_secrets(sandbox: Any) -> None:
    r = sandbox.http.post("/_sandbox/config", json={"credentials": {"skycore": {"api_key": "secret-key"}},
                                                    "numbers": {"+15550001111": "optout"}})
    config = r.json()["config"]
    assert config["credentials"]["skycore"]["api_key"] == "***"
    assert config["numbers"] == {"+15550001111": "optout"}
    sandbox.configure(numbers={"+15550002222": "slow", "+15550001111": None})
    assert sandbox.http.get("/_sandbox/config").json()["numbers"] == {"+15550002222": "slow"}


def test_environment_credentials_and_latency_flag(own_sandbox: Any) -> None:
    url = own_sandbox(env={"SKYCORE_API_KEY": "env-key"}, args=["--latency-ms", "150"])
    body = {"action": "sendsms", "message-text": "hi", "to": "17743199144", "from": "00000"}
    with httpx.Client(base_url=url, timeout=5) as http:
        started = time.monotonic()
        assert http.post("/skycore/api", json=body, headers={"x-api-key": "env-key"}).json()["status"] == "Success"
        assert time.monotonic() - started >= 0.15
        assert http.post("/skycore/api", json=body, headers={"x-api-key": "other"}).json()["error-code"] == "E101"
        http.post("/_sandbox/reset").raise_for_status()
        assert http.get("/_sandbox/config").json()["latency_ms"] == 150


def test_run_is_exposed_with_the_cli_signature() -> None:
    from dispatcher.sandbox import run

    params = inspect.signature(run).parameters
    assert list(params) == ["host", "port", "latency_ms"]
    assert (params["host"].default, params["port"].default, params["latency_ms"].default) == ("127.0.0.1", 8025, 0.0)


def test_sandbox_never_imports_the_provider_adapters() -> None:
    for path in SANDBOX_PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.startswith("dispatcher.providers") for n in names), f"{path.name} imports {names}"
    code = ("import sys, dispatcher.sandbox.app; "
            "bad = [m for m in sys.modules if m.startswith('dispatcher.providers')]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
