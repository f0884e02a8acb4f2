"""The store contract, run against SQLite and PostgreSQL over real connections."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

from dispatcher.models import CampaignState, Status, utcnow
from dispatcher.store import Outcome, Store
from tests.store_utils import store_on


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path) -> Iterator[Store]:  # type: ignore[no-untyped-def]
    with store_on(request.param, tmp_path) as store:
        yield store


def _campaign(store: Store, name: str = "c1") -> int:
    c = store.create_campaign(name=name, provider="dropcowboy", source_path="/x/c.yaml", spec={"name": name},
                              state=CampaignState.RUNNING.value, load_complete=True)
    return int(c.id)  # type: ignore[arg-type]


def _rows(phones: list[str], start_line: int = 2) -> list[dict]:
    return [{"line": start_line + i, "phone": p, "region": "US", "body": f"hi {i}", "opt_in": True,
             "status": Status.QUEUED.value, "fields": {}, "consent": {}} for i, p in enumerate(phones)]


def test_migrations_create_exactly_the_models_schema(store):
    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []


def test_insert_chunk_keeps_one_message_per_number_and_records_duplicates_with_their_first_line(store):
    cid = _campaign(store)
    ids, dups = store.insert_chunk(cid, 1, [_rows(["+12025550101", "+12025550102"])], [], loaded_lines=3)
    assert len(ids) == 1 and dups == []
    ids, dups = store.insert_chunk(cid, 2, [_rows(["+12025550102", "+12025550103"], start_line=4)], [], loaded_lines=5)
    assert [d["reason"] for d in dups] == ["duplicate of line 3"]
    counts = store.counts(cid)
    assert counts["queued"] == 3 and counts["rejected"] == 1
    assert store.campaign(cid).loaded_lines == 5


def test_insert_chunk_stores_exactly_what_a_plain_sqlalchemy_insert_stores(store):
    from sqlalchemy import insert, select

    from dispatcher.store import B, M

    later = utcnow() + timedelta(hours=3)
    full = [dict(r, timezones="America/New_York Europe/London", not_before=later if i % 2 else None,
                 status=Status.DEFERRED.value if i % 2 else Status.QUEUED.value,
                 reason="quiet hours" if i % 2 else None,
                 encoding="UCS-2", segments=2, opt_in=bool(i % 3), fields={"first_name": f"Zoë {i}", "n": [i, None]},
                 consent={"opt_in_at": "2026-10-01"} if i % 2 else {})
            for i, r in enumerate(_rows([f"+1202555{i:04d}" for i in range(30)]))]
    for rows in (full, _rows(["+12025550201", "+12025550202"], start_line=40)):   # every column, and the defaults
        ours, plain = _campaign(store, f"ours-{len(rows)}"), _campaign(store, f"plain-{len(rows)}")
        (bid,), dups = store.insert_chunk(ours, 1, [[dict(r) for r in rows]], [], loaded_lines=99)
        assert dups == []
        with store.tx() as conn:
            plain_bid = conn.execute(insert(B).values(campaign_id=plain, seq=1, size=len(rows))
                                     .returning(B.c.id)).scalar_one()
            updated = conn.execute(select(M.c.updated_at).where(M.c.batch_id == bid).limit(1)).scalar_one()
            conn.execute(insert(M), [dict(r, campaign_id=plain, batch_id=plain_bid, updated_at=updated) for r in rows])

        def stored(cid: int) -> list[tuple]:
            with store.engine.connect() as conn:   # as the database holds them, not as SQLAlchemy reads them back
                return [tuple(r)[3:] for r in conn.exec_driver_sql(
                    f"SELECT * FROM message WHERE campaign_id = {cid} ORDER BY line").all()]

        assert stored(ours) == stored(plain) and len(stored(ours)) == len(rows)


def test_a_message_is_claimed_once_however_many_workers_race_for_it(store):
    cid = _campaign(store)
    (bid,), _ = store.insert_chunk(cid, 1, [_rows([f"+1202555{i:04d}" for i in range(200)])], [], loaded_lines=201)
    got: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        while True:
            claimed = store.claim(bid, 7, utcnow())
            if not claimed:
                return
            with lock:
                got.extend(m.id for m in claimed)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 200 and len(set(got)) == 200
    assert store.counts(cid)["sending"] == 200


def test_record_writes_status_and_attempt_only_for_claimed_messages(store):
    cid = _campaign(store)
    (bid,), _ = store.insert_chunk(cid, 1, [_rows(["+12025550101", "+12025550102"])], [], loaded_lines=3)
    claimed = store.claim(bid, 1, utcnow())
    now = utcnow()
    att = {"message_id": claimed[0].id, "campaign_id": cid, "started_at": now, "duration_ms": 5, "http_status": 200,
           "outcome": "sent", "provider_message_id": "d1", "provider_code": None, "detail": None}
    unclaimed = claimed[0].id + 1
    store.record([Outcome(claimed[0].id, Status.SENT.value, provider_message_id="d1", attempt=att),
                  Outcome(unclaimed, Status.SENT.value)], now)
    counts = store.counts(cid)
    assert counts["sent"] == 1 and counts["queued"] == 1      # the unclaimed one was not touched
    assert len(store.attempts_by_message(cid)[claimed[0].id]) == 1


def test_exchange_records_then_claims_in_one_transaction_with_the_suppression_entries(store):
    cid = _campaign(store)
    (bid,), _ = store.insert_chunk(cid, 1, [_rows([f"+1202555{i:04d}" for i in range(5)])], [], loaded_lines=6)
    store.suppress([("+12025550003", "stop-reply", None)])
    first, sup = store.exchange(bid, [], 2, utcnow())
    assert [m.phone for m in first] == ["+12025550000", "+12025550001"] and sup == {}
    now = utcnow()
    att = {"message_id": first[0].id, "campaign_id": cid, "started_at": now, "duration_ms": 5, "http_status": 200,
           "outcome": "sent", "provider_message_id": "d1", "provider_code": None, "detail": None}
    done = [Outcome(first[0].id, Status.SENT.value, attempt=att), Outcome(first[1].id, Status.FAILED.value, "HTTP 400")]
    second, sup = store.exchange(bid, done, 10, now)
    assert [m.phone for m in second] == ["+12025550002", "+12025550003", "+12025550004"]
    assert list(sup) == ["+12025550003"] and "stop-reply" in sup["+12025550003"]
    counts = store.counts(cid)
    assert (counts["sent"], counts["failed"], counts["sending"]) == (1, 1, 3)
    assert len(store.attempts_by_message(cid)[first[0].id]) == 1


def test_a_failed_exchange_writes_nothing(store):
    cid = _campaign(store)
    (bid,), _ = store.insert_chunk(cid, 1, [_rows(["+12025550101", "+12025550102"])], [], loaded_lines=3)
    (a,), _ = store.exchange(bid, [], 1, utcnow())
    bad_attempt = {"message_id": a.id, "campaign_id": cid, "started_at": utcnow(), "outcome": None}   # outcome is NOT NULL
    with pytest.raises(Exception):
        store.exchange(bid, [Outcome(a.id, Status.SENT.value, attempt=bad_attempt)], 1, utcnow())
    counts = store.counts(cid)
    assert (counts["sending"], counts["queued"], counts["sent"]) == (1, 1, 0)   # neither the record nor the claim


def test_unclaim_gives_back_only_the_claim_made_at_that_time(store):
    cid = _campaign(store)
    (bid,), _ = store.insert_chunk(cid, 1, [_rows([f"+1202555{i:04d}" for i in range(4)])], [], loaded_lines=5)
    first_at = utcnow()
    first, _ = store.exchange(bid, [], 2, first_at)
    (other,), _ = store.exchange(bid, [], 1, first_at + timedelta(microseconds=1))   # another claim, a moment later
    assert store.unclaim(bid, first_at, utcnow()) == 2
    counts = store.counts(cid)
    assert (counts["queued"], counts["sending"]) == (3, 1)
    again, _ = store.exchange(bid, [], 10, utcnow())   # the two given back and the one never claimed
    assert len(again) == 3 and {m.id for m in first} < {m.id for m in again} and other.id not in {m.id for m in again}


def test_a_claim_takes_only_messages_of_its_own_batch(store):
    cid = _campaign(store)
    ids, _ = store.insert_chunk(cid, 1, [_rows(["+12025550101", "+12025550102"]),
                                         _rows(["+12025550103", "+12025550104"], start_line=4)], [], loaded_lines=5)
    assert [m.phone for m in store.claim(ids[1], 10, utcnow())] == ["+12025550103", "+12025550104"]
    assert [m.phone for m in store.claim(ids[0], 10, utcnow())] == ["+12025550101", "+12025550102"]


def test_deferred_messages_come_back_when_due_and_stale_claims_become_unknown(store):
    cid = _campaign(store)
    (bid,), _ = store.insert_chunk(cid, 1, [_rows(["+12025550101", "+12025550102"])], [], loaded_lines=3)
    a, b = store.claim(bid, 2, utcnow())
    later = utcnow() + timedelta(hours=3)
    store.record([Outcome(a.id, Status.DEFERRED.value, "quiet hours", not_before=later)], utcnow())
    assert store.release_due(utcnow()) == []
    assert store.release_due(later + timedelta(seconds=1)) == [bid]
    assert store.counts(cid)["queued"] == 1
    assert store.expire_sending(utcnow() + timedelta(minutes=5), utcnow()) == 1   # b was never recorded
    assert store.counts(cid)["unknown"] == 1


def test_progress_counts_what_is_yet_to_settle_including_only_retries_due_before_the_horizon(store):
    cid = _campaign(store)
    phones = [f"+1202555010{i}" for i in range(6)]
    (bid,), _ = store.insert_chunk(cid, 1, [_rows(phones)], [], loaded_lines=7)
    sent, soon, late, failed, sending = store.claim(bid, 5, utcnow())
    now = utcnow()
    store.record([Outcome(sent.id, Status.SENT.value),
                  Outcome(soon.id, Status.DEFERRED.value, "retry", not_before=now + timedelta(seconds=30)),
                  Outcome(late.id, Status.DEFERRED.value, "quiet hours", not_before=now + timedelta(hours=3)),
                  Outcome(failed.id, Status.FAILED.value, "HTTP 400")], now)
    counts, pending = store.progress(cid, now + timedelta(seconds=90))
    assert (counts["queued"], counts["sending"], counts["deferred"], counts["sent"], counts["failed"]) == (1, 1, 2, 1, 1)
    assert "rejected" not in counts
    assert pending == 3                       # the queued one, the one in flight, the retry due in 30 s
    assert store.progress(cid, now + timedelta(hours=4))[1] == 4
    store.record([Outcome(sending.id, Status.SENT.value)], now)
    assert store.progress(cid, now + timedelta(seconds=90)) == ({**counts, "sending": 0, "sent": 2}, 2)


def test_retry_candidates_never_include_suppressed_numbers(store):
    cid = _campaign(store)
    (bid,), _ = store.insert_chunk(cid, 1, [_rows(["+12025550101", "+12025550102"])], [], loaded_lines=3)
    claimed = store.claim(bid, 2, utcnow())
    store.record([Outcome(m.id, Status.FAILED.value, "HTTP 503") for m in claimed], utcnow())
    store.suppress([("+12025550102", "stop-reply", None)])
    ids = store.retry_candidates(cid, ["failed"])
    assert ids == [claimed[0].id]
    assert store.requeue_for_retry(ids, ["failed"], utcnow()) == [bid]
    assert store.counts(cid)["queued"] == 1


def test_suppression_keeps_the_first_entry(store):
    assert store.suppress([("+12025550101", "manual", "asked")]) == 1
    assert store.suppress([("+12025550101", "stop-reply", None), ("+12025550102", "import", None)]) == 1
    assert "manual" in store.suppressed(["+12025550101"])["+12025550101"]
    assert store.unsuppress("+12025550101") and not store.unsuppress("+12025550101")


def test_campaign_completes_only_when_nothing_is_open(store):
    cid = _campaign(store)
    (bid,), _ = store.insert_chunk(cid, 1, [_rows(["+12025550101"])], [], loaded_lines=2)
    assert not store.complete_if_done(cid)
    (m,) = store.claim(bid, 1, utcnow())
    store.record([Outcome(m.id, Status.SENT.value)], utcnow())
    assert store.complete_if_done(cid)
    assert store.campaign(cid).state == "completed"


def test_messages_given_back_after_a_cancel_are_cancelled_not_left_queued(store):
    cid = _campaign(store)
    (bid,), _ = store.insert_chunk(cid, 1, [_rows(["+12025550101", "+12025550102", "+12025550103"])], [], loaded_lines=4)
    a, b = store.claim(bid, 2, utcnow())
    store.requeue([a.id], utcnow())                       # running: back to queued, to be sent
    assert store.counts(cid)["queued"] == 2
    (a,) = [m for m in store.claim(bid, 1, utcnow())]
    store.set_state(cid, CampaignState.CANCELLED)
    store.cancel_open(cid, utcnow())                      # what `dispatcher cancel` does to the open messages
    store.requeue([a.id, b.id], utcnow())                 # the worker gives back what it had claimed
    counts = store.counts(cid)
    assert (counts["cancelled"], counts["queued"], counts["sending"]) == (3, 0, 0)
    assert {m["reason"] for m in store.messages(cid)} == {"campaign cancelled"}


def test_upgrade_brings_an_older_database_to_the_newest_revision(store):
    from alembic import command
    from alembic.script import ScriptDirectory

    from dispatcher import migrate

    cfg = migrate.alembic_config(store.engine)
    assert migrate.HEAD == ScriptDirectory.from_config(cfg).get_current_head()
    command.downgrade(cfg, "0002")
    assert migrate.current(store.engine) == "0002"
    migrate.upgrade(store.engine)
    assert migrate.current(store.engine) == migrate.HEAD
    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []
