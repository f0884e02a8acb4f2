"""The loader: stream a contact file into per-recipient messages, batches and queued work.

The file is read row by row (never whole). Each row becomes a message or a rejected row with a
reason; nothing is dropped silently. Chunks are written in one transaction each and their
batches enqueued at once, so the first message goes out while the rest still loads. A load that
stops midway (a crash, a full disk) resumes after the last committed line when run again.
"""

from __future__ import annotations

import csv

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

from . import encoding, phones, policy
from .campaign import Campaign, read_header
from .errors import ContactsError, InputError
from .models import CampaignState, Status, utcnow
from .queue import TaskQueue, batch_label
from .store import Store
from .template import TemplateError

MAX_FIELD = 1_000_000
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


def _lines(path: Path) -> Iterator[str]:
    """Decoded lines: UTF-8 (BOM stripped), falling back to Windows-1252 per line for legacy exports."""
    with open(path, "rb") as fh:
        first = True
        for raw in fh:
            if first:
                raw = raw.removeprefix(b"\xef\xbb\xbf")
                first = False
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError:
                yield raw.decode("cp1252", errors="replace")


def count_rows(path: Path) -> int:
    """A fast estimate of data rows (newlines minus the header), for progress and batch labels."""
    n = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            n += chunk.count(b"\n")
    return max(n - 1, 0)


@dataclass
class PlannedRow:
    """One recipient as the plan sees it (used by the loader and by `dispatcher plan`)."""
    line: int
    phone: str | None
    values: dict[str, Any] | None       # message row, None when rejected
    reason: str | None                  # rejection reason
    decision: policy.Decision | None = None


class RowPlanner:
    """Turns CSV rows into message rows with a plan-time decision. Pure but for the suppression lookup."""

    def __init__(self, campaign: Campaign, *, now: datetime) -> None:
        self.c = campaign
        spec = campaign.spec
        self.region = spec.contacts.default_region
        self.qh = spec.quiet_hours.to_policy() if spec.quiet_hours else None
        self.default_tz = spec.quiet_hours.default_timezone if spec.quiet_hours else None
        self.max_segments = spec.max_segments
        self.start_at = max(now, campaign.schedule_utc or now)

    def row(self, line: int, header: list[str], values: list[str]) -> PlannedRow:
        raw_phone = values[header.index("phone")].strip() if len(values) > header.index("phone") else None
        if len(values) != len(header):
            return PlannedRow(line, raw_phone, None, f"has {len(values)} values but the header names {len(header)} columns")
        rec = {h: v.strip() for h, v in zip(header, values)}
        try:
            number = phones.normalise(rec["phone"], self.region)
        except phones.InvalidNumber as exc:
            return PlannedRow(line, raw_phone, None, f"invalid number: {exc}")
        try:
            opt_in = policy.parse_opt_in(rec.get("opt_in"))
        except ValueError as exc:
            return PlannedRow(line, raw_phone, None, str(exc))
        try:
            zones = policy.resolve_zones(rec.get("timezone") or None, number.e164, self.default_tz)
        except ValueError as exc:
            return PlannedRow(line, raw_phone, None, f"timezone: {exc}")
        try:
            body = self.c.template.render(rec)
        except TemplateError as exc:
            return PlannedRow(line, raw_phone, None, f"message: {exc}")
        if not body:
            return PlannedRow(line, raw_phone, None, "message: the rendered text is empty")
        info = encoding.analyse(body)
        consent = {k: rec[k] for k in CONSENT_COLUMNS if rec.get(k)}
        return PlannedRow(line, number.e164, {
            "line": line, "phone": number.e164, "region": number.region, "timezones": " ".join(zones) or None,
            "fields": {k: v for k, v in rec.items() if k not in ("phone", "opt_in")}, "consent": consent,
            "opt_in": opt_in, "body": body, "encoding": info.encoding, "segments": info.segments,
            "_info": info, "_zones": zones,
        }, None)

    def decide(self, p: PlannedRow, suppressed_reason: str | None) -> policy.Decision:
        v = p.values
        assert v is not None
        return policy.decide(opt_in=v["opt_in"], suppressed_reason=suppressed_reason, info=v["_info"],
                             max_segments=self.max_segments, zones=v["_zones"], quiet_hours=self.qh, now=self.start_at)


def iter_rows(path: Path) -> Iterator[tuple[int, list[str] | None, list[str] | None, str | None]]:
    """(line, header, values, error) for every data row; blank lines are passed over."""
    header = read_header(path)
    if header is None:
        raise ContactsError(f"{path}: the file is empty; the first line must name the columns")
    reader = csv.reader(_lines(path))
    try:
        next(reader)
    except csv.Error as exc:
        raise ContactsError(f"{path}:1: the header cannot be read: {exc}") from None
    while True:
        start = reader.line_num + 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield start, header, None, f"row cannot be read: {exc}"
            continue
        if not values or all(not v.strip() for v in values):
            continue
        yield start, header, values, None


