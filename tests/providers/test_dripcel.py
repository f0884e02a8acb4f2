"""Dripcel adapter against recorded answers."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from dispatcher.providers.base import Outcome, ProviderConfig
from dispatcher.providers.dripcel import Dripcel


@pytest.fixture()
def adapter(mock_client, policy):
    def make(*answers, options=None, test_mode=False):
        client, script = mock_client(*answers)
        config = ProviderConfig(base_url="https://dripcel.test", credentials={"api_key": "key-1"},
                                options=options or {}, test_mode=test_mode)
        return Dripcel(config, client, retry=policy), script

    return make


def test_sms_request_uses_national_cell_and_country(adapter, make_sms):
    provider, script = adapter("dripcel/send_ok")
    provider.send(make_sms(to="+27821234567", region="za", text="Hello World"), timeout=5)
    assert str(script.last.url) == "https://dripcel.test/send/sms"
    assert script.last.headers["authorization"] == "Bearer key-1"
    assert script.last_json() == {"content": "Hello World", "cell": "0821234567", "country": "ZA",
                                  "deliveryMethod": "standard", "skipNonContacts": False}


def test_options_and_test_mode_reach_the_body(adapter, make_sms):
    options = {"delivery_method": "transactional", "skip_non_contacts": True, "campaign_id": 123}
    provider, script = adapter("dripcel/send_ok", options=options, test_mode=True)
    provider.send(make_sms(), timeout=5)
    body = script.last_json()
    assert (body["cell"], body["country"]) == ("4155550147", "US")
    assert body["deliveryMethod"] == "transactional" and body["skipNonContacts"] is True
    assert body["campaign_id"] == "123" and body["sendOptions"] == {"testMode": True}


def test_request_test_mode_also_sets_test_mode(adapter, make_sms):
    provider, script = adapter("dripcel/send_ok")
    provider.send(make_sms(test_mode=True), timeout=5)
    assert script.last_json()["sendOptions"] == {"testMode": True}


def test_ok_is_sent_with_id_and_cost(adapter, make_sms):
    provider, _ = adapter("dripcel/send_ok")
    result = provider.send(make_sms(), timeout=5)
    assert (result.outcome, result.provider_message_id, result.cost) == (Outcome.SENT, "65f0c0ffee0000000000abcd", 0.25)


@pytest.mark.parametrize(("fixture", "outcome"), [
    ("dripcel/invalid_cell", Outcome.REJECTED),
    ("dripcel/opted_out", Outcome.SUPPRESSED),
    ("dripcel/blacklisted", Outcome.SUPPRESSED),
    ("dripcel/insufficient_credits", Outcome.BILLING),
    ("dripcel/unauthorized", Outcome.AUTH),
])
def test_errors_are_classified_by_status_and_text(adapter, make_sms, fixture, outcome):
    provider, _ = adapter(fixture)
    result = provider.send(make_sms(), timeout=5)
    assert result.outcome is outcome
    assert result.detail and result.status_code in (400, 401)


def test_rejection_keeps_the_provider_text(adapter, make_sms):
    provider, _ = adapter("dripcel/invalid_cell")
    assert provider.send(make_sms(), timeout=5).detail == "invalid cell number for country ZA"


def test_ok_false_inside_200_is_not_sent(adapter, make_sms):
    import httpx

    provider, _ = adapter(httpx.Response(200, json={"ok": False, "error": "Contact unsubscribed"}))
    assert provider.send(make_sms(), timeout=5).outcome is Outcome.SUPPRESSED


def test_throttled_keeps_retry_after(adapter, make_sms):
    provider, _ = adapter("dripcel/throttled")
    result = provider.send(make_sms(), timeout=5)
    assert (result.outcome, result.retry_after) == (Outcome.THROTTLED, 1.0)


def test_unparseable_number_is_refused_without_a_request(adapter, make_sms):
    provider, script = adapter("dripcel/send_ok")
    result = provider.send(make_sms(to="not a number"), timeout=5)
    assert (result.outcome, result.tries) == (Outcome.REJECTED, 0) and script.requests == []


def test_bulk_email(adapter):
    provider, script = adapter("dripcel/email_bulk_ok")
    start = datetime(2023, 10, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    result = provider.send_email_bulk(sender="news@example.com", template_id="template123",
                                      destinations=["a@example.com"], filter_non_contacts=True,
                                      to_start_at=start, timeout=5)
    assert str(script.last.url) == "https://dripcel.test/send/email/bulk"
    assert script.last_json() == {"from": "news@example.com", "template_id": "template123",
                                  "destinations": ["a@example.com"], "filter_non_contacts": True,
                                  "to_start_at": "2023-10-01T12:00:00Z"}
    assert result.outcome is Outcome.SENT


def test_validate_options():
    assert Dripcel.validate_options({}) == []
    assert Dripcel.validate_options({"delivery_method": "reverse", "skip_non_contacts": True}) == []
    assert Dripcel.validate_options({"delivery_method": "fast", "skip_non_contacts": "yes"}) == [
        "provider.options.delivery_method must be one of reverse, standard, transactional, got 'fast'",
        "provider.options.skip_non_contacts must be true or false, got 'yes'",
    ]


def test_check_has_nothing_to_check(adapter):
    provider, script = adapter()
    assert provider.check(timeout=5) == [] and script.requests == []


def test_country_falls_back_to_the_numbers_own_region(adapter, make_sms):
    provider, script = adapter("dripcel/send_ok")
    provider.send(make_sms(to="+27821234567", region=""), timeout=5)
    assert (script.last_json()["cell"], script.last_json()["country"]) == ("0821234567", "ZA")
