"""Drop Cowboy in the sandbox: /v1/sms, /v1/rvm, contact lists, fixtures, webhooks."""

from __future__ import annotations

from typing import Any

import pytest


def test_sms_is_queued_with_a_drop_id_and_the_foreign_id_echoed(api: Any) -> None:
    r = api.dc_sms({"foreign_id": "msg-42"})
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "queued"
    assert len(body["drop_id"]) == 36
    assert body["foreign_id"] == "msg-42"
    assert body["accepted_count"] == 1
    assert body["rejected"] == []


def test_sms_body_of_exactly_160_characters_is_accepted(api: Any) -> None:
    assert api.dc_sms({"sms_body": "x" * 160}).status_code == 200


@pytest.mark.parametrize(
    ("changes", "drop", "field", "reason"),
    [
        ({}, ("phone_number",), "phone_number", "invalid_number"),
        ({"phone_number": "15552223333"}, (), "phone_number", "invalid_number"),
        ({"phone_number": "+1 555 222 3333"}, (), "phone_number", "invalid_number"),
        ({}, ("caller_id",), "caller_id", "invalid_request"),
        ({"caller_id": "5557778888"}, (), "caller_id", "invalid_request"),
        ({}, ("pool_id",), "pool_id", "invalid_request"),
        ({"pool_id": "no-such-pool"}, (), "pool_id", "invalid_request"),
        ({}, ("sms_body",), "sms_body", "invalid_request"),
        ({"sms_body": ""}, (), "sms_body", "invalid_request"),
        ({"sms_body": "x" * 161}, (), "sms_body", "invalid_request"),
        ({}, ("opt_in",), "opt_in", "invalid_request"),
        ({"opt_in": False}, (), "opt_in", "invalid_request"),
        ({"opt_in": "true"}, (), "opt_in", "invalid_request"),
        ({"foreign_id": "f" * 257}, (), "foreign_id", "invalid_request"),
        ({"callback_url": "not a url"}, (), "callback_url", "invalid_request"),
        ({}, ("team_id",), "team_id", "invalid_request"),
        ({}, ("secret",), "secret", "invalid_request"),
        ({"callbackUrl": "http://127.0.0.1/x"}, (), "callbackUrl", "invalid_request"),
    ],
)
def test_sms_validation_failure_names_the_field(api: Any, changes: dict[str, Any], drop: tuple[str, ...],
                                               field: str, reason: str) -> None:
    r = api.dc_sms(changes, drop=drop)
    assert r.status_code == 400
    body = r.json()
    assert body["error"].startswith(f"{field}: ")
    assert body["accepted_count"] == 0
    assert body["rejected"][0]["reason"] == reason


def test_sms_body_over_160_characters_says_the_length(api: Any) -> None:
    assert "161" in api.dc_sms({"sms_body": "é" * 161}).json()["error"]


def test_non_json_body_is_a_400(sandbox: Any) -> None:
    r = sandbox.http.post("/v1/sms", content=b"phone_number=+1555", headers={"x-team-id": "t", "x-secret": "s"})
    assert r.status_code == 400
    assert r.json()["accepted_count"] == 0


@pytest.mark.parametrize("headers", [{}, {"x-team-id": "team-1"}, {"x-secret": "secret-1"},
                                     {"x-team-id": "", "x-secret": "secret-1"}])
def test_missing_auth_headers_are_401(api: Any, headers: dict[str, str]) -> None:
    r = api.dc_sms(headers=headers)
    assert r.status_code == 401
    assert r.json() == {"error": "invalid x-team-id / x-secret"}


def test_configured_credentials_are_enforced_in_headers_and_body(sandbox: Any, api: Any) -> None:
    sandbox.configure(credentials={"dropcowboy": {"team_id": "team-1", "secret": "secret-1"}})
    assert api.dc_sms().status_code == 200
    assert api.dc_sms(headers={"x-team-id": "team-1", "x-secret": "wrong"}).status_code == 401
    assert api.dc_sms({"secret": "wrong"}).status_code == 401


def test_body_credentials_must_match_the_headers(api: Any) -> None:
    assert api.dc_sms({"team_id": "another-team"}).status_code == 401