def plan_rows(campaign: Campaign, store: Store, *, now: datetime, chunk: int = 5000,
              skip_through: int = 0) -> Iterator[list[PlannedRow]]:
    """Chunks of planned rows, each with its decision (suppression checked per chunk, one query)."""
    planner = RowPlanner(campaign, now=now)
    path = campaign.contacts_path
    buf: list[PlannedRow] = []

    def flush() -> list[PlannedRow]:
        seen: dict[str, int] = {}
        for p in buf:
            if p.values is None:
                continue
            first = seen.setdefault(p.values["phone"], p.line)
            if first != p.line:
                p.values, p.reason = None, f"duplicate of line {first}"
        sup = store.suppressed({p.values["phone"] for p in buf if p.values})
        for p in buf:
            if p.values is not None:
                p.decision = planner.decide(p, sup.get(p.values["phone"]))
        out = list(buf)
        buf.clear()
        return out

    for line, header, values, error in iter_rows(path):
        if line <= skip_through:
            continue
        assert header is not None
        if error is not None or values is None:
            buf.append(PlannedRow(line, None, None, error))
        else:
            buf.append(planner.row(line, header, values))
        if len(buf) >= chunk:
            yield flush()
    if buf:
        yield flush()


def _message_row(p: PlannedRow) -> dict[str, Any]:
    v = {k: val for k, val in p.values.items() if not k.startswith("_")}  # type: ignore[union-attr]
    d = p.decision
    assert d is not None
    if d.action == "send":
        v["status"], v["reason"] = Status.QUEUED.value, None
    elif d.action == "defer":
        v["status"], v["reason"], v["not_before"] = Status.DEFERRED.value, d.reason, d.not_before
    elif d.action == "hold":
        v["status"], v["reason"] = Status.SKIPPED.value, f"held: {d.reason}"
    else:
        v["status"], v["reason"] = Status.SKIPPED.value, d.reason
    return v


def load(campaign: Campaign, store: Store, queue: TaskQueue | None, *, batch_size: int = 200,
         chunk_rows: int = 5000, now: datetime | None = None,
         progress: Callable[[int], None] | None = None) -> LoadResult:
    """Create (or resume) the campaign in the database and enqueue its work. Idempotent by campaign name."""
    now = now or utcnow()
    existing = store.find_campaign(campaign.name)
    if existing is not None:
        if existing.spec != campaign.raw:
            raise InputError(f"{campaign.source}: a campaign named {campaign.name!r} already exists with different "
                             "settings; give this one a new name (or remove the old one)")
        result = LoadResult(existing.id, resumed=True)  # type: ignore[arg-type]
        if existing.load_complete:
            result.batches = existing.batch_count
            return result
        cid = int(existing.id)  # type: ignore[arg-type]
        skip = existing.loaded_lines
        next_seq = existing.batch_count + 1
    else:
        scheduled = campaign.schedule_utc is not None and campaign.schedule_utc > now
        cid = int(store.create_campaign(
            name=campaign.name, provider=campaign.spec.provider.name, channel=campaign.spec.channel,
            state=CampaignState.LOADING.value, source_path=str(campaign.source.resolve()), spec=campaign.raw,
            schedule_at=campaign.schedule_utc, created_at=now,
            state_reason="scheduled" if scheduled else None).id)  # type: ignore[arg-type]
        result = LoadResult(cid)
        skip, next_seq = 0, 1
    scheduled = campaign.schedule_utc is not None and campaign.schedule_utc > now
    sendable = not scheduled and queue is not None
    total_batches = max(1, -(-count_rows(campaign.contacts_path) // batch_size))
    if sendable:
        store.set_state(cid, CampaignState.RUNNING, only_from=[CampaignState.LOADING])

    last_line = skip
    try:
        for chunk in plan_rows(campaign, store, now=now, chunk=chunk_rows, skip_through=skip):
            rejected = [{"line": p.line, "phone": (p.phone or "")[:64] or None, "reason": p.reason}
                        for p in chunk if p.values is None]
            rows = [_message_row(p) for p in chunk if p.values is not None]
            for p in chunk:
                if p.decision is not None:
                    result.decisions[p.decision.action] = result.decisions.get(p.decision.action, 0) + 1
            batches = [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
            queued_in = [any(r["status"] == Status.QUEUED.value for r in b) for b in batches]
            last_line = chunk[-1].line
            ids, dups = store.insert_chunk(cid, next_seq, batches, rejected, last_line)
            result.rows += len(chunk)
            result.messages += len(rows) - len(dups)
            result.rejected += len(rejected) + len(dups)
            if sendable:
                labels = [(bid, batch_label(campaign.name, next_seq + i, max(total_batches, next_seq + i)))
                          for i, bid in enumerate(ids) if queued_in[i]]
                result.enqueued += queue.send_batches(labels)  # type: ignore[union-attr]
            next_seq += len(batches)
            result.batches = next_seq - 1
            if progress:
                progress(result.rows)
    except InputError:
        raise
    except Exception as exc:
        store.set_state(cid, CampaignState.STOPPED,
                        f"loading stopped after line {last_line}: {type(exc).__name__}: {exc}; "
                        "run the same command again to resume", only_from=[CampaignState.LOADING, CampaignState.RUNNING])
        raise
    store.update_campaign(cid, load_complete=True, batch_count=next_seq - 1)
    if scheduled:
        store.set_state(cid, CampaignState.SCHEDULED, f"scheduled for {campaign.schedule_utc:%Y-%m-%d %H:%M} UTC",
                        only_from=[CampaignState.LOADING])
    elif queue is not None:
        store.set_state(cid, CampaignState.RUNNING, only_from=[CampaignState.LOADING])
        store.complete_if_done(cid)
    return result


