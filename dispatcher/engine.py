"""Sending: the domain side of the worker tasks.

``send_batch`` claims a batch's queued messages a group at a time (a conditional UPDATE, so a
redelivered or duplicate task never sends twice), re-checks the compliance rules against the
clock and the suppression list, takes a slot from the shared rate limiter, and sends through the
provider adapter on a thread pool (one small keep-alive httpx client per sending thread: one client
shared by many threads spends its time in the connection pool's lock). Finished sends come back
through a queue; their outcomes and attempts are written in the same transaction that claims the
next group, so the database sees one commit per group. At most ``SEND_CONCURRENCY`` requests are in
flight, and at most as many messages again wait claimed for a free thread: 2 × ``SEND_CONCURRENCY``
messages (times the group size for email) are ever claimed and unrecorded in a process. An answer that stops
the campaign (authentication, billing) halts the batch, and what waits goes back to ``queued`` unsent.
A worker's batch task returns once nothing of its batch is left to claim, and hands its last requests to a thread
that records them (``hand_off``): the next batch's requests start at once instead of after the slowest answer.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, TypeVar

import httpx

from . import channels, encoding, policy
from .campaign import Campaign, campaign_from_stored
from .errors import TransientError
from .models import CampaignState, Status, utcnow
from .providers import get_provider_class
from .providers.base import Outcome, Provider, ProviderConfig, SendResult
from .queue import TaskQueue, batch_label
from .ratelimit import Rate, RateLimiter, limiter_key
from .settings import Settings
from .store import Claimed, Outcome as Row, Store, sweep_cutoff

log = logging.getLogger("dispatcher.engine")

MAX_SLOT_WAIT = 2.0        # seconds a worker may sleep for its rate-limit slot before giving the work back
SHORT_REQUEUE = 60.0       # deferrals due sooner than this re-enqueue their batch; later ones wait for beat
DB_RETRY_CAP = 1.0         # seconds at most between tries of a claimed wave's database step while the database is away
STATE_CHECK_EVERY = 1.0    # seconds between campaign-state reads while a batch sends (pause takes effect within)
COLLECT_EVERY = 0.05       # seconds at most between looks at the campaign while requests are out
CLAIM_AHEAD = 1.0          # claimed messages waiting for a free sending thread, as a share of SEND_CONCURRENCY
LIMITER_RETRY = 5.0        # seconds before work given back for an unreachable rate limiter is tried again
SENDABLE = (CampaignState.RUNNING.value,)
_NO_LENGTH = encoding.TextInfo("GSM-7", 0, 1, 0)
_STOPPING = (Outcome.AUTH, Outcome.BILLING)   # answers that stop the campaign: nothing more goes out after one
_HALTED = object()   # in place of a result: the batch halted before this group's request, which was not made
T = TypeVar("T")


@dataclass
class BatchResult:
    sent: int = 0
    failed: int = 0
    deferred: int = 0
    skipped: int = 0
    unknown: int = 0
    given_back: int = 0
    handed_off: int = 0       # messages still out when send_batch returned (``hand_off``)
    requeue_in: float | None = None
    stopped: str | None = None
    counts: dict[str, int] = field(default_factory=dict)


@dataclass
class _Ctx:
    campaign: Campaign
    provider: Provider
    config: ProviderConfig
    rate: Rate | None
    key: str
    max_segments: int
    account_rate: Rate | None
    channel: str
    options: dict[str, Any]
    quiet_hours: policy.QuietHours | None
    length_rule: bool


def backoff(attempt: int) -> float:
    """Seconds before message-level retry number ``attempt`` (1-based): 2, 4, 8 ... capped at 5 minutes, jittered."""
    return min(300.0, 2.0 ** attempt) * random.uniform(0.75, 1.25)


class Dispatcher:
    def __init__(self, settings: Settings, store: Store, queue: TaskQueue, limiter: RateLimiter,
                 client_factory: Callable[[], httpx.Client], *, clock: Callable[[], datetime] = utcnow,
                 environ: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.store = store
        self.queue = queue
        self.limiter = limiter
        self.client_factory = client_factory
        self.client = client_factory()
        self._local = threading.local()
        self.clock = clock
        self.environ = environ
        self.senders = _Senders(settings.send_concurrency, self._send_into)
        self._ctx: dict[int, tuple[Any, _Ctx]] = {}
        self._lock = threading.Lock()
        self._passes: set[_Pass] = set()     # the send_batch passes of this process, handed off ones included
        self._passes_changed = threading.Condition()
        self._room = threading.Condition()   # notified when a pass gets messages back (room for the others)

    # ------------------------------------------------------------ campaign context
    def context(self, campaign_id: int) -> _Ctx:
        row = self.store.campaign(campaign_id)
        with self._lock:
            cached = self._ctx.get(campaign_id)
            if cached and cached[0] == row.spec:
                return cached[1]
        c = campaign_from_stored(row.spec, row.source_path)
        cls = get_provider_class(c.spec.provider.name)
        callback = None
        if self.settings.webhook_base_url and self.settings.webhook_token:
            callback = (f"{self.settings.webhook_base_url.rstrip('/')}/webhooks/{cls.name}"
                        f"?token={self.settings.webhook_token.get_secret_value()}")
        channel = getattr(c.spec, "channel", channels.SMS)
        options = c.options(self.environ)
        config = ProviderConfig(base_url=c.base_url(self.environ) or cls.default_base_url,
                                credentials=c.credentials(self.environ), options=options,
                                callback_url=callback, test_mode=c.spec.test_mode, channel=channel)
        rate = Rate.parse(c.spec.provider.rate_limit, burst=c.spec.provider.burst) if c.spec.provider.rate_limit else None
        qh = c.spec.quiet_hours.to_policy() if c.spec.quiet_hours and channel != channels.EMAIL else None
        account = self.settings.provider_rate_limits.get(cls.name)
        ctx = _Ctx(c, cls(config, self.client), config, rate, limiter_key(cls.name, c.spec.provider.rate_scope),
                   c.spec.max_segments, Rate.parse(account) if account else None, channel, options, qh,
                   channels.needs_length_rule(channel))
        with self._lock:
            self._ctx[campaign_id] = (row.spec, ctx)
        return ctx

    # ------------------------------------------------------------ the batch
    def send_batch(self, batch_id: int, *, hand_off: bool = False) -> BatchResult:
        """Send what is queued in a batch; returns what became of it.

        With ``hand_off`` it returns as soon as nothing more of the batch is left to claim: the requests still out
        are recorded, and the batch finished (messages given back, a re-enqueue for due retries, a stop, the
        campaign's completion), by a thread of this process, while the next batch's requests already start.
        ``wait_handed_off`` waits for those threads. The result then counts what had been recorded when it returned,
        and ``handed_off`` the messages still out. Raises TransientError when the database went away, after
        recording what was sent (the task is retried for the rest).
        """
        campaign_id, seq, total = self.store.batch_info(batch_id)
        result = BatchResult()
        state = self.store.campaign_state(campaign_id)
        if state == CampaignState.CANCELLED.value:
            self.store.cancel_open(campaign_id, self.clock())
            return result
        if state not in SENDABLE:
            return result
        try:
            ctx = self.context(campaign_id)
        except KeyError as exc:
            reason = f"the worker's environment lacks {exc.args[0]} (a ${{VAR}} of the campaign file)"
            self.store.set_state(campaign_id, CampaignState.STOPPED, reason, only_from=[CampaignState.RUNNING])
            result.stopped = reason
            return result
        p = _Pass(self, ctx, batch_id, campaign_id, seq, total, result)
        with self._passes_changed:
            self._passes.add(p)
        try:
            while p.step():
                # A stop is written before the next batch starts (no second wave to a refused account); a database
                # that went away is the task's to retry.
                if hand_off and not p.claiming and p.in_flight and p.interrupted is None and p.stop is None:
                    result.handed_off = p.in_flight
                    p.handed_off = True
                    threading.Thread(target=self._finish_handed_off, args=(p,), name=f"finish-batch-{batch_id}",
                                     daemon=True).start()
                    return result
            return p.finish()
        finally:
            if not p.handed_off:
                self._forget(p)

    def _finish_handed_off(self, p: _Pass) -> None:
        try:
            while p.step():
                pass
            p.finish()
        except TransientError as exc:
            log.warning("batch %d: %s; what it had not recorded is taken up by the reconciler", p.batch_id, exc)
        except Exception:  # noqa: BLE001 - a thread of its own: nobody else would see it
            log.exception("batch %d: finishing its last sends failed", p.batch_id)
        finally:
            self._forget(p)

    def _forget(self, p: _Pass) -> None:
        with self._passes_changed:
            self._passes.discard(p)
            self._passes_changed.notify_all()

    def wait_handed_off(self, timeout: float | None = None) -> bool:
        """Wait until every batch handed off by ``send_batch`` is finished; False when ``timeout`` passed first."""
        with self._passes_changed:
            return self._passes_changed.wait_for(lambda: not any(p.handed_off for p in self._passes), timeout)

    def _out_elsewhere(self, p: _Pass) -> int:
        """Messages claimed and not yet back in this process's other passes."""
        return sum(other.in_flight for other in tuple(self._passes) if other is not p)

    def _wait_for_room(self) -> None:
        with self._room:
            self._room.wait(COLLECT_EVERY)

    def _room_freed(self) -> None:
        with self._room:
            self._room.notify_all()

    def _halt_campaign(self, campaign_id: int) -> None:
        """An answer stopped the campaign: no pass of this process claims or sends more of it."""
        for other in tuple(self._passes):
            if other.campaign_id == campaign_id:
                other.halt()

    def _record(self, rows: list[Row], *, again: bool = False) -> None:
        self._patiently(f"recording {len(rows)} outcomes", lambda: self.store.record(rows, self.clock(), again=again),
                        within=self.settings.stale_after)

    def _patiently(self, what: str, step: Callable[[], T], *, within: float) -> T:
        """Run a database step while messages are claimed. After the requests, their outcomes exist only in
        memory, so a database that is away for a moment (restart, failover) is waited for, up to ``within``
        seconds, instead of leaving the messages to become ``unknown``. Raises TransientError when it stays
        away longer."""
        deadline = time.monotonic() + within
        pause = 0.1
        while True:
            try:
                return step()
            except TransientError as exc:
                if time.monotonic() + pause > deadline:
                    raise
                log.warning("%s: %s; trying again in %.1fs", what, exc, pause)
                time.sleep(pause)
                pause = min(pause * 2, DB_RETRY_CAP)

    def _decide(self, ctx: _Ctx, claimed: list[Claimed], sup: dict[str, str], now: datetime,
                result: BatchResult) -> tuple[list[Row], list[Claimed]]:
        """Send-time compliance: the rows for messages that must not go now, and the messages that may.
        ``sup`` holds the suppression entries of the claimed numbers, read in the claim's transaction."""
        rows: list[Row] = []
        to_send: list[Claimed] = []
        for m in claimed:
            info = encoding.analyse(m.body) if ctx.length_rule else _NO_LENGTH
            d = policy.decide(opt_in=m.opt_in, suppressed_reason=sup.get(m.phone), info=info,
                              max_segments=ctx.max_segments, zones=tuple((m.timezones or "").split()),
                              quiet_hours=ctx.quiet_hours, now=now)
            if d.action == "send":
                to_send.append(m)
            elif d.action == "defer":
                rows.append(Row(m.id, Status.DEFERRED.value, d.reason, not_before=d.not_before))
                result.deferred += 1
            else:
                reason = f"held: {d.reason}" if d.action == "hold" else d.reason
                rows.append(Row(m.id, Status.SKIPPED.value, reason))
                result.skipped += 1
        return rows, to_send

    def _outcomes(self, ctx: _Ctx, done: list[tuple[list[Claimed], float, SendResult]],
                  result: BatchResult) -> tuple[list[Row], str | None, list[tuple[str, str, str | None]]]:
        rows: list[Row] = []
        stop: str | None = None
        suppress: list[tuple[str, str, str | None]] = []
        for group, started, res in done:
            for m in group:
                row, stop_reason, sup_entry = self._classify(ctx, m, res, started)
                rows.append(row)
                if sup_entry:
                    suppress.append(sup_entry)
                if stop_reason and stop is None:
                    stop = stop_reason
                if row.status == Status.SENT.value:
                    result.sent += 1
                elif row.status == Status.FAILED.value:
                    result.failed += 1
                elif row.status == Status.UNKNOWN.value:
                    result.unknown += 1
                elif row.status == Status.DEFERRED.value:
                    result.deferred += 1
        return rows, stop, suppress

    def _adapter(self, ctx: _Ctx) -> Provider:
        """This thread's adapter for the campaign, on this thread's own client."""
        local = self._local
        if not hasattr(local, "client"):
            local.client = self.client_factory()
            local.adapters = {}
        adapter = local.adapters.get(id(ctx))
        if adapter is None:
            adapter = local.adapters[id(ctx)] = type(ctx.provider)(ctx.config, local.client)
        return adapter

    def _send_into(self, run: _Run, ctx: _Ctx, group: list[Claimed]) -> None:
        """Run on a sending thread: send, and hand (group, start, result or exception) back to the batch. An answer
        that stops the campaign halts the batch at once, so that no thread makes another request for it."""
        try:
            started, res = self._send(ctx, group, run.halted)
        except BaseException as exc:  # noqa: BLE001 - re-raised on the batch's thread
            run.finished.put((group, 0.0, exc))
            return
        if isinstance(res, SendResult) and res.outcome in _STOPPING:
            run.halted.set()
        run.finished.put((group, started, res))

    def _send(self, ctx: _Ctx, group: list[Claimed], halted: threading.Event) -> tuple[float, Any]:
        """One request: a rate-limit slot (segments, or one per email address), then the provider call.
        Returns (start time, result); (seconds until a slot, None) when the slot is too far away; (0, _HALTED)
        when the batch halted before the request."""
        cost = sum(m.segments for m in group) if ctx.length_rule else len(group)
        wait_for = 0.0
        for key, rate in ((limiter_key(ctx.provider.name, "deployment"), ctx.account_rate), (ctx.key, ctx.rate)):
            if rate is not None:
                try:
                    r = self.limiter.acquire(key, rate, cost=cost, max_wait=MAX_SLOT_WAIT)
                except TransientError as exc:   # Redis away: nothing was sent, give the message back
                    log.warning("rate limiter unavailable (%s); giving the work back", exc)
                    return LIMITER_RETRY, None
                if not r.granted:
                    return r.wait, None
                wait_for = max(wait_for, r.wait)
        if wait_for > 0:
            time.sleep(wait_for)
        if halted.is_set():
            return 0.0, _HALTED
        started = time.time()
        timeout = self.settings.http_timeout
        provider = self._adapter(ctx)
        if ctx.channel in channels.GROUPED:
            at = ctx.campaign.schedule_utc
            return started, channels.send_group(provider, addresses=[m.phone for m in group], options=ctx.options,
                                                schedule=at if at and at > self.clock() else None, timeout=timeout)
        m = group[0]
        return started, channels.send_one(provider, ctx.channel, message_id=m.id, to=m.phone, region=m.region,
                                          body=m.body, segments=m.segments, opt_in=m.opt_in, fields=m.fields,
                                          options=ctx.options, test_mode=ctx.campaign.spec.test_mode, timeout=timeout)

    def _classify(self, ctx: _Ctx, m: Claimed, res: SendResult,
                  started: float) -> tuple[Row, str | None, tuple[str, str, str | None] | None]:
        attempt = {"message_id": m.id, "campaign_id": m.campaign_id,
                   "started_at": datetime.fromtimestamp(started, timezone.utc), "duration_ms": int(res.duration * 1000),
                   "http_status": res.status_code, "outcome": res.outcome.value,
                   "provider_message_id": res.provider_message_id, "provider_code": res.provider_code,
                   "detail": res.detail}
        o = res.outcome
        if o == Outcome.SENT:   # nearly every answer: nothing more to work out
            return Row(m.id, Status.SENT.value, None, provider_message_id=res.provider_message_id,
                       provider_code=res.provider_code, cost=res.cost, attempt=attempt), None, None
        now = self.clock()
        n = m.attempts + 1
        maxa = ctx.campaign.spec.max_attempts
        what = _describe(res)
        if o in (Outcome.RETRYABLE, Outcome.THROTTLED):
            if o == Outcome.THROTTLED:
                if ctx.rate is not None:
                    self.limiter.penalise(ctx.key, retry_after=res.retry_after)
                if ctx.account_rate is not None:
                    self.limiter.penalise(limiter_key(ctx.provider.name, "deployment"), retry_after=res.retry_after)
            if n >= maxa:
                return Row(m.id, Status.FAILED.value, f"{what}; gave up after {n} attempts",
                           provider_code=res.provider_code, attempt=attempt), None, None
            delay = res.retry_after if (o == Outcome.THROTTLED and res.retry_after) else backoff(n)
            until = now + timedelta(seconds=delay)
            return Row(m.id, Status.DEFERRED.value, f"retrying at {until:%H:%M:%S} UTC after {what} (attempt {n} of {maxa})",
                       not_before=until, provider_code=res.provider_code, attempt=attempt), None, None
        if o == Outcome.REJECTED:
            return Row(m.id, Status.FAILED.value, f"rejected by {ctx.provider.name}: {what}",
                       provider_code=res.provider_code, attempt=attempt), None, None
        if o == Outcome.SUPPRESSED:
            reason = f"{ctx.provider.name}: {what}"
            return (Row(m.id, Status.FAILED.value, f"refused by {ctx.provider.name} (opted out or blacklisted): {what}; "
                        "number added to the suppression list", provider_code=res.provider_code, attempt=attempt),
                    None, (m.phone, f"{ctx.provider.name}-{res.provider_code or 'optout'}", reason))
        if o == Outcome.UNKNOWN:
            return Row(m.id, Status.UNKNOWN.value, f"no answer in time after the request was sent ({what}): "
                       "a delivery receipt resolves it, or `dispatcher retry --status unknown` re-sends",
                       attempt=attempt), None, None
        # AUTH / BILLING: not this message's fault; it goes back to queued and the campaign stops.
        fix = ("check the provider credentials in the environment" if o == Outcome.AUTH
               else "check the account balance / billing with the provider")
        stop = f"{ctx.provider.name} refused the account ({o.value}: {what}): {fix}, then `dispatcher resume {ctx.campaign.name}`"
        return Row(m.id, Status.QUEUED.value, None, attempt=attempt), stop, None

    # ------------------------------------------------------------ periodic work
    def release_due(self) -> int:
        """Start scheduled campaigns that are due and re-queue deferred messages whose time has come."""
        now = self.clock()
        n = 0
        for c in self.store.campaigns():
            if c.state == CampaignState.SCHEDULED.value and c.schedule_at and c.schedule_at <= now:
                if self.store.set_state(int(c.id), CampaignState.RUNNING, only_from=[CampaignState.SCHEDULED]):  # type: ignore[arg-type]
                    n += self.enqueue_open(int(c.id))  # type: ignore[arg-type]
        batch_ids = self.store.release_due(now)
        if batch_ids:
            n += self.queue.send_batches(self.store.batch_labels(batch_ids))
        return n

    def enqueue_open(self, campaign_id: int) -> int:
        ids = self.store.open_batches(campaign_id)
        self.store.touch_batches(ids, self.clock())
        return self.queue.send_batches(self.store.batch_labels(ids)) if ids else 0

    def reconcile(self) -> dict[str, int]:
        """Repair what transport lost: stale in-flight claims become unknown; lost batches are re-enqueued."""
        now = self.clock()
        expired = self.store.expire_sending(sweep_cutoff(now, self.settings.stale_after), now)
        requeued = 0
        if self.queue.backlog() == 0:
            stale = self.store.stale_batches(sweep_cutoff(now, self.settings.stale_after))
            if stale:
                self.store.touch_batches(stale, now)
                requeued = self.queue.send_batches(self.store.batch_labels(stale))
        completed = 0
        for c in self.store.campaigns():
            if c.state == CampaignState.RUNNING.value and self.store.complete_if_done(int(c.id)):  # type: ignore[arg-type]
                completed += 1
        if expired or requeued:
            log.warning("reconcile: %d in-flight messages marked unknown, %d batches re-enqueued", expired, requeued)
        return {"unknown": expired, "requeued": requeued, "completed": completed}


class _Run:
    """One batch's side of the sending threads: where finished sends come back, and whether to send at all."""

    __slots__ = ("finished", "halted")

    def __init__(self) -> None:
        self.finished: queue.SimpleQueue[tuple[list[Claimed], float, Any]] = queue.SimpleQueue()
        self.halted = threading.Event()


class _Pass:
    """One ``send_batch`` over its batch: the loop that claims, hands messages to the sending threads, collects what
    they send and records it, and what it must do at the end (``finish``).

    At most ``SEND_CONCURRENCY`` requests are in flight, and as many messages again wait claimed for a
    free thread, counted over every pass of the process: a pass handed off to finish its last sends leaves the
    next one that much less room.
    """

    def __init__(self, d: Dispatcher, ctx: _Ctx, batch_id: int, campaign_id: int, seq: int, total: int,
                 result: BatchResult) -> None:
        self.d, self.ctx, self.batch_id, self.campaign_id, self.seq, self.total = d, ctx, batch_id, campaign_id, seq, total
        self.result = result
        k = d.settings.send_concurrency
        self.unit = channels.group_size(ctx.options) if ctx.channel in channels.GROUPED else 1
        # Messages claimed and not yet recorded, at most (what a killed worker leaves): as many as there are sending
        # threads, and as many again waiting for them, so that a thread that finishes takes its next message at once
        # instead of waiting for this thread to record and claim (SQLite's writer is shared by every process; with
        # half as many waiting, threads still waited 2-5 ms a send for their next message, measured).
        self.cap = (k + int(k * CLAIM_AHEAD)) * self.unit
        self.refill_at = max(1, self.cap // 8)    # claim (and record) in groups of at least this many
        self.run = _Run()
        self.in_flight = 0                   # messages handed to the sending threads and not back yet
        self.pending: list[Row] = []         # outcomes and send-time decisions waiting to be written
        self.suppress: list[tuple[str, str, str | None]] = []
        self.give_back: list[int] = []
        self.soonest: float | None = None
        self.stop: str | None = None
        self.drained = False
        self.interrupted: TransientError | None = None
        self.unseen_claim: datetime | None = None   # the time of a claim whose exchange failed (``finish``)
        self.next_state_check = 0.0
        self.handed_off = False             # finishing on a thread of its own (send_batch's hand_off)

    @property
    def claiming(self) -> bool:
        """Whether more of the batch may still be claimed."""
        return not self.drained and self.stop is None and not self.give_back

    def step(self) -> bool:
        """One turn: write what waits (with the next claim when there is room), then collect finished sends.
        False once nothing is out, nothing waits to be written and nothing more is to be claimed."""
        d, store = self.d, self.d.store
        room = self.cap - self.in_flight - d._out_elsewhere(self)   # pending rows go with the claim's transaction
        claim = self.claiming and room >= self.refill_at
        touch = False
        if claim and time.monotonic() >= self.next_state_check:
            self.next_state_check = time.monotonic() + STATE_CHECK_EVERY
            touch = True
            try:
                if store.campaign_state(self.campaign_id) not in SENDABLE:
                    claim = False
                    self.halt()             # paused or cancelled: what waits for a thread goes back untouched
            except TransientError as exc:
                claim, self.drained, self.interrupted = False, True, exc
        if self.suppress:
            entries, self.suppress = self.suppress, []
            d._patiently("adding to the suppression list", lambda: store.suppress(entries), within=d.settings.stale_after)
        if claim or (self.pending and (self.in_flight == 0 or len(self.pending) >= self.refill_at
                                       or self.stop is not None)):
            rows, self.pending = self.pending, []
            now = d.clock()
            try:
                claimed, sup = store.exchange(self.batch_id, rows, room if claim else 0, now, touch=touch)
            except TransientError as exc:
                # The database went away: write what was sent (waiting for the database), finish what is in
                # flight, then let the task be retried for the rest of the batch.
                if rows:
                    d._record(rows, again=True)
                claimed, sup, self.drained, self.interrupted = [], {}, True, exc
                if claim:   # the claim may have committed before the connection dropped: finish gives it back
                    self.unseen_claim = now
            if claim and not claimed and self.interrupted is None:
                self.drained = True
            if claimed:
                decided, to_send = d._decide(self.ctx, claimed, sup, now, self.result)
                self._note(decided)
                unit = self.unit
                for group in (to_send[i:i + unit] for i in range(0, len(to_send), unit)):
                    d.senders.submit(self.run, self.ctx, group)
                    self.in_flight += len(group)
        if self.in_flight == 0:
            if self.claiming and not claim and not self.pending:
                d._wait_for_room()        # the other passes of the process hold the room: until they free some
            return bool(self.pending) or not (self.drained or self.stop is not None or self.give_back)
        finished = self.run.finished
        try:
            items = [finished.get(timeout=COLLECT_EVERY)]
        except queue.Empty:
            return True
        while True:
            try:
                items.append(finished.get_nowait())
            except queue.Empty:
                break
        sent_back: list[tuple[list[Claimed], float, SendResult]] = []
        for group, _, _ in items:
            self.in_flight -= len(group)
        d._room_freed()
        for group, started, res in items:
            if isinstance(res, BaseException):
                raise res
            if res is None or res is _HALTED:   # not sent: the batch halted, or no rate-limit slot soon enough
                self.give_back.extend(m.id for m in group)
                if res is None:                 # started carries the wait for the slot
                    self.soonest = started if self.soonest is None else min(self.soonest, started)
            else:
                sent_back.append((group, started, res))
        rows, stop_reason, sup_entries = d._outcomes(self.ctx, sent_back, self.result)
        self.suppress.extend(sup_entries)
        self._note(rows)
        if stop_reason and self.stop is None:
            self.stop = stop_reason
            d._halt_campaign(self.campaign_id)
        return True

    def halt(self) -> None:
        """Claim no more, and give back unsent what waits for a sending thread (any thread may call it)."""
        self.drained = True
        self.run.halted.set()

    def _note(self, rows: list[Row]) -> None:
        for r in rows:
            if r.status == Status.DEFERRED.value and r.not_before is not None:
                due = max(0.0, (r.not_before - self.d.clock()).total_seconds())
                if due < SHORT_REQUEUE:
                    self.soonest = due if self.soonest is None else min(self.soonest, due)
        self.pending.extend(rows)

    def _give_back_unseen(self, claimed_at: datetime) -> None:
        """Messages claimed by an exchange that failed after its commit were never sent: back to queued for the
        task's retry, rather than left ``sending`` for the reconciler to call ``unknown``."""
        d = self.d
        try:
            n = d._patiently("giving back a claim never read",
                             lambda: d.store.unclaim(self.batch_id, claimed_at, d.clock()), within=d.settings.stale_after)
        except TransientError as exc:
            log.warning("batch %d: %s; messages of a claim never read are left to the reconciler", self.batch_id, exc)
            return
        if n:
            log.warning("batch %d: %d messages claimed as the database went away were given back unsent",
                        self.batch_id, n)

    def finish(self) -> BatchResult:
        """After the last ``step``: give back what was not sent, stop the campaign or re-enqueue the batch for its
        retries due soon, and complete the campaign when nothing of it is left open."""
        d, store, result = self.d, self.d.store, self.result
        if self.give_back:
            store.requeue(self.give_back, d.clock())
            result.given_back += len(self.give_back)
        if self.interrupted is not None:
            if self.unseen_claim is not None:
                self._give_back_unseen(self.unseen_claim)
            raise self.interrupted
        if self.stop is not None:
            store.set_state(self.campaign_id, CampaignState.STOPPED, self.stop, only_from=[CampaignState.RUNNING])
            log.error("campaign %s stopped: %s", self.ctx.campaign.name, self.stop)
            result.stopped = self.stop
        elif self.soonest is not None:
            result.requeue_in = self.soonest
            d.queue.send_batches([(self.batch_id, batch_label(self.ctx.campaign.name, self.seq, self.total))],
                                 countdown=self.soonest)
        store.complete_if_done(self.campaign_id)
        return result


class _Senders:
    """The sending threads: each takes (batch run, campaign context, group) off one work queue and runs
    ``work`` on it. Lighter than a ThreadPoolExecutor (no Future per request); started on first use, so a
    forked worker process starts its own."""

    def __init__(self, size: int, work: Callable[[_Run, _Ctx, list[Claimed]], None]) -> None:
        self._size = size
        self._work = work
        self._queue: queue.SimpleQueue[tuple[_Run, _Ctx, list[Claimed]]] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def submit(self, run: _Run, ctx: _Ctx, group: list[Claimed]) -> None:
        if len(self._threads) < self._size:
            with self._lock:
                while len(self._threads) < self._size:
                    t = threading.Thread(target=self._run, name=f"send-{len(self._threads) + 1}", daemon=True)
                    t.start()
                    self._threads.append(t)
        self._queue.put((run, ctx, group))

    def _run(self) -> None:
        get, work = self._queue.get, self._work
        while True:
            work(*get())


def _describe(res: SendResult) -> str:
    parts = []
    if res.status_code is not None:
        parts.append(f"HTTP {res.status_code}")
    if res.provider_code:
        parts.append(res.provider_code)
    if res.detail:
        parts.append(res.detail[:300])
    return " ".join(parts) or res.outcome.value


__all__ = ["Dispatcher", "BatchResult", "backoff"]
