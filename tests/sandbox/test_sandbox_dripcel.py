"""Dripcel in the sandbox: /send/sms and /send/email/bulk."""

from __future__ import annotations

from typing import Any

import pytest


def test_sms_success_has_customer_id_and_cost(api: Any) -> None:
    r = api.dripcel_sms({"campaign_id": "123"})
    assert r.status_code == 200
    body = r.json()
    assert body["ok"] is True
    assert set(body["data"]) == {"customerId", "totalCost"}
    assert body["data"]["customerId"]
    assert body["data"]["totalCost"] == 0.25


def test_cost_counts_segments_and_test_mode_costs_nothing(api: Any) -> None:
    assert api.dripcel_sms({"content": "x" * 200}).json()["data"]["totalCost"] == 0.5
    assert api.dripcel_sms({"sendOptions": {"testMode": True}}).json()["data"]["totalCost"] == 0


@pytest.mark.parametrize("cell", ["0821234567", "+27821234567", "27821234567"])
def test_national_and_international_cells_are_accepted(api: Any, cell: str) -> None:
    assert api.dripcel_sms({"cell": cell}).status_code == 200


@pytest.mark.parametrize(
    ("changes", "drop", "text"),
    [
        ({}, ("content",), "content"),
        ({"content": ""}, (), "content"),
        ({}, ("cell",), "cell"),
        ({"cell": "082-CALL-ME"}, (), "invalid cell"),
        ({"cell": "12"}, (), "invalid cell"),
        ({}, ("skipNonContacts",), "skipNonContacts"),
        ({"skipNonContacts": "yes"}, (), "skipNonContacts"),
        ({}, ("country",), "country"),
        ({"country": "ZAF"}, (), "country"),
        ({}, ("deliveryMethod",), "deliveryMethod"),
        ({"deliveryMethod": "express"}, (), "deliveryMethod"),
        ({"sendOptions": {"testMode": "yes"}}, (), "sendOptions.testMode"),
        ({"sendOptions": []}, (), "sendOptions"),
        ({"campaign_id": 123}, (), "campaign_id"),
        ({"campaignId": "123"}, (), "campaignId"),
    ],
)
def test_sms_validation_failure_is_a_400_naming_the_problem(api: Any, changes: dict[str, Any],
                                                           drop: tuple[str, ...], text: str) -> None:
    r = api.dripcel_sms(changes, drop=drop)
    assert r.status_code == 400
    assert r.json()["ok"] is False
    assert r.json()["error"].startswith(text)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Token dripcel-key"}, {"Authorization": "Bearer"},
                                     {"Authorization": "Bearer two words"}])
def test_missing_or_malformed_key_is_401(api: Any, headers: dict[str, str]) -> None:
    r = api.dripcel_sms(headers=headers)
    assert r.status_code == 401
    assert r.json() == {"ok": False, "error": "Unauthorized"}


def test_configured_key_is_enforced(sandbox: Any, api: Any) -> None:
    sandbox.configure(credentials={"dripcel": {"api_key": "dripcel-key"}})
    assert api.dripcel_sms().status_code == 200
    assert api.dripcel_sms(headers={"Authorization": "Bearer other"}).status_code == 401


@pytest.mark.parametrize(("behaviour", "text"), [("invalid", "invalid cell"), ("blacklisted", "blacklisted"),
                                                 ("optout", "opted out")])
def test_scripted_numbers_match_the_national_cell(sandbox: Any, api: Any, behaviour: str, text: str) -> None:
    sandbox.configure(numbers={"+27821234567": behaviour})
    r = api.dripcel_sms({"cell": "0821234567", "country": "ZA"})
    assert r.status_code == 400
    assert text in r.json()["error"]


def test_billing_failure_says_insufficient_credits(sandbox: Any, api: Any) -> None:
    sandbox.configure(billing_failure=True)
    r = api.dripcel_sms()
    assert r.status_code == 400
    assert "insufficient credits" in r.json()["error"]


def test_throttled_gets_429_with_retry_after(sandbox: Any, api: Any) -> None:
    sandbox.configure(throttle_rps=1)
    assert api.dripcel_sms().status_code == 200
    r = api.dripcel_sms()
    assert r.status_code == 429
    assert r.json() == {"ok": False, "error": "Too many requests"}
    assert r.headers["retry-after"] == "1"


def test_bulk_email_is_accepted(api: Any) -> None:
    r = api.dripcel_email({"destinations": ["a@example.com", "b@example.org"], "filter_non_contacts": True,
                           "to_start_at": "2023-10-01T12:00:00Z"})
    assert r.status_code == 200
    assert r.json() == {"ok": True, "data": {}}


@pytest.mark.parametrize(
    ("changes", "drop", "text"),
    [
        ({}, ("from",), "from"),
        ({"from": "not-an-email"}, (), "from"),
        ({}, ("template_id",), "template_id"),
        ({}, ("destinations",), "destinations"),
        ({"destinations": []}, (), "destinations"),
        ({"destinations": ["a@example.com", "nope"]}, (), "destinations[1]"),
        ({"filter_non_contacts": "true"}, (), "filter_non_contacts"),
        ({"to_start_at": "tomorrow"}, (), "to_start_at"),
    ],
)
def test_bulk_email_validation_failure(api: Any, changes: dict[str, Any], drop: tuple[str, ...], text: str) -> None:
    r = api.dripcel_email(changes, drop=drop)
    assert r.status_code == 400
    assert r.json()["error"].startswith(text)
