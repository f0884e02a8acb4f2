"""The `dispatcher` command line. Errors a user can fix are printed as one located message (exit 1)."""

from __future__ import annotations

import csv
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .errors import DispatcherError, InputError
from .settings import get_settings

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Bulk SMS campaigns: validate, plan, run, watch, retry and report.")
suppress_app = typer.Typer(no_args_is_help=True, help="The suppression list: numbers no campaign sends to.")
providers_app = typer.Typer(no_args_is_help=True, help="Provider checks.")
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
lists_app = typer.Typer(no_args_is_help=True, help="Drop Cowboy contact lists.")
app.add_typer(lists_app, name="lists")
app.add_typer(suppress_app, name="suppress")
app.add_typer(providers_app, name="providers")
app.add_typer(db_app, name="db")
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
WAIT_EVERY = (0.25, 2.0)     # seconds between looks at a campaign's progress (``run --wait``): at least, at most
WATCH_EVERY = (1.0, 5.0)     # and between refreshes of ``status --watch``


def _pace(cost: float, within: tuple[float, float]) -> float:
    """Seconds to wait before looking again: a hundred times what the last look cost, within ``within``. Counting a
    large campaign's messages costs the database a pass over them (about 5-13 ms for 100,000 on SQLite, a whole
    status view about 20 ms), so watching takes about 1 % of a core from the workers beside it, whatever the size."""
    return min(within[1], max(within[0], cost * 100))


def _store():  # type: ignore[no-untyped-def]
    from . import runtime
    from .store import init_db

    s = runtime.store()
    init_db(s.engine)
    return s


def _queue():  # type: ignore[no-untyped-def]
    from .queue import TaskQueue

    return TaskQueue(get_settings())


@app.command()
def validate(campaign_file: Path = typer.Argument(..., help="campaign.yaml")) -> None:
    """Check a campaign file and its contact list header; exit 1 with located errors."""
    from .campaign import load_campaign

    c = load_campaign(campaign_file)
    out.print(f"[green]ok[/green] {campaign_file}: campaign {c.name!r}, provider {c.spec.provider.name}, "
              f"contacts {c.contacts_path}")


@app.command()
def plan(campaign_file: Path, output: Optional[Path] = typer.Option(None, "--output", "-o", help="write per-recipient decisions as CSV"),
         samples: int = typer.Option(3, help="sample recipients shown per decision")) -> None:
    """Dry run: render every recipient and show what would happen, without sending or storing anything."""
    from .plan import run_plan

    run_plan(campaign_file, _store(), output=output, samples=samples, console=out)


@app.command()
def run(campaign_file: Path, wait: bool = typer.Option(False, "--wait", help="show progress until nothing is queued or in flight"),
        timeout: Optional[float] = typer.Option(None, help="with --wait: give up waiting after this many seconds")) -> None:
    """Load the contact list into the database and enqueue the work (idempotent: running it again resumes)."""
    from .campaign import load_campaign
    from .loader import load
    from .models import CampaignState

    c = load_campaign(campaign_file)
    store = _store()
    queue = _queue()
    existing = store.find_campaign(c.name)
    with Progress(TextColumn("loading"), BarColumn(), MofNCompleteColumn(), console=err, transient=True) as prog:
        task = prog.add_task("load", total=None)
        result = load(c, store, queue, batch_size=get_settings().batch_size,
                      progress=lambda n, total: prog.update(task, completed=n, total=total))
    if result.resumed and existing is not None and existing.load_complete:
        row = store.campaign(result.campaign_id)
        if row.state == CampaignState.RUNNING.value:
            n = _dispatcher_for_cli(store, queue).enqueue_open(result.campaign_id)
            out.print(f"campaign {c.name!r} exists: re-enqueued {n} batches with queued messages (nothing is sent twice)")
    else:
        out.print(f"campaign {c.name!r}: {result.rows} rows -> {result.messages} messages, {result.rejected} rejected, "
                  f"{result.batches} batches, {result.enqueued} enqueued")
    row = store.campaign(result.campaign_id)
    if row.state == CampaignState.SCHEDULED.value:
        out.print(f"scheduled: starts at {row.schedule_at:%Y-%m-%d %H:%M} UTC (beat must be running)")
        return
    if wait:
        _wait(store, result.campaign_id, timeout)
        _summary(store, result.campaign_id)


