"""Skycore in the sandbox: one endpoint, failures inside HTTP 200, postbacks."""

from __future__ import annotations

from typing import Any

import pytest


def _failure(r: Any) -> tuple[str, str]:
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "Failure"
    assert set(body) == {"status", "error-code", "error-info", "to"}
    return body["error-code"], body["error-info"]


def test_sendsms_success(api: Any) -> None:
    r = api.skycore({"from-mask": "Dunder Mifflin", "campaign-ref": "campaign2345", "click-tracking": True})
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "Success"
    assert body["tracking-id"]
    assert body["to"] == "17743199144"
    assert body["from"] == "00000"
    assert body["status-details"] == "SMS request accepted and queued for delivery"


def test_action_is_case_insensitive(api: Any) -> None:
    assert api.skycore({"action": "SendSMS"}).json()["status"] == "Success"


@pytest.mark.parametrize(
    ("changes", "drop", "code"),
    [
        ({"to": "+17743199144"}, (), "E110"),
        ({"to": "0017743199144"}, (), "E110"),
        ({"to": "1774-319-9144"}, (), "E110"),
        ({}, ("to",), "E201"),
        ({"to": ""}, (), "E201"),
        ({}, ("message-text",), "E712"),
        ({"message-text": ""}, (), "E712"),
        ({}, ("from",), "E111"),
        ({"from": "Dunder"}, (), "E111"),
        ({"action": "sendmms"}, (), "E700"),
        ({}, ("action",), "E700"),
        ({"click-tracking": "yes"}, (), "E700"),
        ({"message_text": "typo"}, (), "E700"),
    ],
)
def test_validation_failures_come_inside_http_200(api: Any, changes: dict[str, Any], drop: tuple[str, ...],
                                                  code: str) -> None:
    assert _failure(api.skycore(changes, drop=drop))[0] == code


def test_failure_echoes_to(api: Any) -> None:
    assert api.skycore({"to": "+17743199144"}).json()["to"] == "+17743199144"


@pytest.mark.parametrize("headers", [{}, {"x-api-key": ""}])
def test_missing_api_key_is_e101(api: Any, headers: dict[str, str]) -> None:
    assert _failure(api.skycore(headers=headers))[0] == "E101"


def test_configured_api_key_is_enforced(sandbox: Any, api: Any) -> None:
    sandbox.configure(credentials={"skycore": {"api_key": "skycore-key"}})
    assert api.skycore().json()["status"] == "Success"
    assert _failure(api.skycore(headers={"x-api-key": "other"}))[0] == "E101"


def test_campaign_check_requires_a_known_campaign_ref(sandbox: Any, api: Any) -> None:
    sandbox.configure(skycore_campaigns=["campaign2345"])
    assert _failure(api.skycore())[0] == "E714"
    assert _failure(api.skycore({"campaign-ref": "other"}))[0] == "E714"
    assert api.skycore({"campaign-ref": "campaign2345"}).json()["status"] == "Success"


@pytest.mark.parametrize(("behaviour", "code"), [("invalid", "E110"), ("blacklisted", "E114"), ("optout", "E715")])
def test_scripted_numbers(sandbox: Any, api: Any, behaviour: str, code: str) -> None:
    sandbox.configure(numbers={"+17743199144": behaviour})
    assert _failure(api.skycore())[0] == code


def test_billing_failure_is_e713(sandbox: Any, api: Any) -> None:
    sandbox.configure(billing_failure=True)
    assert _failure(api.skycore())[0] == "E713"


def test_too_fast_is_e113_in_a_200(sandbox: Any, api: Any) -> None:
    sandbox.configure(throttle_rps={"skycore": 1})
    assert api.skycore().json()["status"] == "Success"
    assert _failure(api.skycore())[0] == "E113"


def test_postback_goes_to_the_configured_url(sandbox: Any, api: Any, receiver: Any) -> None:
    sandbox.configure(skycore_postback_url=receiver.url + "/postback", receipts={"delay_ms": 10})
    tracking_id = api.skycore().json()["tracking-id"]
    hook = receiver.wait(1)[0]
    assert hook["path"] == "/postback"
    assert hook["json"]["tracking-id"] == tracking_id
    assert hook["json"]["to"] == "17743199144"
    assert hook["json"]["status"] == "DELIVERED"
    assert set(hook["json"]) == {"tracking-id", "to", "status", "error-code", "error-info", "timestamp"}


def test_failed_receipts_are_undelivered(sandbox: Any, api: Any, receiver: Any) -> None:
    sandbox.configure(skycore_postback_url=receiver.url, receipts={"delay_ms": 0, "status": "failed"})
    api.skycore()
    body = receiver.wait(1)[0]["json"]
    assert body["status"] == "UNDELIVERED"
    assert body["error-code"]


def test_invalid_json_is_e700(sandbox: Any) -> None:
    r = sandbox.http.post("/skycore/api", content=b"{not json", headers={"x-api-key": "k"})
    assert _failure(r)[0] == "E700"
