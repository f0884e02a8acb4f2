"""Skycore adapter against recorded answers: failures live inside HTTP 200."""

from __future__ import annotations

import httpx
import pytest

from dispatcher.errors import InputError
from dispatcher.providers.base import Outcome, ProviderConfig
from dispatcher.providers.skycore import Skycore, outcome_for_code

ENDPOINT = "https://skycore.test/API/v2/index.php"


@pytest.fixture()
def adapter(mock_client, policy):
    def make(*answers, options=None):
        client, script = mock_client(*answers)
        config = ProviderConfig(base_url=ENDPOINT, credentials={"api_key": "key-1"},
                                options=options or {"from": "60856"})
        return Skycore(config, client, retry=policy), script

    return make


def test_request_goes_to_the_endpoint_with_digits_only(adapter, make_sms):
    provider, script = adapter("skycore/success")
    provider.send(make_sms(), timeout=5)
    assert str(script.last.url) == ENDPOINT
    assert script.last.headers["x-api-key"] == "key-1"
    assert script.last_json() == {"action": "sendsms", "message-text": "Hello world", "to": "14155550147",
                                  "from": "60856"}


def test_optional_options_reach_the_body(adapter, make_sms):
    options = {"from": "60856", "from-mask": "Dunder", "campaign-ref": "campaign2345", "click-tracking": True}
    provider, script = adapter("skycore/success", options=options)
    provider.send(make_sms(), timeout=5)
    body = script.last_json()
    assert (body["from-mask"], body["campaign-ref"], body["click-tracking"]) == ("Dunder", "campaign2345", True)


def test_success_is_sent_with_the_tracking_id(adapter, make_sms):
    provider, _ = adapter("skycore/success")
    result = provider.send(make_sms(), timeout=5)
    assert (result.outcome, result.provider_message_id) == (Outcome.SENT, "xxxxxxxxxxxx")


@pytest.mark.parametrize(("fixture", "outcome", "code"), [
    ("skycore/failure_E111_invalid_sender", Outcome.REJECTED, "E111"),
    ("skycore/failure_E110_invalid_receiver", Outcome.REJECTED, "E110"),
    ("skycore/failure_E113_throughput", Outcome.THROTTLED, "E113"),
    ("skycore/failure_E106_call_interval", Outcome.THROTTLED, "E106"),
    ("skycore/failure_E120_account_limit", Outcome.THROTTLED, "E120"),
    ("skycore/failure_E114_blacklisted", Outcome.SUPPRESSED, "E114"),
    ("skycore/failure_E715_not_subscribed", Outcome.SUPPRESSED, "E715"),
    ("skycore/failure_E713_billing", Outcome.BILLING, "E713"),
    ("skycore/failure_E100_invalid_request", Outcome.AUTH, "E100"),
    ("skycore/failure_E101_invalid_key", Outcome.AUTH, "E101"),
    ("skycore/failure_E112_ip", Outcome.AUTH, "E112"),
])
def test_failure_inside_200_is_classified_by_code(adapter, make_sms, fixture, outcome, code):
    provider, script = adapter(fixture)
    result = provider.send(make_sms(), timeout=5)
    assert (result.outcome, result.provider_code, result.status_code) == (outcome, code, 200)
    assert result.detail and len(script.requests) == 1


def test_e106_retry_after_comes_from_the_error_text(adapter, make_sms):
    provider, _ = adapter("skycore/failure_E106_call_interval")
    assert provider.send(make_sms(), timeout=5).retry_after == 5.0


@pytest.mark.parametrize(("code", "outcome"), [
    *[(f"E10{n}", Outcome.AUTH) for n in range(10) if n != 6],
    ("E106", Outcome.THROTTLED), ("E112", Outcome.AUTH), ("E201", Outcome.REJECTED), ("E628", Outcome.REJECTED),
    ("E712", Outcome.REJECTED), ("E714", Outcome.REJECTED), ("E999", Outcome.REJECTED), ("e114", Outcome.SUPPRESSED),
])
def test_code_table(code, outcome):
    assert outcome_for_code(code) is outcome


def test_unreadable_200_is_unknown(adapter, make_sms):
    provider, _ = adapter(httpx.Response(200, text="OK"))
    assert provider.send(make_sms(), timeout=5).outcome is Outcome.UNKNOWN


def test_failure_without_a_code_is_rejected(adapter, make_sms):
    provider, _ = adapter(httpx.Response(200, json={"status": "failure", "error-info": "something"}))
    result = provider.send(make_sms(), timeout=5)
    assert (result.outcome, result.detail) == (Outcome.REJECTED, "something")


def test_5xx_then_success(adapter, make_sms):
    provider, _ = adapter(httpx.Response(503), "skycore/success")
    result = provider.send(make_sms(), timeout=5)
    assert (result.outcome, result.tries) == (Outcome.SENT, 2)


def test_validate_options():
    assert Skycore.validate_options({"from": "60856", "from-mask": "Dunder Miff"}) == []
    assert Skycore.validate_options({}) == ["provider.options.from is required for skycore"]
    problems = Skycore.validate_options({"from": "+60856", "from-mask": "Dunder Mifflin", "click-tracking": "yes"})
    assert len(problems) == 3
    assert "from-mask 'Dunder Mifflin' is longer than 11 characters" in problems[0]


def test_without_a_base_url_the_adapter_cannot_be_built(mock_client):
    client, _ = mock_client()
    with pytest.raises(InputError, match="base_url is required"):
        Skycore(ProviderConfig("", {"api_key": "k"}, {"from": "60856"}), client)
