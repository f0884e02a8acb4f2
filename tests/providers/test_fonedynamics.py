"""Fone Dynamics adapter against recorded answers."""

from __future__ import annotations

import base64

import pytest

from dispatcher.providers.base import Outcome, ProviderConfig
from dispatcher.providers.fonedynamics import FoneDynamics


@pytest.fixture()
def adapter(mock_client, policy):
    def make(*answers, options=None, callback_url=None):
        client, script = mock_client(*answers)
        config = ProviderConfig(base_url="https://fd.test", credentials={"account_sid": "AC1", "auth_token": "tok"},
                                options=options or {"property_sid": "PS1", "from": "+61499009990"},
                                callback_url=callback_url)
        return FoneDynamics(config, client, retry=policy), script

    return make


def test_request_path_basic_auth_and_body(adapter, make_sms):
    provider, script = adapter("fonedynamics/message_ok")
    provider.send(make_sms(to="+61488023555", region="AU", text="You win again, gravity!"), timeout=5)
    assert str(script.last.url) == "https://fd.test/v2/Properties/PS1/Messages"
    assert script.last.headers["authorization"] == "Basic " + base64.b64encode(b"AC1:tok").decode()
    assert script.last_json() == {"From": "+61499009990", "To": "+61488023555", "Text": "You win again, gravity!",
                                  "ExternalId": "msg-1"}


def test_blank_sender_is_omitted_for_a_leased_sender(adapter, make_sms):
    provider, script = adapter("fonedynamics/message_ok", options={"property_sid": "PS1", "from": ""})
    provider.send(make_sms(), timeout=5)
    assert "From" not in script.last_json()


def test_delivery_receipt_webhook_when_callback_is_configured(adapter, make_sms):
    provider, script = adapter("fonedynamics/message_ok", callback_url="https://hooks.test/webhooks/fonedynamics")
    provider.send(make_sms(), timeout=5)
    body = script.last_json()
    assert body["DeliveryReceipt"] is True
    assert body["DeliveryReceiptWebhookUri"] == "https://hooks.test/webhooks/fonedynamics"


def test_ok_is_sent_with_the_message_sid(adapter, make_sms):
    provider, _ = adapter("fonedynamics/message_ok")
    result = provider.send(make_sms(), timeout=5)
    assert (result.outcome, result.provider_message_id) == (Outcome.SENT, "M87DMNHSDJHSD48DMNSDS6VJCNKD9MD0")


@pytest.mark.parametrize(("fixture", "outcome", "code"), [
    ("fonedynamics/invalid_to", Outcome.REJECTED, "InvalidTo"),
    ("fonedynamics/recipient_opted_out", Outcome.SUPPRESSED, "RecipientOptedOut"),
    ("fonedynamics/recipient_blacklisted", Outcome.SUPPRESSED, "RecipientBlacklisted"),
    ("fonedynamics/unauthorized", Outcome.AUTH, "Unauthorized"),
    ("fonedynamics/insufficient_funds", Outcome.BILLING, "InsufficientFunds"),
])
def test_errors_are_classified(adapter, make_sms, fixture, outcome, code):
    provider, _ = adapter(fixture)
    result = provider.send(make_sms(), timeout=5)
    assert (result.outcome, result.provider_code) == (outcome, code)
    assert result.detail and result.detail.startswith(code)


def test_throttled_keeps_retry_after(adapter, make_sms):
    provider, _ = adapter("fonedynamics/throttled")
    result = provider.send(make_sms(), timeout=5)
    assert (result.outcome, result.retry_after) == (Outcome.THROTTLED, 3.0)


def test_html_gateway_error_then_success(adapter, make_sms):
    provider, _ = adapter("fonedynamics/gateway_html", "fonedynamics/message_ok")
    result = provider.send(make_sms(), timeout=5)
    assert (result.outcome, result.tries) == (Outcome.SENT, 2)


@pytest.mark.parametrize("sender", ["+61499009990", "Acme", "Acme 2024", "A", "ABCDEFGHIJK", ""])
def test_valid_senders(sender):
    assert FoneDynamics.validate_options({"property_sid": "PS1", "from": sender}) == []


@pytest.mark.parametrize("sender", ["ABCDEFGHIJKL", "12345", "Acme!", "61499009990x", "+0123"])
def test_invalid_senders(sender):
    problems = FoneDynamics.validate_options({"property_sid": "PS1", "from": sender})
    assert len(problems) == 1 and "provider.options.from" in problems[0]


def test_property_sid_is_required():
    assert FoneDynamics.validate_options({}) == ["provider.options.property_sid is required for fonedynamics"]
