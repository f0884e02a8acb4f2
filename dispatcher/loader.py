"""The loader: stream a contact file into per-recipient messages, batches and queued work.

The file is read row by row (never whole). Each data row becomes a message or a rejected row with a
reason; nothing is dropped silently (rows whose every value is blank are not data). Chunks are
written in one transaction each and their batches enqueued at once, so the first message goes out
while the rest still loads. A load that stops midway (a crash, a full disk) leaves the campaign
``stopped`` with a reason naming the last stored line, and resumes after that line when run again.
Large files are planned by forked processes too (``_plan_in_processes``), with the same outcome row for row.
"""

from __future__ import annotations

import csv
import gc
import multiprocessing
import os
import pickle
import signal
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from queue import Empty
from typing import Any, Callable, Iterator

from . import encoding, phones, policy
from .campaign import Campaign, check_header, contact_lines, required_columns
from .errors import InputError, StateError
from .models import CampaignState, Status, utcnow
from .queue import TaskQueue, batch_label
from .store import Store
from .template import TemplateError

MAX_FIELD = 1_000_000
# Numbers whose first line is remembered across chunks (about 130 bytes each: under 3 MB), so that a duplicate is
# rejected before it is rendered. Past this many, the database's unique constraint catches duplicates of
# earlier chunks (insert_chunk names the message's line), which keeps the loader's memory flat at any size.
MAX_REMEMBERED = 20_000
# A planning process remembers fewer: its memory only spares it rendering a repeat, which the loading process
# rejects in any case.
MAX_SKIPPED_REPEATS = 4096
# Below this many rows one process plans the file: forking, and shipping rows between processes, cost more than
# they save.
PARALLEL_MIN_ROWS = 20_000
MAX_PLANNING_PROCESSES = 3   # past this the loading process, which reads and stores every row, is the limit
_LOADING_GC_THRESHOLDS = (20_000, 20, 100)   # while planning processes run (see _plan_in_processes)
CONSENT_COLUMNS = ("opt_in_at", "opt_in_source", "opt_in_method", "consent_at", "consent_source")
csv.field_size_limit(MAX_FIELD)


@dataclass
class LoadResult:
    campaign_id: int
    rows: int = 0
    messages: int = 0
    rejected: int = 0
    batches: int = 0
    enqueued: int = 0
    resumed: bool = False
    decisions: dict[str, int] = field(default_factory=dict)


def count_rows(path: Path) -> int:
    """A fast estimate of data rows (newlines minus the header), for progress and batch labels."""
    n = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            n += chunk.count(b"\n")
    return max(n - 1, 0)


_NO_TEXT_RULES = encoding.TextInfo("GSM-7", 0, 1, 0)   # rvm and email: no segment rule applies


@dataclass(frozen=True, slots=True)
class _Address:
    """An email recipient, shaped like phones.PhoneNumber where the loader needs it."""
    e164: str       # the normalised address (the column is shared with phone numbers)
    region: str = ""


