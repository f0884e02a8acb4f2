"""Delivery receipts through the real receiver into real SQLite and PostgreSQL databases."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import update

from dispatcher.models import utcnow
from dispatcher.store import W
from dispatcher.webhooks import UNMATCHED_GRACE, process_pending

from .conftest import TOKEN, events, make_messages, message, set_status, suppressions, wait_processed, wait_status

ADA, BOB = "+12025550101", "+12025550102"


def dropcowboy(mid: int | None, drop_id: str, *, status: str = "success", reason: str = "", dnc: bool = False,
               phone: str = ADA, cost: tuple[float, float, float] = (0.0125, 0.0025, 0.001)) -> dict:
    return {"drop_id": drop_id, "phone_number": phone, "attempt_date": "2026-03-02T10:00:00Z", "status": status,
            "reason": reason, "dnc": dnc, "spam": False, "product_cost": cost[0], "compliance_fee": cost[1],
            "tts_fee": cost[2], "network": {"name": "Sandbox Wireless", "type": "mobile"},
            "foreign_id": None if mid is None else str(mid)}


def fone(mid: int | None, sid: str, status: str = "DELIVERED", code: str | None = None, to: str = ADA) -> dict:
    return {"MessageSid": sid, "ExternalId": None if mid is None else str(mid), "To": to, "Status": status,
            "ErrorCode": code, "DateUpdated": "2026-03-02T10:00:00Z"}


def skycore(tracking_id: str, status: str = "DELIVERED", code: str | None = None, info: str | None = None,
            to: str = ADA) -> dict:
    return {"tracking-id": tracking_id, "to": to.lstrip("+"), "status": status, "error-code": code,
            "error-info": info, "timestamp": "2026-03-02T10:00:00Z"}


def test_dropcowboy_webhook_marks_the_message_delivered_with_its_cost(store, receiver):
    (mid,) = make_messages(store, "dropcowboy", [ADA], provider_ids=["drop-1"])
    assert receiver.post("/webhooks/dropcowboy", dropcowboy(mid, "drop-1")).status_code == 200
    m = wait_status(store, mid, "delivered")
    assert m["cost"] == pytest.approx(0.0125 + 0.0025 + 0.001) and m["reason"] is None
    (e,) = wait_processed(store, 1)
    assert e["kind"] == "receipt" and e["result"].startswith(f"message {mid} (+1202***0101) sent -> delivered")


def test_dropcowboy_failure_by_drop_id_alone_marks_failed_with_the_reason(store, receiver):
    _, mid = make_messages(store, "dropcowboy", [ADA, BOB], provider_ids=["drop-1", "drop-2"])
    receiver.post("/webhooks/dropcowboy", dropcowboy(None, "drop-2", status="failure", reason="Undeliverable",
                                                      phone=BOB, cost=(0, 0, 0)))
    m = wait_status(store, mid, "failed")
    assert m["reason"] == "undelivered (dropcowboy receipt: Undeliverable)" and m["cost"] == 0


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_fonedynamics_receipt_by_external_id_marks_delivered_or_failed(store, receiver, method):
    ok, bad = make_messages(store, "fonedynamics", [ADA, BOB], status="unknown", provider_ids=[None, None])
    for payload in (fone(ok, "MOK"), fone(bad, "MBAD", "UNDELIVERED", "Undeliverable", to=BOB)):
        if method == "GET":
            params = {k: "" if v is None else v for k, v in payload.items()}
            r = receiver.http.get("/webhooks/fonedynamics", params={**params, "token": TOKEN})
        else:
            r = receiver.post("/webhooks/fonedynamics", payload)
        assert r.status_code == 200
    delivered = wait_status(store, ok, "delivered")
    failed = wait_status(store, bad, "failed")
    assert delivered["provider_message_id"] == "MOK"      # an `unknown` message learns the provider's id
    assert failed["provider_code"] == "Undeliverable" and "Undeliverable" in failed["reason"]


def test_skycore_postback_by_tracking_id_and_E114_suppresses_the_number(store, receiver):
    ok, bad = make_messages(store, "skycore", [ADA, BOB], provider_ids=["trk-1", "trk-2"])
    receiver.post("/webhooks/skycore", skycore("trk-1"))
    receiver.post("/webhooks/skycore", skycore("trk-2", "UNDELIVERED", "E114", "Number is blacklisted.", to=BOB))
    wait_status(store, ok, "delivered")
    m = wait_status(store, bad, "failed")
    assert m["provider_code"] == "E114" and "Number is blacklisted." in m["reason"]
    sup = suppressions(store)
    assert set(sup) == {BOB} and sup[BOB]["source"] == "skycore-E114"


def test_dropcowboy_dnc_puts_the_number_on_the_suppression_list(store, receiver):
    (mid,) = make_messages(store, "dropcowboy", [ADA], provider_ids=["drop-1"])
    receiver.post("/webhooks/dropcowboy", dropcowboy(mid, "drop-1", status="failure", reason="DNC", dnc=True))
    wait_status(store, mid, "failed")
    sup = wait_processed(store, 1) and suppressions(store)
    assert sup[ADA]["source"] == "dropcowboy-dnc" and "do-not-contact" in sup[ADA]["reason"]


def test_duplicate_and_out_of_order_receipts_are_harmless(store, receiver_factory):
    rx = receiver_factory(store, process_in_background=False)
    a, b = make_messages(store, "dropcowboy", [ADA, BOB], provider_ids=["drop-a", "drop-b"])
    # a: delivered, delivered again, then a late failure; b: failure first, then the delivery
    for payload in (dropcowboy(a, "drop-a"), dropcowboy(a, "drop-a"),
                    dropcowboy(a, "drop-a", status="failure", reason="Undeliverable"),
                    dropcowboy(b, "drop-b", status="failure", reason="Timeout", phone=BOB),
                    dropcowboy(b, "drop-b", phone=BOB)):
        assert rx.post("/webhooks/dropcowboy", payload).status_code == 200
    assert process_pending(store) == 5
    assert message(store, a)["status"] == "delivered" and message(store, b)["status"] == "delivered"
    results = [e["result"] for e in events(store)]
    assert results[1] == f"ignored (duplicate): message {a} is delivered"
    assert results[2] == f"ignored (failure after delivery): message {a} is delivered"
    assert results[3].endswith("sent -> failed") and results[4].endswith("failed -> delivered")
    assert message(store, b)["reason"] is None

    # processing the same events again changes nothing
    before = [message(store, a), message(store, b)]
    with store.tx() as conn:
        conn.execute(update(W).values(processed_at=None))
    assert process_pending(store) == 5
    assert [message(store, a), message(store, b)] == before


def test_a_receipt_for_a_message_still_sending_waits_for_the_worker(store, receiver_factory):
    rx = receiver_factory(store, process_in_background=False)
    (mid,) = make_messages(store, "skycore", [ADA], status="sending", provider_ids=[None])
    rx.post("/webhooks/skycore", skycore("trk-late"))
    assert process_pending(store) == 0 and events(store)[0]["processed_at"] is None
    with store.tx() as conn:   # the worker records the send
        from dispatcher.store import M

        conn.execute(update(M).where(M.c.id == mid).values(status="sent", provider_message_id="trk-late"))
    assert process_pending(store) == 1
    assert message(store, mid)["status"] == "delivered"


def test_a_receipt_overtaking_the_worker_is_applied_by_the_background_passes(store, receiver):
    (mid,) = make_messages(store, "dropcowboy", [ADA], status="sending", provider_ids=[None])
    receiver.post("/webhooks/dropcowboy", dropcowboy(mid, "drop-x"))
    set_status(store, mid, "sent")
    assert wait_status(store, mid, "delivered")["provider_message_id"] == "drop-x"


def test_receipts_for_no_known_message_wait_a_while_then_are_closed(store, receiver_factory):
    rx = receiver_factory(store, process_in_background=False)
    make_messages(store, "dropcowboy", [ADA], provider_ids=["drop-1"])
    rx.post("/webhooks/dropcowboy", dropcowboy(999_999, "drop-unknown"))
    rx.post("/webhooks/dropcowboy", {"status": "success"})
    rx.post("/webhooks/skycore", skycore("drop-1"))     # another provider's id is not a match
    assert process_pending(store) == 1
    with store.tx() as conn:
        conn.execute(update(W).values(received_at=utcnow() - UNMATCHED_GRACE - timedelta(seconds=1)))
    assert process_pending(store) == 2
    assert [e["result"] for e in events(store)] == [
        "ignored: no matching message", "ignored: the receipt names no message", "ignored: no matching message"]


def test_a_receipt_naming_another_number_does_not_touch_the_message(store, receiver_factory):
    rx = receiver_factory(store, process_in_background=False)
    (mid,) = make_messages(store, "fonedynamics", [ADA], provider_ids=["M1"])
    rx.post("/webhooks/fonedynamics", fone(mid, "M1", to=BOB))
    process_pending(store)
    assert message(store, mid)["status"] == "sent" and events(store)[0]["processed_at"] is None


def test_concurrent_passes_process_each_event_once(store, receiver_factory):
    rx = receiver_factory(store, process_in_background=False)
    phones = [f"+1202555{n:04d}" for n in range(200, 240)]
    ids = make_messages(store, "dropcowboy", phones, provider_ids=[f"d{n}" for n in range(40)])
    for n, (mid, phone) in enumerate(zip(ids, phones)):
        rx.post("/webhooks/dropcowboy", dropcowboy(mid, f"d{n}", phone=phone))
    counts: list[int] = []
    threads = [threading.Thread(target=lambda: counts.append(process_pending(store))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sum(counts) == 40
    assert all(message(store, mid)["status"] == "delivered" for mid in ids)
    assert all(e["result"].endswith("sent -> delivered") for e in events(store))


CREDS = {"dropcowboy": {"team_id": "t-1", "secret": "s-1"}, "skycore": {"api_key": "k-1"},
         "fonedynamics": {"account_sid": "AC1", "auth_token": "tok-1"}}


def _send_through_sandbox(sandbox, provider: str, mid: int, callback: str) -> str:
    """Send as a worker would, straight to the sandbox; returns the provider's message id."""
    http = sandbox.http
    if provider == "dropcowboy":
        r = http.post("/v1/sms", headers={"x-team-id": "t-1", "x-secret": "s-1"}, json={
            "team_id": "t-1", "secret": "s-1", "phone_number": ADA, "caller_id": "+15557778888", "pool_id": "text",
            "sms_body": "Hi", "opt_in": True, "foreign_id": str(mid), "callback_url": callback})
        return r.raise_for_status().json()["drop_id"]
    if provider == "fonedynamics":
        r = http.post("/v2/Properties/PS1/Messages", auth=("AC1", "tok-1"), json={
            "To": ADA, "Text": "Hi", "ExternalId": str(mid), "DeliveryReceipt": True,
            # POST: the sandbox's GET receipts lose our ?token= (httpx replaces a URL's query with params=)
            "DeliveryReceiptWebhookUri": callback, "DeliveryReceiptWebhookMethod": "POST"})
        return r.raise_for_status().json()["Message"]["MessageSid"]
    sandbox.configure(skycore_postback_url=callback)
    r = http.post("/skycore/api", headers={"x-api-key": "k-1"}, json={
        "action": "sendsms", "to": ADA.lstrip("+"), "from": "55555", "message-text": "Hi"})
    return r.raise_for_status().json()["tracking-id"]


@pytest.mark.parametrize("outcome", ["delivered", "failed"])
@pytest.mark.parametrize("provider", ["dropcowboy", "fonedynamics", "skycore"])
def test_receipts_the_sandbox_posts_are_understood(sqlite_store, receiver_factory, sandbox, provider, outcome):
    """The sandbox is a second reading of the provider documents: its receipts must land."""
    rx = receiver_factory(sqlite_store)
    sandbox.configure(credentials=CREDS, receipts={"enabled": True, "delay_ms": 50, "status": outcome})
    (mid,) = make_messages(sqlite_store, provider, [ADA], provider_ids=[None])
    pid = _send_through_sandbox(sandbox, provider, mid, rx.url_for(f"/webhooks/{provider}"))
    with sqlite_store.tx() as conn:     # what the worker records (the receipt may come before or after)
        from dispatcher.store import M

        conn.execute(update(M).where(M.c.id == mid).values(provider_message_id=pid))
    m = wait_status(sqlite_store, mid, outcome)
    assert m["provider_message_id"] == pid
    if outcome == "failed":
        assert m["reason"].startswith(f"undelivered ({provider} receipt: ")
    if provider == "dropcowboy" and outcome == "delivered":
        assert m["cost"] and m["cost"] > 0


def test_odd_field_values_are_read_defensively(store, receiver_factory):
    rx = receiver_factory(store, process_in_background=False)
    (mid,) = make_messages(store, "dropcowboy", [ADA], provider_ids=["drop-1"])
    odd = [("dropcowboy", {"foreign_id": "9" * 18, "drop_id": "x" * 300, "status": ["success"], "product_cost": "abc",
                           "dnc": "yes", "phone_number": {"n": 1}}),
           ("dropcowboy", {"foreign_id": str(mid), "drop_id": "drop-1", "status": "success", "product_cost": "0.5",
                           "compliance_fee": None, "tts_fee": True, "phone_number": ADA}),
           ("fonedynamics", {"ExternalId": {"a": 1}, "MessageSid": 17, "Status": 5}),
           ("skycore", {"tracking-id": 12345, "to": None, "status": None, "error-code": ["E114"]})]
    for provider, payload in odd:
        assert rx.post(f"/webhooks/{provider}", payload).status_code == 200
    with store.tx() as conn:
        conn.execute(update(W).values(received_at=utcnow() - UNMATCHED_GRACE - timedelta(seconds=1)))
    assert process_pending(store) == 4
    assert not any(e["result"].startswith("error") for e in events(store))
    assert message(store, mid)["status"] == "delivered" and message(store, mid)["cost"] == 0.5
    assert suppressions(store) == {}
