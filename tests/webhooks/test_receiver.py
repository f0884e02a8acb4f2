"""The HTTP side: token, size cap, JSON, routes, answering before processing. Real uvicorn, real SQLite."""

from __future__ import annotations

import logging

import pytest

from dispatcher.errors import InputError
from dispatcher.settings import get_settings
from dispatcher.webhooks import serve

from .conftest import TOKEN, events, wait_processed

ROUTES = ["/webhooks/dropcowboy", "/webhooks/fonedynamics", "/webhooks/skycore", "/webhooks/dropcowboy/inbound"]
REPLY = {"phone_number": "+12025550101", "message": "hello"}


@pytest.fixture()
def quiet(sqlite_store, receiver_factory):  # type: ignore[no-untyped-def]
    """A receiver that only records (no background processing), over SQLite."""
    return receiver_factory(sqlite_store, process_in_background=False)


@pytest.mark.parametrize("path", ROUTES)
def test_requests_without_the_right_token_get_a_bare_401_and_record_nothing(quiet, path):
    for token in (None, "", "wrong", TOKEN.upper(), TOKEN + "x", TOKEN[:-1]):
        r = quiet.post(path, REPLY, token=token)
        assert r.status_code == 401 and r.content == b""
    r = quiet.http.post(path, json=REPLY, headers={"X-Webhook-Token": "wrong"})
    assert r.status_code == 401 and r.content == b""
    assert events(quiet.store) == []


def test_token_is_accepted_in_the_query_or_the_header(quiet):
    assert quiet.post("/webhooks/dropcowboy", {"drop_id": "a"}).status_code == 200
    r = quiet.http.post("/webhooks/skycore", json={"tracking-id": "b"}, headers={"X-Webhook-Token": TOKEN})
    assert r.status_code == 200 and r.json()["ok"] is True
    got = events(quiet.store)
    assert [(e["provider"], e["kind"], e["payload"], e["processed_at"]) for e in got] == [
        ("dropcowboy", "receipt", {"drop_id": "a"}, None), ("skycore", "receipt", {"tracking-id": "b"}, None)]


def test_healthz_answers_without_a_token(quiet):
    r = quiet.http.get("/healthz")
    assert r.status_code == 200 and r.json() == {"ok": True}


def test_bodies_over_the_cap_get_413_whether_declared_or_streamed(sqlite_store, receiver_factory):
    rx = receiver_factory(sqlite_store, max_body=1024, process_in_background=False)
    at_cap = b'{"drop_id": "' + b"x" * (1024 - 15) + b'"}'
    assert len(at_cap) == 1024
    assert rx.post("/webhooks/dropcowboy", content=at_cap).status_code == 200
    over = b'{"drop_id": "' + b"x" * 2000 + b'"}'
    r = rx.post("/webhooks/dropcowboy", content=over)
    assert r.status_code == 413
    # no Content-Length: chunked transfer, counted as it is read

    def chunks():  # type: ignore[no-untyped-def]
        yield over[:600]
        yield over[600:]

    r = rx.post("/webhooks/dropcowboy", content=chunks())
    assert r.status_code == 413
    assert len(events(sqlite_store)) == 1


@pytest.mark.parametrize("body, what", [
    (b"{not json", "malformed JSON"),
    (b'{"status": NaN}', "malformed JSON"),
    (b"[1, 2]", "expected a JSON object"),
    (b"", "empty body"),
    (b"\xff\xfe{}", "malformed JSON"),
    (b"[" * 5000 + b"]" * 5000, ""),
])
def test_malformed_bodies_get_400(quiet, body, what):
    r = quiet.post("/webhooks/dropcowboy", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert what in r.json()["error"]
    assert events(quiet.store) == []


def test_unknown_provider_is_404_and_a_wrong_method_405(quiet):
    assert quiet.post("/webhooks/acme/inbound", REPLY).status_code == 404
    assert quiet.post("/webhooks/acme/inbound", REPLY, token=None).status_code == 401
    assert quiet.http.get("/webhooks/dropcowboy", params={"token": TOKEN}).status_code == 405


def test_fonedynamics_receipt_by_get_is_recorded_from_the_query_without_the_token(quiet):
    r = quiet.http.get("/webhooks/fonedynamics", params={
        "token": TOKEN, "MessageSid": "MABC", "ExternalId": "7", "To": "+12025550101", "Status": "DELIVERED",
        "ErrorCode": ""})
    assert r.status_code == 200
    (e,) = events(quiet.store)
    assert e["payload"] == {"MessageSid": "MABC", "ExternalId": "7", "To": "+12025550101", "Status": "DELIVERED",
                            "ErrorCode": ""}


def test_form_encoded_bodies_are_accepted(quiet):
    r = quiet.post("/webhooks/fonedynamics/inbound", content=b"From=%2B12025550101&Text=STOP",
                   headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200
    assert events(quiet.store)[0]["payload"] == {"From": "+12025550101", "Text": "STOP"}


@pytest.mark.parametrize("payload", [{"message": "STOP"}, {"phone_number": "+12025550101"}, {"from": "", "text": "x"}])
def test_an_inbound_reply_without_sender_or_text_is_400(quiet, payload):
    r = quiet.post("/webhooks/dropcowboy/inbound", payload)
    assert r.status_code == 400 and "sender's number" in r.json()["error"]


def test_neither_the_token_nor_numbers_nor_texts_reach_the_log(sqlite_store, receiver_factory, caplog):
    caplog.set_level(logging.DEBUG, logger="dispatcher")
    caplog.set_level(logging.DEBUG, logger="uvicorn")
    rx = receiver_factory(sqlite_store)
    rx.post("/webhooks/skycore/inbound", {"from": "12025550199", "message": "secret words STOP"})
    rx.post("/webhooks/dropcowboy/inbound", {"phone_number": "+12025550199", "message": "Stop"})
    rx.post("/webhooks/dropcowboy", {"drop_id": "nope", "phone_number": "+12025550199", "status": "success"})
    rx.post("/webhooks/dropcowboy", {}, token="wrong-" + TOKEN)
    wait_processed(sqlite_store, 2)
    # the test's own httpx client logs its URLs: only the receiver's lines count
    text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith(("dispatcher", "uvicorn")))
    assert "recorded as event" in text and "+1202***0199" in text
    assert TOKEN not in text and "2025550199" not in text and "secret words" not in text


def test_serve_refuses_to_start_without_a_webhook_token(monkeypatch):
    monkeypatch.delenv("WEBHOOK_TOKEN", raising=False)
    get_settings.cache_clear()
    try:
        with pytest.raises(InputError, match="WEBHOOK_TOKEN is not set"):
            serve(port=1)
        monkeypatch.setenv("WEBHOOK_TOKEN", "has spaces&amp")
        get_settings.cache_clear()
        with pytest.raises(InputError, match="WEBHOOK_TOKEN may only contain"):
            serve(port=1)
    finally:
        get_settings.cache_clear()


def test_answers_before_processing(quiet):
    """Recording is all the request waits for: the event stays pending until a pass runs."""
    r = quiet.post("/webhooks/dropcowboy", {"foreign_id": "1", "status": "success"})
    assert r.status_code == 200
    assert events(quiet.store)[0]["processed_at"] is None
    assert isinstance(r.json()["event"], int)
