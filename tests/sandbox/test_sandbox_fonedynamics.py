"""Fone Dynamics in the sandbox: Messages resource, sender rules, schedule, delivery receipts."""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest


def test_message_is_returned_on_success(api: Any) -> None:
    r = api.fone({"ExternalId": "msg-1"}, property_sid="S7DNJ9KJ")
    assert r.status_code == 200
    message = r.json()["Message"]
    assert set(message) == {"MessageSid", "AccountSid", "PropertySid", "From", "To", "Text"}
    assert message["AccountSid"] == "AC123"
    assert message["PropertySid"] == "S7DNJ9KJ"
    assert message["From"] == "+61499009990"
    assert message["To"] == "+61488023555"
    assert message["Text"] == "You win again, gravity!"
    assert message["MessageSid"]


@pytest.mark.parametrize("sender", ["+61499009990", "MyBrand", "Shop 24", "A", "ABCDEFGHIJK", "7Eleven"])
def test_valid_senders_are_accepted_and_echoed(api: Any, sender: str) -> None:
    r = api.fone({"From": sender})
    assert r.status_code == 200
    assert r.json()["Message"]["From"] == sender


@pytest.mark.parametrize("changes,drop", [({"From": ""}, ()), ({}, ("From",)), ({"From": None}, ())])
def test_blank_or_missing_sender_gets_a_leased_e164_number(api: Any, changes: dict[str, Any],
                                                           drop: tuple[str, ...]) -> None:
    r = api.fone(changes, drop=drop)
    assert r.status_code == 200
    sender = r.json()["Message"]["From"]
    assert sender.startswith("+") and sender[1:].isdigit()


@pytest.mark.parametrize("sender", ["123456", "61499009990", "ABCDEFGHIJKL", "Brand!", "Café", "   ", 61499009990])
def test_invalid_senders_are_invalid_from(api: Any, sender: Any) -> None:
    r = api.fone({"From": sender})
    assert r.status_code == 400
    assert r.json()["ErrorCode"] == "InvalidFrom"
    assert r.json()["Status"] == 400


@pytest.mark.parametrize(
    ("changes", "drop", "code"),
    [
        ({}, ("To",), "InvalidTo"),
        ({"To": "61488023555"}, (), "InvalidTo"),
        ({"To": "0488023555"}, (), "InvalidTo"),
        ({}, ("Text",), "TextRequired"),
        ({"Text": ""}, (), "TextRequired"),
        ({"Schedule": "tomorrow"}, (), "InvalidSchedule"),
        ({"Schedule": True}, (), "InvalidSchedule"),
        ({"DeliveryReceipt": "yes"}, (), "InvalidParameter"),
        ({"DeliveryReceiptWebhookUri": "not-a-uri"}, (), "InvalidParameter"),
        ({"DeliveryReceiptWebhookMethod": "PUT"}, (), "InvalidParameter"),
        ({"ForwardToEmail": "nope"}, (), "InvalidParameter"),
        ({"Body": "typo"}, (), "InvalidParameter"),
    ],
)
def test_validation_errors(api: Any, changes: dict[str, Any], drop: tuple[str, ...], code: str) -> None:
    r = api.fone(changes, drop=drop)
    assert r.status_code == 400
    assert r.json()["ErrorCode"] == code
    assert r.json()["Message"]


@pytest.mark.parametrize(("offset", "ok"), [(-7200, False), (-1800, True), (3600, True), (13 * 86400, True),
                                            (15 * 86400, False)])
def test_schedule_window(api: Any, offset: int, ok: bool) -> None:
    r = api.fone({"Schedule": int(time.time()) + offset})
    assert (r.status_code == 200) is ok
    if not ok:
        assert r.json()["ErrorCode"] == "InvalidSchedule"


@pytest.mark.parametrize("authorization",
                         [None, "Bearer x", "Basic !!!", "Basic " + base64.b64encode(b"AC123").decode()])
def test_bad_basic_auth_is_401(api: Any, authorization: str | None) -> None:
    r = api.fone(headers={"Authorization": authorization} if authorization else {})
    assert r.status_code == 401
    assert r.json()["ErrorCode"] == "Unauthorized"
    assert r.json()["Status"] == 401


def test_configured_credentials_are_enforced(sandbox: Any, api: Any) -> None:
    sandbox.configure(credentials={"fonedynamics": {"account_sid": "AC123", "auth_token": "token-1"}})
    assert api.fone().status_code == 200
    wrong = "Basic " + base64.b64encode(b"AC123:wrong").decode()
    assert api.fone(headers={"Authorization": wrong}).status_code == 401


@pytest.mark.parametrize(("behaviour", "code"), [("invalid", "InvalidTo"), ("blacklisted", "RecipientBlacklisted"),
                                                 ("optout", "RecipientOptedOut")])
def test_scripted_numbers(sandbox: Any, api: Any, behaviour: str, code: str) -> None:
    sandbox.configure(numbers={"+61488023555": behaviour})
    r = api.fone()
    assert r.status_code == 400
    assert r.json()["ErrorCode"] == code


def test_billing_failure_is_402_insufficient_funds(sandbox: Any, api: Any) -> None:
    sandbox.configure(billing_failure=True)
    r = api.fone()
    assert r.status_code == 402
    assert r.json()["ErrorCode"] == "InsufficientFunds"


def test_throttled_gets_429_with_retry_after(sandbox: Any, api: Any) -> None:
    sandbox.configure(throttle_rps={"fonedynamics": 1})
    assert api.fone().status_code == 200
    r = api.fone()
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) >= 1


def test_delivery_receipt_goes_to_the_webhook_uri(sandbox: Any, api: Any, receiver: Any) -> None:
    sandbox.configure(receipts={"delay_ms": 10})
    r = api.fone({"ExternalId": "msg-9", "DeliveryReceiptWebhookUri": receiver.url + "/dr"})
    sid = r.json()["Message"]["MessageSid"]
    hook = receiver.wait(1)[0]
    assert hook["method"] == "POST"
    assert hook["path"] == "/dr"
    assert hook["json"]["MessageSid"] == sid
    assert hook["json"]["ExternalId"] == "msg-9"
    assert hook["json"]["To"] == "+61488023555"
    assert hook["json"]["Status"] == "DELIVERED"
    assert set(hook["json"]) == {"MessageSid", "ExternalId", "To", "Status", "ErrorCode", "DateUpdated"}


def test_delivery_receipt_by_get_carries_the_fields_in_the_query(sandbox: Any, api: Any, receiver: Any) -> None:
    sandbox.configure(receipts={"delay_ms": 0})
    api.fone({"ExternalId": "msg-3", "DeliveryReceiptWebhookUri": receiver.url + "/dr?token=t0k",
              "DeliveryReceiptWebhookMethod": "GET"})
    hook = receiver.wait(1)[0]
    assert hook["method"] == "GET"
    assert hook["path"] == "/dr"
    assert hook["query"]["ExternalId"] == "msg-3"
    assert hook["query"]["token"] == "t0k"


def test_no_receipt_when_delivery_receipt_is_false(sandbox: Any, api: Any, receiver: Any) -> None:
    sandbox.configure(receipts={"delay_ms": 0})
    api.fone({"DeliveryReceipt": False, "DeliveryReceiptWebhookUri": receiver.url})
    api.fone({"DeliveryReceiptWebhookUri": receiver.url, "ExternalId": "second"})
    received = receiver.wait(1)
    time.sleep(0.2)
    assert [h["json"]["ExternalId"] for h in receiver.received] == ["second"]
    assert len(received) == 1
