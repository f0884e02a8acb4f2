"""Loading with several planning processes gives exactly what one process gives: the same messages, rejected
rows and reasons (duplicates named by their first line across chunks and processes), the same batches, the same
located error and resume after a failure. Real SQLite and PostgreSQL databases."""

from __future__ import annotations

import os
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Iterator

import pytest

from dispatcher import loader
from dispatcher.campaign import Campaign
from dispatcher.loader import load, planning_processes
from dispatcher.store import Store
from tests.store_utils import store_on

from .conftest import campaign_for

NOW = datetime(2026, 12, 1, 23, 30, tzinfo=UTC)   # 18:30 in New York, 15:30 in Los Angeles: quiet hours matter
QUIET = ('quiet_hours:\n  start: "18:00"\n  end: "08:00"\n')
MESSAGE = '"{{ first_name[0] }}: hi {{ first_name }}, 20% off today. Reply STOP to opt out."'   # no initial: rejected


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with store_on(request.param, tmp_path) as store:
        yield store


def varied_contacts(n: int, seed: int = 3) -> str:
    """Every kind of row: valid numbers in several spellings and zones, repeats near and far (some of them with a
    bad opt_in or a bad time zone), invalid numbers, suppressed numbers, wrong value counts, unreadable rows,
    quoted line breaks, empty names the template cannot index, and no consent."""
    rnd = random.Random(seed)
    pool = [f"+1{area}555{i:04d}" for area in ("212", "310", "602", "808") for i in range(n // 6)]
    lines = ["phone,opt_in,first_name,timezone,opt_in_at"]
    for i in range(n):
        kind = rnd.random()
        phone = rnd.choice(pool)
        if kind < 0.04:
            phone = rnd.choice(["12", "+1 123 456 7890", "call me", "+8001234567", ""])
        elif kind < 0.10:
            phone = f"({phone[2:5]}) {phone[5:8]}-{phone[8:]}"
        opt_in = rnd.choice(["yes", "yes", "yes", "no", "", "1", "maybe" if kind > 0.97 else "true"])
        name = rnd.choice([f"N{i}", "", "Zoë", "\"Mary\nAnn\"", "Ω" * 80])
        zone = rnd.choice(["", "", "", "Europe/London", "Mars/Olympus" if kind > 0.95 else "Asia/Tokyo"])
        row = f"{phone},{opt_in},{name},{zone},2026-10-0{1 + i % 9}"
        if 0.90 < kind < 0.91:
            row += ",surplus"
        elif 0.91 < kind < 0.915:
            row = f'{phone},yes,"Bo"b,,'                     # text after a closing quote: unreadable
        lines.append(row)
    return "\n".join(lines) + "\n"


def snapshot(store: Store, campaign_id: int) -> dict[str, Any]:
    """Everything a load stores, without the ids that differ between two campaigns."""
    batch_of: dict[int, int] = {}
    with store.engine.connect() as conn:
        from sqlalchemy import select

        from dispatcher.store import B
        for bid, seq, size in conn.execute(select(B.c.id, B.c.seq, B.c.size).where(B.c.campaign_id == campaign_id)):
            batch_of[bid] = seq
        sizes = dict(conn.execute(select(B.c.seq, B.c.size).where(B.c.campaign_id == campaign_id)).all())
    skip = {"id", "campaign_id", "batch_id", "updated_at"}
    messages = {m["line"]: {**{k: v for k, v in m.items() if k not in skip}, "batch": batch_of[m["batch_id"]]}
                for m in store.messages(campaign_id)}
    rejected = {r["line"]: (r["phone"], r["reason"]) for r in store.rejected(campaign_id)}
    assert not messages.keys() & rejected.keys()
    row = store.campaign(campaign_id)
    return {"messages": messages, "rejected": rejected, "sizes": sizes,
            "campaign": (row.state, (row.state_reason or "").replace(row.name, "NAME"), row.loaded_lines,
                         row.batch_count, row.load_complete)}


def campaign_in(folder: Path, contacts: str) -> Campaign:
    folder.mkdir()
    return campaign_for(folder, contacts, extra=QUIET, message=MESSAGE)


def load_both(tmp_path: Path, store: Store, contacts: str, processes: int = 2,
              **kw: Any) -> tuple[dict[str, Any], dict[str, Any], Any, Any]:
    """Snapshots and results of loading ``contacts`` in this process and with ``processes`` planning processes."""
    r1 = load(campaign_in(tmp_path / "one", contacts), store, None, now=NOW, processes=0, **kw)
    r2 = load(campaign_in(tmp_path / "two", contacts), store, None, now=NOW, processes=processes, **kw)
    return snapshot(store, r1.campaign_id), snapshot(store, r2.campaign_id), r1, r2


def same_result(r1: Any, r2: Any) -> None:
    assert (r1.rows, r1.messages, r1.rejected, r1.batches, r1.decisions) == \
           (r2.rows, r2.messages, r2.rejected, r2.batches, r2.decisions)


@pytest.mark.parametrize("processes", [1, 2])
def test_planning_processes_store_exactly_what_the_loading_process_does(tmp_path: Path, db: Store,
                                                                        processes: int) -> None:
    db.suppress([("+12125550003", "manual", "asked"), ("+13105550007", "stop-reply", None)])
    contacts = varied_contacts(1500)
    single, parallel, r1, r2 = load_both(tmp_path, db, contacts, processes, chunk_rows=37, batch_size=9)
    assert parallel == single
    same_result(r1, r2)
    reasons = {reason for _, reason in single["rejected"].values()}
    statuses = {m["status"] for m in single["messages"].values()}
    assert {"queued", "deferred", "skipped"} <= statuses          # the file exercises every outcome
    assert any(r.startswith("duplicate of line") for r in reasons)
    assert any(r.startswith("invalid number") for r in reasons)
    assert any(r.startswith("opt_in must be") for r in reasons) and any(r.startswith("timezone:") for r in reasons)
    assert any(r.startswith("row cannot be read") for r in reasons) and any(r.startswith("message:") for r in reasons)
    assert any((m["reason"] or "").startswith("suppressed") for m in single["messages"].values())


def test_past_the_remembered_numbers_duplicates_are_still_named_by_their_first_line(
        tmp_path: Path, db: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    # With room for 5 numbers, repeats are found within a chunk, by the database, or planned by the loading
    # process itself when a planning process skipped a number it had planned before.
    monkeypatch.setattr(loader, "MAX_REMEMBERED", 5)
    single, parallel, r1, r2 = load_both(tmp_path, db, varied_contacts(700, seed=11), chunk_rows=23, batch_size=4)
    assert parallel == single
    same_result(r1, r2)
    assert sum(reason.startswith("duplicate of line") for _, reason in single["rejected"].values()) > 100


def test_a_file_of_one_number_is_one_message_and_its_repeats(tmp_path: Path, db: Store) -> None:
    contacts = "phone,opt_in,first_name\n" + "+12025550101,yes,Ada\n" * 400 + "+12025550102,yes,Bo\n"
    single, parallel, r1, r2 = load_both(tmp_path, db, contacts, chunk_rows=30)
    assert parallel == single and r2.messages == 2 and r2.rejected == 399
    assert {reason for _, reason in parallel["rejected"].values()} == {"duplicate of line 2"}


def _fail_at(monkeypatch: pytest.MonkeyPatch, line: int, exc: BaseException) -> None:
    original = loader.RowPlanner.row

    def row(self: Any, at: int, *args: Any, **kw: Any) -> Any:
        if at == line:
            raise exc
        return original(self, at, *args, **kw)

    monkeypatch.setattr(loader.RowPlanner, "row", row)   # forked planning processes inherit the patch


def stored_rows(store: Store, campaign_id: int) -> tuple[dict[int, Any], dict[int, Any]]:
    got = snapshot(store, campaign_id)
    return got["messages"], got["rejected"]


@pytest.mark.parametrize("exc", [ValueError("unknown default region 'XX'"), KeyboardInterrupt()])
def test_an_error_while_planning_stops_the_load_at_the_same_line_and_it_resumes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: BaseException, db: Store) -> None:
    contacts = varied_contacts(400, seed=5)
    clean = stored_rows(db, load(campaign_in(tmp_path / "clean", contacts), db, None, now=NOW, processes=0,
                                 chunk_rows=25).campaign_id)
    fail_at = sorted(clean[0] | clean[1])[300]
    stopped = {}
    for processes in (0, 2):
        c = campaign_in(tmp_path / str(processes), contacts)
        _fail_at(monkeypatch, fail_at, exc)
        with pytest.raises(type(exc)):
            load(c, db, None, now=NOW, processes=processes, chunk_rows=25)
        stopped[processes] = snapshot(db, int(db.campaign(c.name).id))  # type: ignore[arg-type]
        monkeypatch.undo()
        r = load(c, db, None, now=NOW, processes=processes, chunk_rows=25)
        assert r.resumed and stored_rows(db, r.campaign_id) == clean
    assert stopped[2] == stopped[0]
    state, reason, loaded_lines, _, _ = stopped[2]["campaign"]
    assert state == "stopped" and loaded_lines < fail_at
    assert len(stopped[2]["messages"]) + len(stopped[2]["rejected"]) == 300      # the rows before the failing one
    assert reason.startswith(f"loading stopped after line {loaded_lines}: reading the rows after line {loaded_lines} "
                             f"failed ({type(exc).__name__}")


def test_an_error_reading_the_file_surfaces_after_the_chunks_before_it_are_stored(
        tmp_path: Path, db: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    contacts = varied_contacts(400, seed=6)
    original = loader.iter_rows
    stopped = {}
    for processes in (0, 2):
        def failing(*args: Any, **kw: Any) -> Iterator[Any]:
            for n, item in enumerate(original(*args, **kw)):
                if n == 330:
                    raise OSError(5, "Input/output error")
                yield item

        monkeypatch.setattr(loader, "iter_rows", failing)
        c = campaign_in(tmp_path / str(processes), contacts)
        with pytest.raises(OSError):
            load(c, db, None, now=NOW, processes=processes, chunk_rows=25)
        stopped[processes] = snapshot(db, int(db.campaign(c.name).id))  # type: ignore[arg-type]
        monkeypatch.undo()
    assert stopped[2] == stopped[0]
    assert len(stopped[2]["messages"]) + len(stopped[2]["rejected"]) == 325   # the 13 chunks before the failing row
    _, reason, loaded_lines, _, _ = stopped[2]["campaign"]
    assert reason == (f"loading stopped after line {loaded_lines}: reading the rows after line {loaded_lines} failed "
                      "(OSError: [Errno 5] Input/output error); run the same command again to resume")


def test_a_planning_process_that_dies_stops_the_load_with_the_line_it_reached(
        tmp_path: Path, db: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    contacts = varied_contacts(300, seed=8)
    clean = stored_rows(db, load(campaign_in(tmp_path / "clean", contacts), db, None, now=NOW, processes=0,
                                 chunk_rows=25).campaign_id)
    c = campaign_in(tmp_path / "dies", contacts)
    original = loader.RowPlanner.row
    loading_process = os.getpid()

    died = tmp_path / "died"

    def row(self: Any, at: int, *args: Any, **kw: Any) -> Any:
        if at >= 200 and os.getpid() != loading_process:
            with open(died, "a") as fh:
                fh.write(f"{at}\n")
            os._exit(3)      # as the out-of-memory killer would end it
        return original(self, at, *args, **kw)

    monkeypatch.setattr(loader.RowPlanner, "row", row)
    with pytest.raises(RuntimeError, match=r"a planning process exited unexpectedly \(exit code 3\)"):
        load(c, db, None, now=NOW, processes=2, chunk_rows=25)
    stopped = db.campaign(c.name)
    # The loading process plans chunks too, so the chunk that holds line 200 may have been stored: the load stops
    # before the first row a planning process died on.
    first_death = min(int(line) for line in died.read_text().split())
    assert stopped.state == "stopped" and stopped.loaded_lines < first_death
    messages, rejected = stored_rows(db, stopped.id)
    assert max(messages | rejected, default=0) <= stopped.loaded_lines
    at = stopped.loaded_lines
    assert (stopped.state_reason or "").startswith(f"loading stopped after line {at}: reading the rows after line {at} "
                                                   "failed (RuntimeError: a planning")
    monkeypatch.undo()
    r = load(c, db, None, now=NOW, processes=2, chunk_rows=25)
    assert stored_rows(db, r.campaign_id) == clean


def test_small_files_are_planned_in_the_loading_process() -> None:
    assert planning_processes(loader.PARALLEL_MIN_ROWS - 1) == 0
    assert planning_processes(10_000_000) == min(len(os.sched_getaffinity(0)) - 1, loader.MAX_PLANNING_PROCESSES)
