"""Inbound replies: STOP and its synonyms suppress the number; anything else is only recorded."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from dispatcher.webhooks import stop_word

from .conftest import events, suppressions, wait_processed

ADA = "+12025550101"


@pytest.mark.parametrize("provider, payload", [
    ("dropcowboy", {"phone_number": ADA, "message": "STOP"}),
    ("dropcowboy", {"phone_number": ADA, "body": " stop \n"}),
    ("fonedynamics", {"From": ADA, "To": "+15557778888", "Text": "Unsubscribe"}),
    ("skycore", {"from": ADA.lstrip("+"), "to": "55555", "message": "QUIT."}),
])
def test_a_stop_reply_puts_the_sender_on_the_suppression_list(store, receiver, provider, payload):
    r = receiver.post(f"/webhooks/{provider}/inbound", payload)
    assert r.status_code == 200
    (e,) = wait_processed(store, 1)
    word = stop_word(next(v for k, v in payload.items() if k in ("message", "body", "Text")))
    assert e["kind"] == "reply" and e["result"] == f"opt-out ({word}): +1202***0101 suppressed"
    sup = suppressions(store)[ADA]
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    assert sup["source"] == "stop-reply" and sup["reason"] == f"replied {word} on {today}"


def test_other_replies_are_recorded_without_suppressing(store, receiver):
    for text in ("When does the sale end?", "STOP IT", "thanks", ""):
        assert receiver.post("/webhooks/dropcowboy/inbound", {"phone_number": ADA, "message": text}).status_code == 200
    got = wait_processed(store, 4)
    assert [e["result"] for e in got] == ["reply from +1202***0101 recorded"] * 4
    assert suppressions(store) == {}


def test_a_second_stop_keeps_the_first_suppression_entry(store, receiver):
    receiver.post("/webhooks/skycore/inbound", {"from": "12025550101", "message": "END"})
    wait_processed(store, 1)
    receiver.post("/webhooks/fonedynamics/inbound", {"From": ADA, "Text": "cancel"})
    got = wait_processed(store, 2)
    assert got[1]["result"] == "opt-out (CANCEL): +1202***0101 was already suppressed"
    assert suppressions(store)[ADA]["reason"].startswith("replied END on ")


def test_a_reply_from_an_invalid_number_is_recorded_and_ignored(store, receiver):
    receiver.post("/webhooks/dropcowboy/inbound", {"phone_number": "12", "message": "STOP"})
    (e,) = wait_processed(store, 1)
    assert e["result"] == "ignored: the reply's sender is not a valid number" and suppressions(store) == {}


@pytest.mark.parametrize("text, word", [("STOP", "STOP"), ("stopall", "STOPALL"), (" End! ", "END"),
                                        ("Quit", "QUIT"), ("stop please", None), ("STOPP", None), ("", None)])
def test_stop_words_are_matched_whole_trimmed_and_in_any_case(text, word):
    assert stop_word(text) == word
