"""Loading contact files into a real SQLite database: odd encodings and shapes are read row by row, every data
row ends up exactly once (a message or a rejected row with its reason), and a load that fails midway stops the
campaign with the line it reached and resumes from there without losing or repeating a row."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from dispatcher import report
from dispatcher.campaign import Campaign
from dispatcher.errors import ContactsError
from dispatcher.loader import MAX_FIELD, LoadResult, load
from dispatcher.store import Store

from .conftest import campaign_for


def outcome(store: Store, campaign_id: int) -> dict[int, tuple[str, str | None]]:
    """line -> (status, reason) for every stored row; fails if a line is stored twice."""
    out: dict[int, tuple[str, str | None]] = {}
    for m in store.messages(campaign_id):
        assert m["line"] not in out
        out[m["line"]] = (m["status"], m["reason"])
    for r in store.rejected(campaign_id):
        assert r["line"] not in out, f"line {r['line']} is both a message and a rejected row"
        out[r["line"]] = ("rejected", r["reason"])
    return out


def fields(store: Store, campaign_id: int) -> dict[int, dict[str, Any]]:
    return {m["line"]: m["fields"] for m in store.messages(campaign_id)}


def test_bom_crlf_latin1_blank_lines_and_quoted_line_breaks_are_read_as_written(tmp_path: Path, store: Store) -> None:
    data = (b"\xef\xbb\xbfPhone , OPT_IN,first_name\r\n"      # BOM, spaces and capitals in the header
            b"+12025550101,yes,Ada\r\n"
            b"\r\n"                                             # blank line: not a row
            b"+12025550102,yes,Ren\xe9e\r\n"                    # a Latin-1 / Windows-1252 line in a UTF-8 file
            b",,\r\n"                                           # a row of nothing: not a row either
            b"\"+12025550103\",yes,\"Mary\r\nAnn\"\r\n"          # a quoted line break: one row on two lines
            b"+12025550104,yes,Zo\xc3\xab\r\n"                  # UTF-8
            b"+12025550105,yes,Bob")                            # no line break at the end
    c = campaign_for(tmp_path, data)
    r = load(c, store, None)
    got = outcome(store, r.campaign_id)
    assert sorted(got) == [2, 4, 6, 8, 9]
    assert all(status == "queued" for status, _ in got.values())
    f = fields(store, r.campaign_id)
    assert f[4]["first_name"] == "Renée" and f[6]["first_name"] == "Mary\r\nAnn" and f[8]["first_name"] == "Zoë"
    assert (r.rows, r.messages, r.rejected) == (5, 5, 0)


def test_lone_carriage_returns_end_lines_like_line_feeds(tmp_path: Path, store: Store) -> None:
    c = campaign_for(tmp_path, b"phone,opt_in,first_name\r+12025550101,yes,Ada\r+12025550102,yes,Bob\r\r+12025550103,no,Cy\r")
    r = load(c, store, None)
    got = outcome(store, r.campaign_id)
    assert sorted(got) == [2, 3, 5]
    assert got == {2: ("queued", None), 3: ("queued", None), 5: ("skipped", "no recorded consent")}


def test_extra_and_missing_values_reject_the_row_and_say_how_many(tmp_path: Path, store: Store) -> None:
    c = campaign_for(tmp_path, "phone,opt_in,first_name\n"
                               "+12025550101,yes,Ada,surplus\n"
                               "+12025550102,yes\n"
                               "+12025550103,yes,Cy,,\n"           # trailing separators of a spreadsheet export: fine
                               "+12025550104\n")
    r = load(c, store, None)
    got = outcome(store, r.campaign_id)
    assert got[2] == ("rejected", "has 4 values but the header names 3 columns")
    assert got[3] == ("rejected", "has 2 values but the header names 3 columns")
    assert got[4] == ("queued", None)
    assert got[5] == ("rejected", "has 1 values but the header names 3 columns")


def test_an_unclosed_quote_is_one_rejected_row_that_says_where_it_ran_to(tmp_path: Path, store: Store) -> None:
    c = campaign_for(tmp_path, 'phone,opt_in,first_name\n+12025550101,yes,Ada\n+12025550102,yes,"Bob\n+12025550103,yes,Cy\n'
                               '+12025550104,yes,Di\n')
    r = load(c, store, None)
    got = outcome(store, r.campaign_id)
    assert got == {2: ("queued", None), 3: ("rejected", 'row cannot be read: a quoted value is still open at the end of '
                                                        'the file (the row runs from line 3 to line 5: is a quote (") left open?)')}


def test_text_after_a_closing_quote_rejects_the_row(tmp_path: Path, store: Store) -> None:
    c = campaign_for(tmp_path, 'phone,opt_in,first_name\n+12025550101,yes,"Ada" Lovelace\n+12025550102,yes,Bob "B" Smith\n')
    got = outcome(store, load(c, store, None).campaign_id)
    assert got[2] == ("rejected", 'row cannot be read: text follows the closing quote of a value (write "" for a quote '
                                  'inside a quoted value)')
    assert got[3] == ("queued", None)       # a quote inside an unquoted value is just a character


def test_a_10_mb_value_rejects_its_row_and_the_rows_around_it_load(tmp_path: Path, store: Store) -> None:
    big = "x" * 10_000_000
    c = campaign_for(tmp_path, f"phone,opt_in,first_name\n+12025550101,yes,Ada\n+12025550102,yes,{big}\n"
                               f"+12025550103,yes,\"{big}\"\n+12025550104,yes,Di\n")
    r = load(c, store, None)
    got = outcome(store, r.campaign_id)
    assert got[2] == ("queued", None) and got[5] == ("queued", None)
    for line in (3, 4):
        assert got[line] == ("rejected", f"row cannot be read: a value is longer than {MAX_FIELD:,} characters")
    assert (r.rows, r.messages, r.rejected) == (4, 2, 2)


def test_nul_bytes_never_reach_the_database(tmp_path: Path, store: Store) -> None:
    c = campaign_for(tmp_path, b"phone,opt_in,first_name\n+12025550101,yes,A\x00da\n+1202555\x000102,yes,Bob\n")
    r = load(c, store, None)
    got = outcome(store, r.campaign_id)
    assert got[2][0] == "queued" and fields(store, r.campaign_id)[2]["first_name"] == "A\ufffdda"
    assert got[3][0] == "rejected" and got[3][1].startswith("invalid number")
    assert all("\x00" not in str(row) for row in store.rejected(r.campaign_id))


def test_bad_numbers_are_rejected_with_the_reason_in_the_report(tmp_path: Path, store: Store) -> None:
    c = campaign_for(tmp_path, "phone,opt_in,first_name\n"
                               ",yes,Empty\n"
                               "1-800-FLOWERS,yes,Letters\n"
                               "555-0199,yes,Short\n"
                               "+19005550123,yes,Premium\n"
                               "12345,yes,Shortcode\n"
                               "020 7183 8750,yes,London written for London\n"
                               "+442071838750,yes,London written for the world\n"
                               "+999123456789,yes,Nowhere\n"
                               "(202) 555-0101,yes,Local\n"
                               "+1 202 555 0101,yes,Local again\n")
    r = load(c, store, None)
    rows = {m["line"]: m for m in report.build(store, store.campaign(r.campaign_id))["messages"]}
    assert rows[2]["reason"] == "invalid number: empty phone number"
    assert rows[3]["reason"] == "invalid number: contains letters"
    assert rows[4]["reason"] == "invalid number: too short"
    assert rows[5]["reason"] == "invalid number: premium-rate number"
    assert rows[6]["reason"] == "invalid number: short code"
    assert rows[7]["reason"] == ("invalid number: too long (read as a US number: write numbers of other countries "
                                 "with + and their country code)")
    assert rows[8]["status"] == "queued" and rows[8]["phone"] == "+442071838750"
    assert rows[9]["reason"] == "invalid number: unknown country code"
    assert rows[10]["status"] == "queued" and rows[10]["phone"] == "+12025550101"
    assert rows[11]["reason"] == "duplicate of line 10"
    assert all(rows[n]["status"] == "rejected" for n in (2, 3, 4, 5, 6, 7, 9, 11))
    assert rows[3]["phone"] == "1-800-FLOWERS"     # as written, so the user can find the row


def test_numbers_of_another_country_are_read_in_the_default_region(tmp_path: Path, store: Store) -> None:
    c = campaign_for(tmp_path, "phone,opt_in\n020 7183 8750,yes\n2025550101,yes\n", region="GB", message='"Hello"')
    got = outcome(store, load(c, store, None).campaign_id)
    assert got[2] == ("queued", None)
    assert got[3][1] is not None and got[3][1].startswith("invalid number:") and "read as a GB number" in got[3][1]


def test_duplicates_name_the_line_of_the_message_across_chunks(tmp_path: Path, store: Store) -> None:
    rows = ["+12025550101,yes,A", "+12025550102,yes,B", "2025550101,yes,A2", "+12025550102,yes,B2", "+12025550103,yes,C",
            "(202) 555-0101,yes,A3", "(202) 555-0101,yes,A4", "+12025550103,yes,C2"]
    c = campaign_for(tmp_path, "phone,opt_in,first_name\n" + "\n".join(rows) + "\n")
    r = load(c, store, None, chunk_rows=2, batch_size=1)
    got = outcome(store, r.campaign_id)
    assert {line: reason for line, (status, reason) in got.items() if status == "rejected"} == {
        4: "duplicate of line 2", 5: "duplicate of line 3", 7: "duplicate of line 2", 8: "duplicate of line 2",
        9: "duplicate of line 6"}


def test_a_row_that_fails_first_does_not_make_its_number_a_duplicate(tmp_path: Path, store: Store) -> None:
    c = campaign_for(tmp_path, "phone,opt_in,first_name\n+12025550101,maybe,A\n+12025550101,yes,A\n")
    got = outcome(store, load(c, store, None).campaign_id)
    assert got[2] == ("rejected", "opt_in must be one of true/false/yes/no/1/0, got 'maybe'")
    assert got[3] == ("queued", None)


def test_a_contact_file_without_a_phone_column_stores_nothing(tmp_path: Path, store: Store) -> None:
    c = campaign_for(tmp_path, "phone,opt_in\n+12025550101,yes\n", message='"Hello"')
    c.contacts_path.write_text("mobile,opt_in\n+12025550101,yes\n")   # changed after validation
    with pytest.raises(ContactsError, match=r"contacts.csv:1: column 'phone' is missing"):
        load(c, store, None)
    assert store.find_campaign(c.name) is None
    c.contacts_path.write_text("")
    with pytest.raises(ContactsError, match="is empty"):
        load(c, store, None)
    assert store.campaigns() == []


def test_without_a_queue_everything_is_stored_and_the_campaign_waits_paused(tmp_path: Path, store: Store) -> None:
    c = campaign_for(tmp_path, "phone,opt_in,first_name\n+12025550101,yes,A\n+12025550102,no,B\nx,yes,C\n")
    r = load(c, store, None, batch_size=1)
    row = store.campaign(r.campaign_id)
    assert row.state == "paused" and row.load_complete and row.batch_count == 2
    assert f"dispatcher resume {c.name}" in (row.state_reason or "")
    expected = {2: ("queued", None), 3: ("skipped", "no recorded consent"), 4: ("rejected", "invalid number: contains letters")}
    assert outcome(store, r.campaign_id) == expected
    again = load(c, store, None)                                  # loading again changes nothing
    assert again.resumed and again.rows == 0 and outcome(store, r.campaign_id) == expected
    assert store.campaign(r.campaign_id).state == "paused"


def test_a_scheduled_campaign_without_a_queue_is_scheduled(tmp_path: Path, store: Store) -> None:
    c = campaign_for(tmp_path, "phone,opt_in,first_name\n+12025550101,yes,A\n", extra="schedule: 2099-01-01T09:00:00+00:00\n")
    row = store.campaign(load(c, store, None).campaign_id)
    assert row.state == "scheduled" and row.load_complete


# ------------------------------------------------------------------ failing midway and resuming

def failing_on_call(monkeypatch: pytest.MonkeyPatch, n: int) -> list[int]:
    """Make the n-th Store.insert_chunk call (counting from 1) raise, as a full disk would; returns the call log."""
    original = Store.insert_chunk
    calls: list[int] = []

    def insert_chunk(self: Store, campaign_id: int, first_seq: int, batches: Any, rejected: Any, loaded_lines: int) -> Any:
        calls.append(loaded_lines)
        if len(calls) == n:
            raise OSError(28, "No space left on device")
        return original(self, campaign_id, first_seq, batches, rejected, loaded_lines)

    monkeypatch.setattr(Store, "insert_chunk", insert_chunk)
    return calls


def contacts_with_repeats(n: int) -> str:
    # Every 7th row repeats the number of row 1 (line 2), every 11th has a bad number, the rest are distinct.
    rows = []
    for i in range(n):
        phone = "+12025550100" if i % 7 == 0 else ("12" if i % 11 == 0 else f"+1202{2000000 + i:07d}")
        rows.append(f"{phone},{'yes' if i % 5 else 'no'},N{i}")
    return "phone,opt_in,first_name\n" + "\n".join(rows) + "\n"


def test_a_load_that_fails_midway_stops_the_campaign_and_resumes_without_losing_or_repeating_rows(
        tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    c: Campaign = campaign_for(tmp_path, contacts_with_repeats(100))
    calls = failing_on_call(monkeypatch, 3)
    with pytest.raises(OSError, match="No space left"):
        load(c, store, None, chunk_rows=20, batch_size=7)
    row = store.campaign(c.name)
    assert row.state == "stopped" and not row.load_complete and row.loaded_lines == 41
    assert row.state_reason == ("loading stopped after line 41: storing lines 42-61 failed (OSError: [Errno 28] No space "
                                "left on device); run the same command again to resume")
    before = outcome(store, int(row.id))  # type: ignore[arg-type]
    assert sorted(before) == list(range(2, 42))          # chunks 1 and 2, nothing of chunk 3

    monkeypatch.undo()
    r: LoadResult = load(c, store, None, chunk_rows=20, batch_size=7)
    assert r.resumed and r.rows == 60
    after = outcome(store, r.campaign_id)
    assert sorted(after) == list(range(2, 102))          # every row exactly once
    assert {k: v for k, v in after.items() if k < 42} == before
    dups = {line for line, (_, reason) in after.items() if reason == "duplicate of line 2"}
    assert dups == {2 + i for i in range(100) if i % 7 == 0} - {2}   # named by the first line, also after the resume
    row = store.campaign(r.campaign_id)
    assert row.state == "paused" and row.load_complete
    assert row.batch_count == len({m["batch_id"] for m in store.messages(r.campaign_id)})
    assert calls == [21, 41, 61]


def test_a_load_interrupted_while_reading_resumes_too(tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from dispatcher import loader

    c = campaign_for(tmp_path, contacts_with_repeats(30))
    original = loader.RowPlanner.row

    def row(self: Any, line: int, *args: Any, **kw: Any) -> Any:
        if line == 25:          # Ctrl-C while the third chunk is being read
            raise KeyboardInterrupt
        return original(self, line, *args, **kw)

    monkeypatch.setattr(loader.RowPlanner, "row", row)
    with pytest.raises(KeyboardInterrupt):
        load(c, store, None, chunk_rows=10)
    stopped = store.campaign(c.name)
    assert stopped.state == "stopped" and stopped.state_reason is not None
    assert stopped.state_reason.startswith("loading stopped after line 21: reading the rows after line 21 failed "
                                           "(KeyboardInterrupt)")
    monkeypatch.undo()
    r = load(c, store, None, chunk_rows=10)
    assert sorted(outcome(store, r.campaign_id)) == list(range(2, 32))


def test_a_million_rows_of_one_number_load_as_one_message_and_999999_duplicates(tmp_path: Path, store: Store) -> None:
    n = 1_000_000
    csv_path = tmp_path / "big.csv"
    with open(csv_path, "w") as fh:
        fh.write("phone,opt_in,first_name\n")
        fh.writelines(["+12025550101,yes,Ada\n"] * n)
    c = campaign_for(tmp_path, "phone,opt_in,first_name\n")
    c.contacts_path.unlink()
    csv_path.rename(c.contacts_path)
    started = time.monotonic()
    r = load(c, store, None)
    elapsed = time.monotonic() - started
    assert (r.rows, r.messages, r.rejected) == (n, 1, n - 1)
    counts = store.counts(r.campaign_id)
    assert counts["queued"] == 1 and counts["rejected"] == n - 1
    with store.engine.connect() as conn:   # the reasons, counted in SQL rather than a million Python dicts
        from sqlalchemy import func, select

        from dispatcher.store import R
        reasons = dict(conn.execute(select(R.c.reason, func.count()).where(R.c.campaign_id == r.campaign_id)
                                    .group_by(R.c.reason)).all())
    assert reasons == {"duplicate of line 2": n - 1}
    assert elapsed < 60, f"loading took {elapsed:.1f} s"