def _email_address(raw: str) -> _Address:
    """A syntactically valid address, normalised (domain lower-cased); ValueError with a short reason."""
    from email_validator import EmailNotValidError, validate_email

    try:
        info = validate_email(raw, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(str(exc).rstrip(".")) from None
    return _Address(info.normalized.lower())   # one mailbox however its letters were cased


@dataclass(slots=True)
class PlannedRow:
    """One recipient as the plan sees it (used by the loader and by `dispatcher plan`)."""
    line: int
    phone: str | None
    values: dict[str, Any] | None       # message row, None when rejected
    reason: str | None                  # rejection reason
    decision: policy.Decision | None = None
    number: str | None = None           # the normalised number whenever it is valid, also in a rejected row
    info: encoding.TextInfo | None = None   # a message row's size, and the zones its quiet hours are read in
    zones: tuple[str, ...] = ()


class RowPlanner:
    """Turns CSV rows into message rows with a plan-time decision. Pure but for the suppression lookup.

    ``first_lines`` maps each number that became a message to its line: a later row with the same number
    is rejected at once as its duplicate (without rendering it), however far apart the two rows are.
    With ``dedupe=False`` (a planning process, which sees only some of the chunks) that check is left to
    ``settle``: rows come back with ``phone`` as written and ``number`` normalised, and a row whose number this
    planner has planned before comes back unplanned (``values`` and ``reason`` None).
    """

    def __init__(self, campaign: Campaign, *, now: datetime, first_lines: dict[str, int] | None = None,
                 dedupe: bool = True) -> None:
        self.c = campaign
        spec = campaign.spec
        self.region = spec.contacts.default_region
        self.qh = spec.quiet_hours.to_policy() if spec.quiet_hours else None
        self.default_tz = spec.quiet_hours.default_timezone if spec.quiet_hours else None
        self.channel = spec.channel
        self.text_rules = spec.channel == "sms"          # one segment, GSM-7/UCS-2: SMS only
        self.max_segments = spec.max_segments if self.text_rules else 1_000_000
        if spec.channel == "email":
            self.qh = None                                # quiet hours are calling/texting hours
        self.start_at = max(now, campaign.hold_until or now)
        self.first_lines: dict[str, int] = {} if first_lines is None else first_lines
        self.dedupe = dedupe
        self.remember = MAX_REMEMBERED if dedupe else MAX_SKIPPED_REPEATS
        self._header: list[str] | None = None   # the header the columns below were read from

    def _read_header(self, header: list[str]) -> None:
        """What every row of a file with this header needs: where its address is, its fields and consent columns."""
        self._header = header
        self._at = header.index("email" if self.channel == "email" else "phone")
        self._fields = list(dict.fromkeys(h for h in header if h not in ("phone", "email", "opt_in")))
        self._consent = [k for k in CONSENT_COLUMNS if k in header]

    def row(self, line: int, header: list[str], values: list[str], *, end: int | None = None) -> PlannedRow:
        """Plan one data row that starts on ``line`` (and ends on ``end``, for rows with quoted line breaks)."""
        if header is not self._header:
            self._read_header(header)
        at = self._at
        raw_phone = values[at].strip() if len(values) > at else None
        if len(values) > len(header) and not any(v.strip() for v in values[len(header):]):
            values = values[:len(header)]   # trailing separators (a common export artefact) hold nothing
        if len(values) != len(header):
            reason = f"has {len(values)} values but the header names {len(header)} columns"
            if end is not None and end > line:
                reason += f" (the row runs on to line {end}: is a quote (\") left open?)"
            return PlannedRow(line, raw_phone, None, reason)
        assert raw_phone is not None
        if self.channel == "email":
            try:
                number = _email_address(raw_phone)
            except ValueError as exc:
                return PlannedRow(line, raw_phone, None, f"invalid email address: {exc}")
        else:
            try:
                number = phones.normalise(raw_phone, self.region)
            except phones.InvalidNumber as exc:
                return PlannedRow(line, raw_phone, None, f"invalid number: {self._number_problem(exc, raw_phone)}")
        e164 = number.e164
        first = self.first_lines.get(e164)
        if first is not None:
            return PlannedRow(line, raw_phone, None, f"duplicate of line {first}" if self.dedupe else None, number=e164)
        rec = dict(zip(header, map(str.strip, values)))
        try:
            opt_in = policy.parse_opt_in(rec.get("opt_in"))
        except ValueError as exc:
            return PlannedRow(line, raw_phone, None, str(exc), number=e164)
        try:
            zones = (policy.resolve_zones(rec.get("timezone") or None, e164, self.default_tz)
                     if self.channel != "email" else ())
        except ValueError as exc:
            return PlannedRow(line, raw_phone, None, f"timezone: {exc}", number=e164)
        try:
            body = self.c.template.render(rec)
        except TemplateError as exc:
            return PlannedRow(line, raw_phone, None, f"message: {exc}", number=e164)
        if not body and self.c.spec.message is not None:
            return PlannedRow(line, raw_phone, None, "message: the rendered text is empty", number=e164)
        info = encoding.analyse(body) if self.text_rules else _NO_TEXT_RULES
        if len(self.first_lines) < self.remember:
            self.first_lines[e164] = line
        return PlannedRow(line, e164 if self.dedupe else raw_phone, {
            "line": line, "phone": number.e164, "region": number.region, "timezones": " ".join(zones) or None,
            "fields": {k: rec[k] for k in self._fields}, "consent": {k: rec[k] for k in self._consent if rec[k]},
            "opt_in": opt_in, "body": body, "encoding": info.encoding, "segments": info.segments,
        }, None, number=e164, info=info, zones=zones)

    def settle(self, row: _Stored) -> _Stored | None:
        """Apply to a row planned with ``dedupe=False`` (and stored, ``_stored``) the duplicate check ``row`` makes;
        rows in file order.

        None for an unplanned row that is no duplicate here (its number's earlier row was planned when
        ``first_lines`` was full): the caller must plan it with ``row``.
        """
        line, phone, number, reason, action, message = row
        if number is None:
            return row
        first = self.first_lines.get(number)
        if first is not None:
            return line, phone, number, f"duplicate of line {first}", None, None
        if message is not None:
            if len(self.first_lines) < self.remember:
                self.first_lines[number] = line
            return line, number, number, None, action, message
        return row if reason is not None else None

    def _number_problem(self, exc: phones.InvalidNumber, raw: str) -> str:
        reason = str(exc)
        # A national number of another country, read in the default region, is "too long" or "not valid for US".
        if self.region and raw[:1] not in ("+", "\uff0b") and (reason == "too long" or reason.startswith("not a valid number")):
            reason += f" (read as a {self.region} number: write numbers of other countries with + and their country code)"
        return reason

    def decide(self, p: PlannedRow, suppressed_reason: str | None) -> policy.Decision:
        v = p.values
        assert v is not None
        assert p.info is not None
        return policy.decide(opt_in=v["opt_in"], suppressed_reason=suppressed_reason, info=p.info,
                             max_segments=self.max_segments, zones=p.zones, quiet_hours=self.qh, now=self.start_at)


def iter_rows(path: Path, *, required: tuple[str, ...] = ("phone", "opt_in")
              ) -> Iterator[tuple[int, int, list[str], list[str] | None, str | None]]:
    """(first line, last line, header, values, error) for every data row; rows with nothing but blanks are passed over.

    A row that cannot be parsed comes with ``values`` None and the reason in ``error``.
    Raises ``ContactsError`` when the header is unusable (see ``campaign.check_header``).
    """
    header = check_header(path, required=required)
    # strict: a stray quote makes a rejected row instead of silently swallowing the lines after it
    reader = csv.reader(contact_lines(path), strict=True)
    next(reader)   # the header: read and checked above
    while True:
        start = reader.line_num + 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield start, reader.line_num, header, None, _unreadable(exc, start, reader.line_num)
            continue
        if not any(map(str.strip, values)):
            continue
        yield start, reader.line_num, header, values, None


def _unreadable(exc: csv.Error, start: int, end: int) -> str:
    why = str(exc)
    if "field limit" in why:
        why = f"a value is longer than {MAX_FIELD:,} characters"
    elif "unexpected end of data" in why:
        why = "a quoted value is still open at the end of the file"
    elif "expected after" in why:
        why = "text follows the closing quote of a value (write \"\" for a quote inside a quoted value)"
    if end > start:
        why += f" (the row runs from line {start} to line {end}: is a quote (\") left open?)"
    return f"row cannot be read: {why}"


def plan_rows(campaign: Campaign, store: Store, *, now: datetime, chunk: int = 5000, skip_through: int = 0,
              first_lines: dict[str, int] | None = None) -> Iterator[list[PlannedRow]]:
    """Chunks of planned rows, each with its decision (suppression checked per chunk, one query).

    Rows starting on or before ``skip_through`` are read but not planned. ``first_lines`` (number → line of its
    message) lets a resumed load name the original line of a duplicate; it is updated as messages are planned.
    """
    planner = RowPlanner(campaign, now=now, first_lines=first_lines)
    for header, rows in _raw_chunks(campaign, chunk=chunk, skip_through=skip_through):
        planned = _plan_chunk(planner, header, rows)
        _drop_repeats(planned)
        _decide(planner, store, planned)
        yield planned


# A row as the loading process stores it, planned and decided: (line, phone, number, reason, action, message).
# A message row has its decision's action and the message encoded for the store (Store.encode_message), a rejected
# row its reason, a row a planning process passed over (a repeat, see RowPlanner) neither. ``phone`` is what a
# rejected row records (as written; the number for a message row), ``number`` the normalised number whenever it is
# valid. Plain tuples: they cross between processes by the thousand, and pickle many times faster than objects.
_Stored = tuple[int, "str | None", "str | None", "str | None", "str | None", Any]


def _stored_chunks(campaign: Campaign, store: Store, *, now: datetime, chunk: int, skip_through: int,
                   first_lines: dict[str, int], processes: int) -> Iterator[list[_Stored]]:
    """The chunks of ``plan_rows``, as the loading process stores them. With ``processes`` > 0 that many forked
    processes plan them (see ``_plan_in_processes``); the chunks, their rows and their outcomes are the same."""
    if processes == 0:
        for planned in plan_rows(campaign, store, now=now, chunk=chunk, skip_through=skip_through,
                                 first_lines=first_lines):
            yield _stored(store, planned)
        return
    planner = RowPlanner(campaign, now=now, first_lines=first_lines)
    yield from _plan_in_processes(planner, store, _raw_chunks(campaign, chunk=chunk, skip_through=skip_through),
                                  processes, now=now)


def _stored(store: Store, chunk: list[PlannedRow]) -> list[_Stored]:
    """A planned and decided chunk as the loading process stores it."""
    out: list[_Stored] = []
    for p in chunk:
        if p.values is None:
            out.append((p.line, p.phone, p.number, p.reason, None, None))
        else:
            assert p.decision is not None
            out.append((p.line, p.phone, p.number, None, p.decision.action, store.encode_message(_message_row(p))))
    return out


_RawRow = tuple[int, int, "list[str] | None", "str | None"]   # first line, last line, values, error


def _raw_chunks(campaign: Campaign, *, chunk: int, skip_through: int) -> Iterator[tuple[list[str], list[_RawRow]]]:
    """(header, rows) for every ``chunk`` data rows that start after line ``skip_through``."""
    buf: list[_RawRow] = []
    header: list[str] = []
    for line, end, header, values, error in iter_rows(campaign.contacts_path,
                                                      required=required_columns(campaign.spec.channel)):
        if line <= skip_through:
            continue
        buf.append((line, end, values, error))
        if len(buf) >= chunk:
            yield header, buf
            buf = []
    if buf:
        yield header, buf


def _plan_chunk(planner: RowPlanner, header: list[str], rows: list[_RawRow]) -> list[PlannedRow]:
    return [planner.row(line, header, values, end=end) if values is not None else PlannedRow(line, None, None, error)
            for line, end, values, error in rows]


def _drop_repeats(chunk: list[PlannedRow]) -> None:
    for i, first in _repeats([(p.line, p.number if p.values is not None else None) for p in chunk]):
        p = chunk[i]
        p.values, p.reason, p.decision = None, f"duplicate of line {first}", None


def _drop_stored_repeats(chunk: list[_Stored]) -> None:
    for i, first in _repeats([(line, number if message is not None else None)
                              for line, _, number, _, _, message in chunk]):
        line, phone, number, _, _, _ = chunk[i]
        chunk[i] = line, phone, number, f"duplicate of line {first}", None, None


def _repeats(rows: list[tuple[int, str | None]]) -> Iterator[tuple[int, int]]:
    """(index, first line) of each message whose number an earlier message of the chunk has, from the (line, number
    of its message or None) of every row. Duplicates are normally caught by the planner; these are the ones past
    MAX_REMEMBERED numbers."""
    seen: dict[str, int] = {}
    for i, (line, number) in enumerate(rows):
        if number is not None and seen.setdefault(number, line) != line:
            yield i, seen[number]


def _decide(planner: RowPlanner, store: Store, chunk: list[PlannedRow]) -> None:
    sup = store.suppressed({p.values["phone"] for p in chunk if p.values})
    for p in chunk:
        if p.values is not None:
            p.decision = planner.decide(p, sup.get(p.values["phone"]))


def planning_processes(rows: int) -> int:
    """How many forked processes should plan a file of ``rows`` data rows: one per core beside the loading
    process's own (which plans too whenever it would wait) for large files; none below ``PARALLEL_MIN_ROWS``."""
    if rows < PARALLEL_MIN_ROWS or "fork" not in multiprocessing.get_all_start_methods():
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(cores - 1, MAX_PLANNING_PROCESSES)


class _Failed:
    """In place of a chunk whose reading or planning raised: the exception, to raise in that chunk's turn."""

    def __init__(self, exc: BaseException) -> None:
        try:
            pickle.loads(pickle.dumps(exc))
        except Exception:  # noqa: BLE001 - any exception must reach the parent, if not as itself then by name
            exc = RuntimeError(f"{type(exc).__name__}: {exc}")
        self.exc = exc


def _plan_in_processes(planner: RowPlanner, store: Store, raw: Iterator[tuple[list[str], list[_RawRow]]],
                       processes: int, *, now: datetime) -> Iterator[list[_Stored]]:
    """Chunks planned by forked processes while the caller stores the ones before them.

    This process reads the file and hands out raw chunks, and plans the next one itself when it would otherwise
    wait; at most ``processes + 4`` chunks are out at a time, so memory stays flat at any file size. Each chunk
    comes back planned, decided (suppression checked when it is planned) and encoded for the store (``_stored``),
    but not yet checked for duplicates: that needs every earlier chunk, so it is done here, in file order, with
    ``planner.settle`` (a process does not render a number twice, so a file of repeats costs little). An exception
    while planning a chunk, or while reading the file, is raised when that chunk's turn comes, after every chunk
    before it has been yielded.
    """
    ctx = multiprocessing.get_context("fork")
    tasks: Any = ctx.Queue()
    results: Any = ctx.Queue()
    # Frozen objects are never touched by the collector, so the pages the children share with this process
    # stay shared instead of being copied by a collection in either.
    gc.freeze()
    # Rows are made and dropped by the thousand, cycles hardly ever: collecting less often, the collector stops
    # walking each chunk's objects again and again while they are alive (about 1.5 CPU s a million rows each).
    thresholds = gc.get_threshold()
    gc.set_threshold(*_LOADING_GC_THRESHOLDS)
    procs = [ctx.Process(target=_planning_process, args=(planner.c, store, now, tasks, results),
                         name=f"dispatcher-planner-{i + 1}", daemon=True) for i in range(processes)]
    finished = False
    try:
        for proc in procs:
            proc.start()
        done: dict[int, list[_Stored] | _Failed] = {}
        out: dict[int, tuple[list[str], list[_RawRow]]] = {}   # chunks read, kept for rows planned here
        sent = taken = queued = 0     # queued: handed to the planning processes and not back yet
        exhausted = False
        helper = RowPlanner(planner.c, now=now, dedupe=False)

        def read() -> tuple[list[str], list[_RawRow]] | None:
            nonlocal sent, exhausted
            if exhausted:
                return None
            try:
                item = next(raw)
            except StopIteration:
                exhausted = True
                return None
            except Exception as exc:  # noqa: BLE001 - raised in its turn, like a planning error
                exhausted = True
                done[sent] = _Failed(exc)
                sent += 1
                return None
            out[sent] = item
            sent += 1
            return item

        def top_up() -> None:
            # Two chunks more than there are planners: a planner that has handed back its answer has the next one
            # waiting, while this process is still storing (with one, planners waited about a fifth of the time).
            nonlocal queued
            while queued < processes + 2 and (item := read()) is not None:
                tasks.put((sent - 1, item))
                queued += 1

        top_up()
        while taken < sent:
            while taken not in done:
                can_help = not exhausted and sent - taken < processes + 4
                try:
                    seq, answer = results.get(timeout=0 if can_help else 1.0)
                except Empty:
                    if can_help and (item := read()) is not None:
                        done[sent - 1] = _plan_decided(helper, store, item)
                        continue
                    dead = [p for p in procs if p.exitcode is not None]
                    if dead:
                        raise RuntimeError("a planning process exited unexpectedly "
                                           f"(exit code {dead[0].exitcode})") from None
                    continue
                done[seq] = answer
                queued -= 1
            answer = done.pop(taken)
            sent_chunk = out.pop(taken, None)   # None for a chunk that could not be read
            taken += 1
            top_up()
            if isinstance(answer, _Failed):
                raise answer.exc
            assert sent_chunk is not None
            header, rows = sent_chunk
            planned_here: dict[int, PlannedRow] = {}
            for i, row in enumerate(answer):
                settled = planner.settle(row)
                if settled is None:
                    line, end, values, _ = rows[i]
                    planned_here[i] = planner.row(line, header, values, end=end)  # type: ignore[arg-type]
                else:
                    answer[i] = settled
            if planned_here:
                replanned = list(planned_here.values())
                _decide(planner, store, replanned)
                for i, row in zip(planned_here, _stored(store, replanned)):
                    answer[i] = row
            _drop_stored_repeats(answer)
            yield answer
        finished = True
    finally:
        for _ in procs:
            tasks.put(None)
        tasks.cancel_join_thread()    # chunks nobody will take must not hold up this process's exit
        for proc in procs:
            if not finished and proc.is_alive():
                proc.terminate()      # it may be halfway through a chunk nobody will read
            proc.join()
        tasks.close()
        results.close()
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def _plan_decided(planner: RowPlanner, store: Store,
                  item: tuple[list[str], list[_RawRow]]) -> list[_Stored] | _Failed:
    """A raw chunk planned, decided and stored (``_stored``) by a ``dedupe=False`` planner, or what planning it
    raised."""
    header, rows = item
    try:
        planned = _plan_chunk(planner, header, rows)
        _decide(planner, store, planned)
        return _stored(store, planned)
    except BaseException as exc:  # noqa: BLE001 - raised in this chunk's turn, after the chunks before it
        return _Failed(exc)


def _planning_process(campaign: Campaign, store: Store, now: datetime, tasks: Any, results: Any) -> None:
    """A forked planning process: plans and decides the chunks it is given until it is given None."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C is for the loading process, which stops this one
    # The parent's pooled connections stay referenced until this process ends without clean-up (below), so they
    # are never closed from here (an SQLite connection must not be used across a fork); it opens its own.
    parents_pool = store.engine.pool  # noqa: F841
    store.engine.dispose(close=False)
    planner = RowPlanner(campaign, now=now, dedupe=False)
    for seq, item in iter(tasks.get, None):
        results.put((seq, _plan_decided(planner, store, item)))
    results.close()
    results.join_thread()
    # No interpreter clean-up: it would close those connections, and flush streams whose locks another thread of
    # the parent (a progress bar) may have held at the fork.
    os._exit(0)


def _message_row(p: PlannedRow) -> dict[str, Any]:
    d = p.decision
    assert d is not None and p.values is not None
    # every row of one INSERT names the same columns
    if d.action == "send":
        return {**p.values, "not_before": None, "status": _QUEUED, "reason": None}
    if d.action == "defer":
        return {**p.values, "not_before": d.not_before, "status": Status.DEFERRED.value, "reason": d.reason}
    reason = f"held: {d.reason}" if d.action == "hold" else d.reason
    return {**p.values, "not_before": None, "status": Status.SKIPPED.value, "reason": reason}


_QUEUED = Status.QUEUED.value


def load(campaign: Campaign, store: Store, queue: TaskQueue | None, *, batch_size: int = 200,
         chunk_rows: int = 1000, now: datetime | None = None, processes: int | None = None,
         progress: Callable[[int, int], None] | None = None) -> LoadResult:
    """Create (or resume) the campaign in the database and enqueue its work. Idempotent by campaign name.

    Every data row ends up exactly once, as a message or a rejected row. Each chunk of rows is stored in one
    transaction; when anything fails midway the campaign is left ``stopped`` with a reason naming the last
    stored line, the exception propagates, and calling ``load`` again resumes after that line.
    Without a queue nothing is enqueued: the campaign ends ``paused`` (``dispatcher resume`` sends it) or
    ``scheduled``. Raises ``ContactsError`` before anything is stored when the contact file is unusable,
    ``InputError`` when a campaign of that name exists with other settings, ``StateError`` when it was cancelled
    before it finished loading. ``processes`` is how many forked processes plan the rows (0: this one; default:
    ``planning_processes`` of the file's size); ``progress`` is called after each chunk with the rows done and the file's estimated total.
    """
    now = now or utcnow()
    check_header(campaign.contacts_path, required=required_columns(campaign.spec.channel))
    existing = store.find_campaign(campaign.name)
    first_lines: dict[str, int] = {}
    if existing is not None:
        if existing.spec != campaign.raw:
            raise InputError(f"{campaign.source}: a campaign named {campaign.name!r} already exists with different "
                             "settings; give this one a new name (or remove the old one)")
        cid = int(existing.id)  # type: ignore[arg-type]
        result = LoadResult(cid, resumed=True)
        if existing.load_complete:
            result.batches = existing.batch_count
            if existing.state == CampaignState.LOADING.value:   # stopped between the last chunk and the state change
                _finish(campaign, store, queue, cid, now)
            return result
        if existing.state == CampaignState.CANCELLED.value:
            raise StateError(f"campaign {campaign.name!r} was cancelled before it finished loading; "
                             "give the campaign a new name to send this list")
        if existing.state == CampaignState.STOPPED.value and (existing.state_reason or "").startswith(_STOPPED_LOADING):
            store.set_state(cid, CampaignState.LOADING, only_from=[CampaignState.STOPPED])
        skip = existing.loaded_lines
        next_seq = existing.batch_count + 1
        if skip:
            for m in store.messages(cid):
                if len(first_lines) >= MAX_REMEMBERED:
                    break
                first_lines[m["phone"]] = m["line"]
    else:
        scheduled = campaign.hold_until is not None and campaign.hold_until > now
        cid = int(store.create_campaign(
            name=campaign.name, provider=campaign.spec.provider.name, channel=campaign.spec.channel,
            state=CampaignState.LOADING.value, source_path=str(campaign.source.resolve()), spec=campaign.raw,
            schedule_at=campaign.hold_until, created_at=now,
            state_reason="scheduled" if scheduled else None).id)  # type: ignore[arg-type]
        result = LoadResult(cid)
        skip, next_seq = 0, 1
    scheduled = campaign.hold_until is not None and campaign.hold_until > now
    sendable = not scheduled and queue is not None
    total_rows = count_rows(campaign.contacts_path)
    total_batches = max(1, -(-total_rows // batch_size))
    if processes is None:
        processes = planning_processes(total_rows - skip)

    committed = skip
    doing = "starting"
    try:
        if sendable:
            assert queue is not None
            store.set_state(cid, CampaignState.RUNNING, only_from=[CampaignState.LOADING])
            if next_seq > 1 and store.campaign_state(cid) == CampaignState.RUNNING.value:
                # Batches stored before the interruption may never have reached the queue: claims make this safe.
                doing = "enqueueing the batches stored before the interruption"
                result.enqueued += _enqueue_open(store, queue, cid, now)
        doing = f"reading the rows after line {committed}"
        # Closed on the way out, so that when storing fails the planning processes stop at once rather than
        # when the traceback is freed.
        with closing(_stored_chunks(campaign, store, now=now, chunk=chunk_rows, skip_through=skip,
                                    first_lines=first_lines, processes=processes)) as chunks:
            for chunk in chunks:
                rejected = [{"line": line, "phone": (phone or "")[:64] or None, "reason": reason}
                            for line, phone, _, reason, _, message in chunk if message is None]
                rows = [(action, message) for _, _, _, _, action, message in chunk if message is not None]
                batches = [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
                queued_in = [any(action == "send" for action, _ in b) for b in batches]   # queued now (_message_row)
                first_line, last_line = chunk[0][0], chunk[-1][0]
                doing = f"storing lines {first_line}-{last_line}"
                ids, dups = store.insert_chunk(cid, next_seq, [[m for _, m in b] for b in batches], rejected, last_line)
                committed = last_line
                for action, _ in rows:
                    result.decisions[action] = result.decisions.get(action, 0) + 1
                result.rows += len(chunk)
                result.messages += len(rows) - len(dups)
                result.rejected += len(rejected) + len(dups)
                if sendable:
                    doing = f"enqueueing the batches of lines {first_line}-{last_line}"
                    labels = [(bid, batch_label(campaign.name, next_seq + i, max(total_batches, next_seq + i)))
                              for i, bid in enumerate(ids) if queued_in[i]]
                    result.enqueued += queue.send_batches(labels)  # type: ignore[union-attr]
                next_seq += len(batches)
                result.batches = next_seq - 1
                if progress:
                    progress(result.rows, total_rows)
                doing = f"reading the rows after line {committed}"
        store.update_campaign(cid, load_complete=True, batch_count=next_seq - 1)
    except BaseException as exc:
        detail = (str(exc).strip().splitlines() or [""])[0][:200]   # never SQL parameters: they hold numbers
        reason = (f"{_STOPPED_LOADING} {committed}: {doing} failed ({type(exc).__name__}{': ' + detail if detail else ''}); "
                  "run the same command again to resume")
        try:
            store.set_state(cid, CampaignState.STOPPED, reason, only_from=[CampaignState.LOADING, CampaignState.RUNNING])
        except Exception:  # noqa: BLE001 - the database may be what failed; the original error says more
            pass
        raise
    _finish(campaign, store, queue, cid, now)
    return result


_STOPPED_LOADING = "loading stopped after line"


def _enqueue_open(store: Store, queue: TaskQueue, campaign_id: int, now: datetime) -> int:
    ids = store.open_batches(campaign_id)
    if not ids:
        return 0
    store.touch_batches(ids, now)
    return queue.send_batches(store.batch_labels(ids))


def _finish(campaign: Campaign, store: Store, queue: TaskQueue | None, campaign_id: int, now: datetime) -> None:
    """The state of a fully loaded campaign: scheduled, running (perhaps already completed), or paused without a queue."""
    if campaign.hold_until is not None and campaign.hold_until > now:
        store.set_state(campaign_id, CampaignState.SCHEDULED, f"scheduled for {campaign.hold_until:%Y-%m-%d %H:%M} UTC",
                        only_from=[CampaignState.LOADING])
    elif queue is not None:
        store.set_state(campaign_id, CampaignState.RUNNING, only_from=[CampaignState.LOADING])
        store.complete_if_done(campaign_id)
    else:
        store.set_state(campaign_id, CampaignState.PAUSED, "loaded without a task queue, so nothing is enqueued: "
                        f"`dispatcher resume {campaign.name}` starts sending", only_from=[CampaignState.LOADING])