def _dispatcher_for_cli(store, queue):  # type: ignore[no-untyped-def]
    """A Dispatcher for periodic-style operations from the CLI (no sending happens in the CLI)."""
    import redis

    from .engine import Dispatcher
    from .ratelimit import RateLimiter
    from .runtime import http_client

    settings = get_settings()
    return Dispatcher(settings, store, queue, RateLimiter(redis.Redis.from_url(settings.redis_url)),
                      lambda: http_client(settings))


def _wait(store, campaign_id: int, timeout: float | None) -> None:  # type: ignore[no-untyped-def]
    from .models import CampaignState, utcnow

    started = time.monotonic()
    last_change = started
    last_open = None
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[detail]}"),
                  TimeElapsedColumn(), console=err) as prog:
        task = prog.add_task("sending", total=None, detail="")
        while True:
            looked = time.perf_counter()
            counts, in_flight = store.progress(campaign_id, utcnow() + timedelta(seconds=90))
            total = sum(counts.values())
            prog.update(task, total=total, completed=total - counts["queued"] - counts["sending"] - counts["deferred"],
                        detail=f"sent {counts['sent'] + counts['delivered']} failed {counts['failed']} "
                               f"deferred {counts['deferred']} unknown {counts['unknown']}")
            state = store.campaign_state(campaign_id)
            looked = time.perf_counter() - looked
            if in_flight == 0 or state in (CampaignState.STOPPED.value, CampaignState.CANCELLED.value, CampaignState.PAUSED.value):
                break
            if in_flight != last_open:
                last_open, last_change = in_flight, time.monotonic()
            elif time.monotonic() - last_change > 30:
                err.print("[yellow]no progress for 30 s: is a worker running? (celery -A workers.app worker)[/yellow]")
                last_change = time.monotonic()
            if timeout is not None and time.monotonic() - started > timeout:
                err.print(f"[yellow]stopped waiting after {timeout:g} s; the campaign goes on[/yellow]")
                break
            pause = _pace(looked, WAIT_EVERY)
            time.sleep(pause if timeout is None else max(0.0, min(pause, started + timeout - time.monotonic())))


def _summary(store, campaign_id: int) -> None:  # type: ignore[no-untyped-def]
    row = store.campaign(campaign_id)
    counts = store.counts(campaign_id)
    shown = ", ".join(f"{k} {v}" for k, v in counts.items() if v)
    out.print(f"campaign {row.name!r} {row.state}{' (' + row.state_reason + ')' if row.state_reason else ''}: {shown}")


@app.command()
def report(campaign: str, format: str = typer.Option("table", "--format", "-f", help="table | csv | json"),
           output: Optional[Path] = typer.Option(None, "--output", "-o", help="write to this file")) -> None:
    """Per status, per reason and per provider code; csv/json list every recipient with every attempt."""
    from . import report as rep

    if format not in ("table", "csv", "json"):
        raise InputError(f"--format: {format!r} is not one of table, csv, json")
    store = _store()
    data = rep.build(store, store.campaign(campaign))
    if format == "table":
        _report_table(data)
        return
    text = rep.to_text(data, format)
    if output:
        output.write_text(text, encoding="utf-8")
        err.print(f"wrote {output}")
    else:
        sys.stdout.write(text)


def _report_table(data: dict) -> None:  # type: ignore[type-arg]
    c = data["campaign"]
    out.print(f"[bold]{c['name']}[/bold] ({c['provider']}, {c['state']}{': ' + c['state_reason'] if c['state_reason'] else ''})"
              f" - {c['recipients']} recipients, {c['segments_sent']} segments sent, cost {c['cost']:g}")
    t = Table("status", "count")
    for k, v in data["counts"].items():
        t.add_row(k, str(v))
    out.print(t)
    if data["reasons"]:
        t = Table("reason", "count")
        for k, v in data["reasons"].items():
            t.add_row(k, str(v))
        out.print(t)
    if data["provider_codes"]:
        t = Table("provider code", "count")
        for k, v in data["provider_codes"].items():
            t.add_row(k, str(v))
        out.print(t)


