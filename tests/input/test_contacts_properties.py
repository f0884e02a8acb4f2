"""Property tests of the loader: for any contact file, load() completes and every data row is stored exactly once,
as a message or as a rejected row with a reason, at the line where it starts. Nothing is silently dropped.

A data row is a row with at least one non-blank value; blank lines and rows of empty values are not rows."""

from __future__ import annotations

import itertools
import os
import re
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dispatcher.campaign import load_campaign
from dispatcher.errors import ContactsError
from dispatcher.loader import load
from dispatcher.store import Store

from .conftest import ENV, VALID, write_campaign

PROPERTY = settings(max_examples=int(os.environ.get("INPUT_EXAMPLES", "150")), deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])
PHONES = ["+12025550101", "(202) 555-0102", "2025550101", "+442071838750", "+19005550123", "12", "", "abc", "+1 202 555 0103"]
OPT_IN = ["yes", "no", "1", "0", "true", "", "maybe", " YES "]
EXTRA_COLUMNS = ["first_name", "city", "note", "timezone", "opt_in_at"]
# cp1252 text: ASCII and letters whose bytes can never pass for UTF-8, so each line decodes one way only.
LATIN = "abcXYZ019 ,;\"'\r\n\téèàüöñçÉÀ"
_BREAK = re.compile(r"\r\n|\r|\n")
_examples = itertools.count()


def quoted(value: str, force: bool) -> str:
    if force or any(c in value for c in ',"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


@st.composite
def contact_files(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    """(file bytes, the start line of every data row) for a CSV written the way real exports are."""
    extras = draw(st.lists(st.sampled_from(EXTRA_COLUMNS), unique=True, max_size=3))
    header = draw(st.permutations(["phone", "opt_in", *extras]))
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "cp1252"]))
    newline = draw(st.sampled_from(["\r\n", "\n", "\r"]))
    text = st.text(LATIN, max_size=10) if encoding == "cp1252" else st.text(max_size=10)
    columns = {"phone": st.one_of(st.sampled_from(PHONES), text), "opt_in": st.one_of(st.sampled_from(OPT_IN), text)}
    out = ",".join(header) + newline
    starts: list[int] = []
    for _ in range(draw(st.integers(0, 30))):
        kind = draw(st.sampled_from(["row", "row", "row", "blank", "extra", "missing"]))
        if kind == "blank":
            out += newline
            continue
        values = [draw(columns.get(h, text)) for h in header]
        if kind == "extra":
            values += draw(st.lists(text, min_size=1, max_size=2))
        elif kind == "missing":
            values = values[:draw(st.integers(0, len(values) - 1))]
        force = draw(st.booleans())
        row = ",".join(quoted(v, force) for v in values)
        if any(v.strip() for v in values):
            starts.append(len(_BREAK.findall(out)) + 1)
        out += row + newline
    if draw(st.booleans()):
        out = out[: -len(newline)]      # no line break at the end
    return out.encode(encoding), starts


def load_file(tmp_path: Path, store: Store, data: bytes, **kw: object):  # type: ignore[no-untyped-def]
    folder = tmp_path / f"example-{next(_examples)}"
    folder.mkdir()
    path = write_campaign(folder, VALID.replace("name: spring-sale", f"name: {folder.name}")
                          .replace("{{ first_name }}", "there"), b"phone,opt_in\n+12025550101,yes\n")
    campaign = load_campaign(path, environ=ENV)
    campaign.contacts_path.write_bytes(data)
    return campaign, load(campaign, store, None, **kw)  # type: ignore[arg-type]


def stored_lines(store: Store, campaign_id: int) -> tuple[list[int], list[int], list[dict[str, object]]]:
    messages = list(store.messages(campaign_id))
    rejected = store.rejected(campaign_id)
    return [m["line"] for m in messages], [r["line"] for r in rejected], rejected  # type: ignore[misc]


@PROPERTY
@given(contact_files(), st.sampled_from([1, 3, 5000]), st.sampled_from([1, 2, 200]))
def test_every_data_row_is_stored_once_as_a_message_or_a_rejected_row(tmp_path: Path, store: Store, file, chunk_rows: int,
                                                                      batch_size: int) -> None:  # type: ignore[no-untyped-def]
    data, starts = file
    campaign, result = load_file(tmp_path, store, data, chunk_rows=chunk_rows, batch_size=batch_size)
    messages, rejected, rows = stored_lines(store, result.campaign_id)
    assert sorted(messages + rejected) == starts                  # each data row once, at its first line
    assert (result.rows, result.messages, result.rejected) == (len(starts), len(messages), len(rejected))
    assert all(r["reason"] for r in rows)
    by_line = {m["line"]: m["phone"] for m in store.messages(result.campaign_id)}
    for r in rows:                                                # a duplicate names the line of its message
        m = re.fullmatch(r"duplicate of line (\d+)", str(r["reason"]))
        if m:
            assert int(m.group(1)) in by_line and int(m.group(1)) < int(r["line"])  # type: ignore[call-overload]
    row = store.campaign(result.campaign_id)
    assert row.load_complete and row.state == "paused"


lines_of_bytes = st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"").replace(b'"', b"")),
                          max_size=25)


def _decoded(line: bytes) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return line.decode("cp1252", errors="replace")


@PROPERTY
@given(lines_of_bytes, st.sampled_from([b"\n", b"\r\n", b"\r"]), st.booleans())
def test_lines_of_random_bytes_each_become_one_stored_row(tmp_path: Path, store: Store, lines: list[bytes], newline: bytes,
                                                          bom: bool) -> None:
    # Without quotes or line breaks inside values, every line that holds a non-blank value is one data row.
    data = (b"\xef\xbb\xbf" if bom else b"") + b"phone,opt_in" + newline + newline.join(lines)
    expected = [i + 2 for i, line in enumerate(lines) if any(v.strip() for v in _decoded(line).split(","))]
    _, result = load_file(tmp_path, store, data, chunk_rows=4)
    messages, rejected, _ = stored_lines(store, result.campaign_id)
    assert sorted(messages + rejected) == expected


@PROPERTY
@given(st.binary(max_size=400), st.booleans())
def test_arbitrary_bytes_load_or_fail_before_storing_anything(tmp_path: Path, store: Store, body: bytes, header: bool) -> None:
    data = (b"phone,opt_in,first_name\n" if header else b"") + body
    try:
        campaign, result = load_file(tmp_path, store, data, chunk_rows=3)
    except ContactsError as exc:               # only a file without a usable header
        assert not header and "contacts.csv" in str(exc)
        return
    messages, rejected, _ = stored_lines(store, result.campaign_id)
    assert len(messages) == len(set(messages)) and len(rejected) == len(set(rejected))
    assert not set(messages) & set(rejected)
    assert result.rows == len(messages) + len(rejected)
    assert all(2 <= line <= len(_BREAK.findall(_decoded(data))) + 2 for line in messages + rejected)
    assert store.campaign(result.campaign_id).state == "paused"