@pytest.mark.parametrize(("behaviour", "reason"), [("invalid", "invalid_number"), ("blacklisted", "dnc"),
                                                   ("optout", "opted_out")])
def test_scripted_numbers_are_rejected_with_a_reason(sandbox: Any, api: Any, behaviour: str, reason: str) -> None:
    sandbox.configure(numbers={"+15552223333": behaviour})
    r = api.dc_sms()
    assert r.status_code == 400
    assert r.json()["rejected"] == [{"phone_number": "+15552223333", "reason": reason}]
    assert api.dc_sms({"phone_number": "+15552224444"}).status_code == 200


def test_billing_failure_is_a_402(sandbox: Any, api: Any) -> None:
    sandbox.configure(billing_failure=True)
    r = api.dc_sms()
    assert r.status_code == 402
    assert r.json()["rejected"][0]["reason"] == "billing"


def test_throttled_sms_gets_429_with_retry_after(sandbox: Any, api: Any) -> None:
    sandbox.configure(throttle_rps={"dropcowboy": 2})
    codes = [api.dc_sms() for _ in range(5)]
    limited = [r for r in codes if r.status_code == 429]
    assert len(limited) >= 2
    assert limited[0].json() == {"error": "rate limit exceeded"}
    assert int(limited[0].headers["retry-after"]) >= 1


def test_webhook_is_posted_to_the_callback_url(sandbox: Any, api: Any, receiver: Any) -> None:
    sandbox.configure(receipts={"delay_ms": 20})
    r = api.dc_sms({"callback_url": receiver.url + "/hooks/dc?token=t0k", "foreign_id": "msg-7"})
    hook = receiver.wait(1)[0]
    assert hook["method"] == "POST"
    assert hook["path"] == "/hooks/dc"
    assert hook["query"] == {"token": "t0k"}
    body = hook["json"]
    assert body["drop_id"] == r.json()["drop_id"]
    assert body["foreign_id"] == "msg-7"
    assert body["phone_number"] == "+15552223333"
    assert body["status"] == "success"
    assert body["dnc"] is False and body["spam"] is False
    assert set(body) == {"drop_id", "phone_number", "attempt_date", "status", "reason", "dnc", "spam", "product_cost",
                         "compliance_fee", "tts_fee", "network", "foreign_id"}
    assert set(body["network"]) == {"name", "type"}


def test_webhook_reports_failure_for_an_undeliverable_number(sandbox: Any, api: Any, receiver: Any) -> None:
    sandbox.configure(receipts={"delay_ms": 0}, numbers={"+15552223333": "undeliverable"})
    assert api.dc_sms({"callback_url": receiver.url}).status_code == 200
    assert receiver.wait(1)[0]["json"]["status"] == "failure"


def test_account_default_webhook_is_used_without_callback_url(sandbox: Any, api: Any, receiver: Any) -> None:
    sandbox.configure(receipts={"delay_ms": 0}, dropcowboy_webhook_url=receiver.url + "/default")
    api.dc_sms()
    assert receiver.wait(1)[0]["path"] == "/default"


@pytest.mark.parametrize("audio", [
    {"recording_id": "sandbox-recording"},
    {"voice_id": "voice-1", "tts_body": "Hello from the sandbox"},
    {"audio_url": "https://example.com/message.mp3"},
])
def test_rvm_accepts_exactly_one_audio_source(api: Any, audio: dict[str, str]) -> None:
    r = api.dc_rvm(audio, drop=("recording_id",))
    assert r.status_code == 200
    assert r.json()["status"] == "queued"
    assert r.json()["foreign_id"] == "msg-1"


@pytest.mark.parametrize(
    ("changes", "drop", "field"),
    [
        ({}, ("recording_id",), "audio"),
        ({"audio_url": "https://example.com/a.mp3"}, (), "audio"),
        ({"voice_id": "voice-1"}, ("recording_id",), "tts_body"),
        ({"tts_body": "hello"}, ("recording_id",), "voice_id"),
        ({"recording_id": "nope"}, (), "recording_id"),
        ({}, ("brand_id",), "brand_id"),
        ({"brand_id": "nope"}, (), "brand_id"),
        ({}, ("foreign_id",), "foreign_id"),
        ({}, ("phone_number",), "phone_number"),
        ({"phone_number": "5552223333"}, (), "phone_number"),
        ({"forwarding_number": "123"}, (), "forwarding_number"),
        ({"pool_id": "nope"}, (), "pool_id"),
    ],
)
def test_rvm_validation_failure_names_the_field(api: Any, changes: dict[str, Any], drop: tuple[str, ...],
                                               field: str) -> None:
    r = api.dc_rvm(changes, drop=drop)
    assert r.status_code == 400
    assert r.json()["error"].startswith(f"{field}: ")