@app.command()
def campaigns() -> None:
    """List campaigns with their state."""
    store = _store()
    t = Table("name", "provider", "state", "reason", "created", "messages")
    for c in store.campaigns():
        counts = store.counts(int(c.id))  # type: ignore[arg-type]
        t.add_row(c.name, c.provider, c.state, c.state_reason or "", f"{c.created_at:%Y-%m-%d %H:%M}",
                  str(sum(v for k, v in counts.items() if k != "rejected")))
    out.print(t)


@app.command()
def pause(campaign: str) -> None:
    """Pause: workers stop taking this campaign's messages within seconds; nothing in flight is lost."""
    from .models import CampaignState

    store = _store()
    c = store.campaign(campaign)
    if not store.set_state(int(c.id), CampaignState.PAUSED, "paused by user",  # type: ignore[arg-type]
                           only_from=[CampaignState.RUNNING, CampaignState.SCHEDULED]):
        raise InputError(f"campaign {campaign!r} is {c.state}; only running or scheduled campaigns can be paused")
    out.print(f"paused {campaign!r}")


@app.command()
def resume(campaign: str) -> None:
    """Resume a paused or stopped campaign: its queued messages are enqueued again (none is sent twice)."""
    from .models import CampaignState

    store = _store()
    c = store.campaign(campaign)
    if not store.set_state(int(c.id), CampaignState.RUNNING, None,  # type: ignore[arg-type]
                           only_from=[CampaignState.PAUSED, CampaignState.STOPPED]):
        raise InputError(f"campaign {campaign!r} is {c.state}; only paused or stopped campaigns can be resumed")
    n = _dispatcher_for_cli(store, _queue()).enqueue_open(int(c.id))  # type: ignore[arg-type]
    out.print(f"resumed {campaign!r}: {n} batches enqueued")


@app.command()
def cancel(campaign: str) -> None:
    """Cancel: queued and deferred messages become cancelled; nothing more is sent."""
    from .models import CampaignState, utcnow

    store = _store()
    c = store.campaign(campaign)
    if not store.set_state(int(c.id), CampaignState.CANCELLED, "cancelled by user",  # type: ignore[arg-type]
                           only_from=[CampaignState.RUNNING, CampaignState.PAUSED, CampaignState.SCHEDULED,
                                      CampaignState.STOPPED, CampaignState.LOADING]):
        raise InputError(f"campaign {campaign!r} is already {c.state}")
    n = store.cancel_open(int(c.id), utcnow())  # type: ignore[arg-type]
    out.print(f"cancelled {campaign!r}: {n} messages will not be sent")


@app.command()
def retry(campaign: str, batch: Optional[int] = typer.Option(None, "--batch", help="batch number (as in `status`)"),
          status: str = typer.Option("failed,unknown", "--status", help="comma-separated: failed, unknown, cancelled"),
          reason: Optional[str] = typer.Option(None, "--reason", help="only messages whose reason contains this text"),
          dry_run: bool = typer.Option(False, "--dry-run", help="show the count only"),
          yes: bool = typer.Option(False, "--yes", "-y", help="do not ask for confirmation")) -> None:
    """Send matching failed/unknown messages again (never skipped or suppressed ones); each retry is a new attempt."""
    from .models import CampaignState, utcnow

    statuses = [s.strip() for s in status.split(",") if s.strip()]
    bad = [s for s in statuses if s not in ("failed", "unknown", "cancelled")]
    if bad:
        raise InputError(f"--status: {', '.join(bad)} cannot be retried; choose from failed, unknown, cancelled")
    store = _store()
    c = store.campaign(campaign)
    ids = store.retry_candidates(int(c.id), statuses, batch_seq=batch, reason=reason)  # type: ignore[arg-type]
    where = f" in batch {batch}" if batch is not None else ""
    out.print(f"{len(ids)} message(s) with status {'/'.join(statuses)}{where}{' matching ' + repr(reason) if reason else ''} "
              f"would be sent again")
    if dry_run or not ids:
        return
    if not yes and sys.stdin.isatty() and not typer.confirm("send them again?"):
        raise typer.Exit(1)
    batch_ids = store.requeue_for_retry(ids, statuses, utcnow())
    store.set_state(int(c.id), CampaignState.RUNNING, None,  # type: ignore[arg-type]
                    only_from=[CampaignState.COMPLETED, CampaignState.STOPPED, CampaignState.RUNNING])
    store.touch_batches(batch_ids, utcnow())
    n = _queue().send_batches(store.batch_labels(batch_ids))
    out.print(f"re-queued {len(ids)} message(s) in {n} batch(es)")


@app.command()
def status(campaign: Optional[str] = typer.Argument(None), watch: bool = typer.Option(False, "--watch", "-w",
           help="refresh every second (up to every 5 s for very large campaigns) until Ctrl-C")) -> None:
    """Live view: counts by status, rate now and average, ETA, failed batches, effective provider rates."""
    from rich.live import Live

    from .status import render_status

    store = _store()
    if not watch:
        out.print(render_status(store, campaign))
        return
    looked = time.perf_counter()
    with Live(render_status(store, campaign), console=out, refresh_per_second=2) as live:
        while True:
            time.sleep(_pace(time.perf_counter() - looked, WATCH_EVERY))
            looked = time.perf_counter()
            live.update(render_status(store, campaign))


@app.command()
def webhooks(host: str = typer.Option("127.0.0.1", help="bind address (loopback by default)"),
             port: int = typer.Option(8026)) -> None:
    """Receive delivery receipts and replies (needs WEBHOOK_TOKEN; callbacks carry it)."""
    from .webhooks import serve

    serve(host=host, port=port)


@app.command()
def sandbox(host: str = typer.Option("127.0.0.1", help="bind address (loopback by default)"),
            port: int = typer.Option(8025), latency_ms: float = typer.Option(0.0, help="added to every answer")) -> None:
    """Run the local sandbox that implements all four provider APIs."""
    from .sandbox import run as run_sandbox

    out.print(f"sandbox on http://{host}:{port} (Drop Cowboy base_url http://{host}:{port}/v1)")
    run_sandbox(host=host, port=port, latency_ms=latency_ms)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema (Alembic) at DATABASE_URL."""
    _store()
    out.print("database schema is up to date")


@suppress_app.command("add")
def suppress_add(phones: list[str], reason: Optional[str] = typer.Option(None), region: str = typer.Option("US", help="for numbers without +")) -> None:
    """Add numbers to the suppression list."""
    from . import phones as ph

    entries = []
    for p in phones:
        try:
            entries.append((ph.normalise(p, region).e164, "manual", reason))
        except ph.InvalidNumber as exc:
            raise InputError(f"{p!r}: {exc}") from None
    n = _store().suppress(entries)
    out.print(f"added {n} number(s) ({len(entries) - n} already suppressed)")


@suppress_app.command("import")
def suppress_import(csv_file: Path, region: str = typer.Option("US"), source: str = typer.Option("import")) -> None:
    """Import numbers from a CSV with a 'phone' column (optional 'reason')."""
    from . import phones as ph
    from .campaign import read_header

    from .campaign import contact_lines

    header = read_header(csv_file)
    if not header or "phone" not in header:
        raise InputError(f"{csv_file}:1: column 'phone' is missing")
    entries, bad = [], []
    reader = csv.DictReader(contact_lines(csv_file), fieldnames=header)
    next(reader)
    for row in reader:
        try:
            entries.append((ph.normalise(row.get("phone") or "", region).e164, source, row.get("reason") or None))
        except ph.InvalidNumber as exc:
            bad.append(f"{csv_file}:{reader.line_num}: {exc}")
    n = _store().suppress(entries)
    out.print(f"imported {n} new number(s); {len(entries) - n} already suppressed; {len(bad)} invalid")
    for b in bad[:20]:
        err.print(b)


@suppress_app.command("list")
def suppress_list() -> None:
    """Show the suppression list."""
    t = Table("phone", "source", "reason", "since")
    for s in _store().suppression_list():
        t.add_row(s.phone, s.source, s.reason or "", f"{s.created_at:%Y-%m-%d %H:%M}")
    out.print(t)


@suppress_app.command("remove")
def suppress_remove(phone: str, region: str = typer.Option("US")) -> None:
    """Remove a number from the suppression list (only with the person's renewed consent)."""
    from . import phones as ph

    e164 = ph.normalise(phone, region).e164
    if not _store().unsuppress(e164):
        raise InputError(f"{phone} is not on the suppression list")
    out.print(f"removed {ph.mask(e164)}")


@providers_app.command("check")
def providers_check(campaign_file: Path) -> None:
    """Call the provider's read-only endpoints (where it has them) to confirm credentials and named resources."""
    from .campaign import load_campaign
    from .providers import get_provider_class
    from .providers.base import ProviderConfig
    from .runtime import http_client

    c = load_campaign(campaign_file)
    cls = get_provider_class(c.spec.provider.name)
    settings = get_settings()
    with http_client(settings) as client:
        adapter = cls(ProviderConfig(base_url=c.base_url() or cls.default_base_url, credentials=c.credentials(),
                                     options=c.options(), test_mode=c.spec.test_mode, channel=c.spec.channel), client)
        problems = adapter.check(timeout=settings.http_timeout)
    if problems:
        for p in problems:
            err.print(f"[red]{cls.name}[/red]: {p}")
        raise typer.Exit(1)
    out.print(f"[green]ok[/green] {cls.name}: credentials and named resources check out")


def _lists_client(campaign_file: Path):  # type: ignore[no-untyped-def]
    from .campaign import load_campaign
    from .lists import client_for
    from .runtime import http_client

    c = load_campaign(campaign_file)
    settings = get_settings()
    http = http_client(settings)
    return c, http, client_for(c, http, timeout=settings.http_timeout)


@lists_app.command("push")
def lists_push(campaign_file: Path, list_name: Optional[str] = typer.Option(None, "--list-name",
               help="default: the campaign's name")) -> None:
    """Create (or reuse) a list and append the campaign's eligible contacts (consent, not suppressed)."""
    from .lists import push

    c, http, lists = _lists_client(campaign_file)
    with http:
        r = push(c, _store(), lists, list_name=list_name)
    out.print(f"{'created' if r.created else 'reused'} list {r.list_name!r} ({r.list_id}): pushed {r.pushed} contact(s), "
              f"{r.accepted} accepted, {len(r.rejected)} rejected; fields {', '.join(r.fields)}"
              + (f"; not sent: {', '.join(r.unmapped)}" if r.unmapped else ""))


@lists_app.command("show")
def lists_show(campaign_file: Path, list_ref: str = typer.Argument(..., help="list name (as pushed) or list id")) -> None:
    """Show a list's details (contact count) as the provider has them."""
    from .lists import resolve

    c, http, lists = _lists_client(campaign_file)
    list_id, _ = resolve(_store(), list_ref)
    with http:
        info = lists.get(list_id)
    for k, v in info.items():
        out.print(f"{k}: {v}")


@lists_app.command("rename")
def lists_rename(campaign_file: Path, list_ref: str, new_name: str) -> None:
    """Rename a list at the provider."""
    from .lists import renamed, resolve

    c, http, lists = _lists_client(campaign_file)
    store = _store()
    list_id, _ = resolve(store, list_ref)
    with http:
        lists.rename(list_id, new_name)
    renamed(store, list_id, new_name)
    out.print(f"renamed {list_id} to {new_name!r}")


@lists_app.command("delete")
def lists_delete(campaign_file: Path, list_ref: str) -> None:
    """Delete a list at the provider."""
    from .lists import forget, resolve

    c, http, lists = _lists_client(campaign_file)
    store = _store()
    list_id, _ = resolve(store, list_ref)
    with http:
        lists.delete(list_id)
    forget(store, list_id)
    out.print(f"deleted list {list_id}")


def main() -> None:
    try:
        app()
    except DispatcherError as exc:
        from rich.markup import escape

        err.print(f"[red]error[/red]: {escape(str(exc))}", highlight=False)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