def test_contact_list_lifecycle(api: Any) -> None:
    created = api.dc("POST", "/v1/list", {"list_name": "Spring promo"})
    assert created.status_code == 200
    info = created.json()
    assert set(info) == {"list_id", "list_name", "created_at"}
    list_id = info["list_id"]
    assert api.dc("GET", f"/v1/list/{list_id}").json()["contact_count"] == 0

    added = api.dc("POST", f"/v1/list/{list_id}/contacts", {
        "fields": ["first_name", "phone", "email"],
        "values": [["Ann", "+15552223333", "ann@example.com"], ["Bob", "(415) 555-0147", ""],
                   ["Cy", "not a phone", ""], ["too", "short"]],
        "region": "US",
    })
    assert added.status_code == 200
    assert added.json()["accepted_count"] == 2
    assert [row["row"] for row in added.json()["rejected"]] == [2, 3]

    details = api.dc("GET", f"/v1/list/{list_id}").json()
    assert details == {**info, "contact_count": 2}

    assert api.dc("POST", f"/v1/list/{list_id}", {"list_name": "Summer promo"}).status_code == 200
    assert api.dc("GET", f"/v1/list/{list_id}").json()["list_name"] == "Summer promo"
    assert api.dc("DELETE", f"/v1/list/{list_id}").status_code == 200
    assert api.dc("GET", f"/v1/list/{list_id}").status_code == 404


@pytest.mark.parametrize("body", [
    {"fields": ["phone", "nickname"], "values": []},
    {"fields": ["first_name"], "values": [["Ann"]]},
    {"fields": ["phone"], "values": [["+15552223333"]], "region": "XX"},
    {"fields": ["phone"]},
])
def test_contacts_with_bad_fields_are_a_400(api: Any, body: dict[str, Any]) -> None:
    list_id = api.dc("POST", "/v1/list", {"list_name": "x"}).json()["list_id"]
    assert api.dc("POST", f"/v1/list/{list_id}/contacts", body).status_code == 400


def test_list_without_a_name_is_a_400_and_unknown_list_a_404(api: Any) -> None:
    assert api.dc("POST", "/v1/list", {}).status_code == 400
    assert api.dc("DELETE", "/v1/list/no-such-list").status_code == 404
    assert api.dc("POST", "/v1/list/no-such-list/contacts", {"fields": ["phone"], "values": []}).status_code == 404


def test_fixture_endpoints_list_a_pool_brand_recording_and_media(api: Any) -> None:
    assert [p["pool_id"] for p in api.dc("GET", "/v1/pool").json()] == ["text"]
    assert [b["brand_id"] for b in api.dc("GET", "/v1/brand").json()] == ["sandbox-brand"]
    assert [r["recording_id"] for r in api.dc("GET", "/v1/recording").json()] == ["sandbox-recording"]
    assert [m["media_id"] for m in api.dc("GET", "/v1/media").json()] == ["sandbox-media"]


def test_configured_pools_replace_the_default_and_drive_validation(sandbox: Any, api: Any) -> None:
    sandbox.configure(pools=["marketing", {"pool_id": "alerts", "pool_name": "Alerts"}],
                      recordings=[{"recording_id": "r1", "recording_name": "R1", "api_allowed": False}])
    assert [p["pool_id"] for p in api.dc("GET", "/v1/pool").json()] == ["marketing", "alerts"]
    assert api.dc_sms({"pool_id": "alerts"}).status_code == 200
    assert api.dc_sms({"pool_id": "text"}).status_code == 400
    assert api.dc("GET", "/v1/recording?api_allowed=true").json() == []


def test_fixture_endpoints_need_auth(sandbox: Any) -> None:
    assert sandbox.http.get("/v1/pool").status_code == 401
