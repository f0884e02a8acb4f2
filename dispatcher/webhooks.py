"""Provider callbacks: delivery receipts and inbound replies. Record first, process after.

A request is checked (token, size, JSON), stored as one ``WebhookEvent`` row and answered at once:
Skycore wants its 200 within 10 s and every provider retries what it thinks was lost.
``process_pending`` then turns the stored events, oldest first, into message states and
suppression entries; the beat task runs it every 5 s and the receiver also runs it in the
background right after recording.

Routes (every ``/webhooks`` route wants the deployment's token as ``?token=`` or
``X-Webhook-Token``; without it: 401 and nothing else)::

    POST      /webhooks/dropcowboy           Drop Cowboy webhook (receipt)
    GET|POST  /webhooks/fonedynamics         Fone Dynamics delivery receipt (GET: query parameters)
    POST      /webhooks/skycore              Skycore postback (receipt)
    POST      /webhooks/{provider}/inbound   an inbound reply (STOP and friends suppress the number)
    GET       /healthz                       {"ok": true} when the database answers

Receipt rules (each event is one transaction, claimed with a conditional UPDATE, so two processors
or a repeated event change nothing twice):

* the message is found by our id (``foreign_id`` / ``ExternalId``) or by the provider's id
  (``drop_id`` / ``MessageSid`` / ``tracking-id``), among the campaigns of that provider;
* ``sent`` or ``unknown`` become ``delivered`` or ``failed``; ``failed`` may still become
  ``delivered`` (delivered is what the handset saw); ``delivered`` never changes again;
* a message still ``sending`` (the worker has not recorded the answer yet), or not found yet,
  leaves the event pending for a later pass (unmatched ones for ``UNMATCHED_GRACE``);
* Drop Cowboy ``dnc: true`` and Skycore ``E114`` put the number on the suppression list.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, AsyncIterator, Awaitable, Callable, Mapping
from urllib.parse import parse_qsl

from sqlalchemy import select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .errors import InputError, TransientError
from .models import Status, utcnow
from .phones import InvalidNumber, mask, normalise
from .settings import get_settings
from .store import C, M, S, W, Store

__all__ = ["create_app", "process_pending", "serve", "STOP_WORDS"]

log = logging.getLogger("dispatcher.webhooks")

RECEIPT_PROVIDERS = ("dropcowboy", "fonedynamics", "skycore")
REPLY_PROVIDERS = ("dripcel", "dropcowboy", "fonedynamics", "skycore")
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
# Field names of an inbound reply, first match wins: Drop Cowboy, Fone Dynamics, Skycore, then common ones.
REPLY_FROM_KEYS = ("phone_number", "From", "from", "phone", "msisdn", "sender")
REPLY_TEXT_KEYS = ("message", "body", "Text", "text", "message-text", "Body")

UNMATCHED_GRACE = timedelta(minutes=5)      # a receipt may overtake the worker recording the provider's id
PAGE = 200
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)    # background passes while events wait for a message in `sending`
TOKEN_CHARS = re.compile(r"[A-Za-z0-9._~-]+")  # goes into callback URLs unquoted

_DELIVERED = {"success", "delivered", "delivrd"}
_FAILED = {"failure", "failed", "undelivered", "undeliv", "rejected", "expired"}


# ---------------------------------------------------------------------------- the receiver

def create_app(store: Store, token: str, *, max_body: int = 64 * 1024,
               process_in_background: bool = True) -> Starlette:
    """The webhook receiver. ``token`` is the deployment's ``WEBHOOK_TOKEN`` (required).

    With ``process_in_background`` (the default) every recorded event triggers a processing
    pass in this process; without it only ``process_pending`` callers (the beat task) do.
    Raises ``ValueError`` for an empty token.
    """
    if not token:
        raise ValueError("create_app needs a non-empty webhook token")
    expected = token.encode()
    pump = _Pump(store) if process_in_background else None

    def authorised(request: Request) -> bool:
        given = [request.query_params.get("token"), request.headers.get("x-webhook-token")]
        ok = False
        for value in given:
            if value is not None:
                ok |= hmac.compare_digest(value.encode(), expected)
        return ok

    def endpoint(provider: str | None, kind: str) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            if not authorised(request):
                return Response(status_code=401)
            name = provider or request.path_params["provider"]
            if name not in REPLY_PROVIDERS:
                return JSONResponse({"error": f"unknown provider {name!r}"}, status_code=404)
            if request.method == "GET":
                payload: dict[str, Any] = {k: v for k, v in request.query_params.items() if k != "token"}
            else:
                try:
                    payload = _parse(await _read(request, max_body), request.headers.get("content-type", ""))
                except _TooLarge:
                    return JSONResponse({"error": f"body larger than {max_body} bytes"}, status_code=413)
                except _BadBody as exc:
                    return JSONResponse({"error": str(exc)}, status_code=400)
            if kind == "reply" and (problem := _reply_problem(payload)):
                return JSONResponse({"error": problem}, status_code=400)
            try:
                event_id = await run_in_threadpool(_record, store, name, kind, payload)
            except TransientError:
                log.warning("%s %s not recorded: database unavailable (answered 503, the provider retries)", name, kind)
                return JSONResponse({"error": "database unavailable, try again later"}, status_code=503)
            log.info("%s %s recorded as event %d", name, kind, event_id)
            if pump is not None:
                pump.kick()
            return JSONResponse({"ok": True, "event": event_id})

        return handle

    async def healthz(request: Request) -> Response:
        try:
            await run_in_threadpool(_ping, store)
        except TransientError:
            return JSONResponse({"ok": False, "error": "database unavailable"}, status_code=503)
        return JSONResponse({"ok": True})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if pump is not None:
            await pump.stop()

    routes = [Route("/healthz", healthz, methods=["GET"])]
    for provider in RECEIPT_PROVIDERS:
        methods = ["GET", "POST"] if provider == "fonedynamics" else ["POST"]
        routes.append(Route(f"/webhooks/{provider}", endpoint(provider, "receipt"), methods=methods))
    routes.append(Route("/webhooks/{provider}/inbound", endpoint(None, "reply"), methods=["POST"]))
    return Starlette(routes=routes, lifespan=lifespan)


def serve(host: str = "127.0.0.1", port: int = 8026) -> None:
    """Run the receiver with uvicorn until interrupted (settings from the environment).

    Raises ``InputError`` when ``WEBHOOK_TOKEN`` is unset or not URL-safe: it is the only thing
    that keeps strangers from marking messages delivered or suppressing numbers.
    """
    import uvicorn

    from .runtime import store as make_store
    from .store import init_db

    settings = get_settings()
    token = settings.webhook_token.get_secret_value() if settings.webhook_token else ""
    if not token:
        raise InputError("WEBHOOK_TOKEN is not set: the webhook receiver will not start without it. Set it to a long "
                         "random value (python -c 'import secrets; print(secrets.token_urlsafe(32))') in the "
                         "environment of `dispatcher webhooks` and of the workers, with WEBHOOK_BASE_URL.")
    if not TOKEN_CHARS.fullmatch(token):
        raise InputError("WEBHOOK_TOKEN may only contain letters, digits and . _ ~ - (it travels in callback URLs); "
                         "python -c 'import secrets; print(secrets.token_urlsafe(32))' makes a good one")
    store = make_store(settings)
    init_db(store.engine)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if len(token) < 16:
        log.warning("WEBHOOK_TOKEN is short (%d characters): use 32 or more random characters", len(token))
    log.info("webhook receiver on http://%s:%d (callbacks go to %s)", host, port,
             settings.webhook_base_url or "nowhere: WEBHOOK_BASE_URL is unset, workers will not ask for receipts")
    # access_log off: the token is in every request's query string
    uvicorn.run(create_app(store, token), host=host, port=port, log_level="info", access_log=False,
                server_header=False)


class _TooLarge(Exception):
    pass


class _BadBody(Exception):
    pass


async def _read(request: Request, cap: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise _BadBody("invalid Content-Length")
        if int(declared) > cap:
            raise _TooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > cap:         # chunked bodies, or a Content-Length that lied
            raise _TooLarge
    return bytes(body)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse(body: bytes, content_type: str) -> dict[str, Any]:
    """A JSON object (or a form, when the request says so); ``_BadBody`` otherwise."""
    if not body.strip():
        raise _BadBody("empty body: expected a JSON object")
    if content_type.split(";")[0].strip().lower() == "application/x-www-form-urlencoded":
        try:
            return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        except (UnicodeDecodeError, ValueError):
            raise _BadBody("malformed form body") from None
    try:
        payload = json.loads(body, parse_constant=_no_constants)
    except (ValueError, RecursionError):
        raise _BadBody("malformed JSON") from None
    if not isinstance(payload, dict):
        raise _BadBody("expected a JSON object")
    return payload


def _reply_problem(payload: Mapping[str, Any]) -> str | None:
    if not _first_text(payload, REPLY_FROM_KEYS) or _first_text(payload, REPLY_TEXT_KEYS) is None:
        return ("an inbound reply needs the sender's number (phone_number, From or from) "
                "and the text (message, body, Text)")
    return None


def _record(store: Store, provider: str, kind: str, payload: dict[str, Any]) -> int:
    with store.tx() as conn:
        return int(conn.execute(W.insert().values(provider=provider, kind=kind, payload=payload, received_at=utcnow())
                                .returning(W.c.id)).scalar_one())


def _ping(store: Store) -> None:
    with store.tx() as conn:
        conn.execute(text("SELECT 1"))


class _Pump:
    """Processing passes in the receiver: one at a time, again when more events came in meanwhile,
    and a few delayed passes while events wait for a message the worker has not recorded yet.
    The beat task picks up whatever is still pending after that."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.wanted = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def kick(self) -> None:
        self.wanted.set()
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        delays = iter(RETRY_DELAYS)
        while True:
            self.wanted.clear()
            try:
                waiting = (await run_in_threadpool(_process, self.store, limit=1000)).waiting
            except Exception as exc:  # noqa: BLE001 - the beat task tries again in 5 s
                log.warning("background webhook processing failed (%s); the beat task retries", type(exc).__name__)
                waiting = 0
            if self.wanted.is_set():
                delays = iter(RETRY_DELAYS)
                continue
            delay = next(delays, None) if waiting else None
            if delay is None:
                return
            try:
                await asyncio.wait_for(self.wanted.wait(), delay)
                delays = iter(RETRY_DELAYS)
            except asyncio.TimeoutError:
                pass


# ---------------------------------------------------------------------------- processing

@dataclass(frozen=True, slots=True)
class Receipt:
    """A delivery receipt in the provider's words, reduced to what we act on."""
    our_id: int | None              # foreign_id / ExternalId: our message id
    provider_id: str | None         # drop_id / MessageSid / tracking-id
    phone: str | None               # the recipient as the receipt writes it
    delivered: bool | None          # None: an interim status (queued, enroute ...): nothing to change
    status: str
    reason: str | None
    code: str | None
    cost: float | None
    suppress: str | None            # suppression source when the number must not be contacted again


@dataclass
class PassResult:
    processed: int = 0
    waiting: int = 0


def process_pending(store: Store, *, limit: int = 1000) -> int:
    """Process up to ``limit`` unprocessed events, oldest first; returns how many were processed.

    Events that must wait (their message is still ``sending``, or not found yet) stay unprocessed
    and do not count. Raises ``TransientError`` when the database is unavailable.
    """
    return _process(store, limit=limit).processed


def _process(store: Store, *, limit: int) -> PassResult:
    result = PassResult()
    after = 0
    seen = 0
    while seen < limit:
        with store.tx() as conn:
            rows = conn.execute(select(W.c.id, W.c.provider, W.c.kind, W.c.payload, W.c.received_at)
                                .where(W.c.processed_at.is_(None), W.c.id > after)
                                .order_by(W.c.id).limit(min(PAGE, limit - seen))).all()
        if not rows:
            break
        for event_id, provider, kind, payload, received_at in rows:
            after = event_id
            seen += 1
            done = _process_event(store, int(event_id), provider, kind, payload, received_at)
            if done is True:
                result.processed += 1
            elif done is False:
                result.waiting += 1
    return result


def _process_event(store: Store, event_id: int, provider: str, kind: str, payload: Any,
                   received_at: datetime) -> bool | None:
    """True: processed now; False: left pending for a later pass; None: another processor had it.

    The event is claimed (``processed_at`` set where it was NULL) in the transaction that applies
    it; an event that must wait is given back in that same transaction, keeping any suppression.
    """
    now = utcnow()
    try:
        with store.tx() as conn:
            claimed = conn.execute(update(W).where(W.c.id == event_id, W.c.processed_at.is_(None))
                                   .values(processed_at=now)).rowcount
            if not claimed:
                return None
            outcome: str | None
            if not isinstance(payload, dict):
                outcome = "ignored: payload is not an object"
            elif kind == "receipt":
                outcome = _apply_receipt(store, conn, provider, payload, received_at, now)
            elif kind == "reply":
                outcome = _apply_reply(store, conn, payload, received_at)
            else:
                outcome = f"ignored: unknown kind {kind!r}"
            if outcome is None:
                conn.execute(update(W).where(W.c.id == event_id).values(processed_at=None))
                return False
            conn.execute(update(W).where(W.c.id == event_id).values(result=outcome[:500]))
    except TransientError:
        raise
    except Exception as exc:  # noqa: BLE001 - a payload we did not foresee must not come back every pass
        log.error("event %d (%s %s) could not be processed: %s", event_id, provider, kind, type(exc).__name__)
        with store.tx() as conn:
            conn.execute(update(W).where(W.c.id == event_id, W.c.processed_at.is_(None))
                         .values(processed_at=now, result=f"error: {type(exc).__name__}"))
        return True
    log.info("event %d (%s %s): %s", event_id, provider, kind, outcome)
    return True


# ---- receipts

def parse_receipt(provider: str, p: Mapping[str, Any]) -> Receipt | None:
    """The receipt in a provider's payload (docs/sandbox.md, shared/PROVIDERS.md); None for an unknown provider."""
    if provider == "dropcowboy":
        status = _text(p.get("status")) or ""
        costs = [_number(p.get(k)) for k in ("product_cost", "compliance_fee", "tts_fee")]
        known = [c for c in costs if c is not None]
        return Receipt(our_id=_int(p.get("foreign_id")), provider_id=_text(p.get("drop_id")),
                       phone=_text(p.get("phone_number")), delivered=_state(status), status=status,
                       reason=_text(p.get("reason")), code=None,
                       cost=round(sum(known), 6) if known else None,
                       suppress="dropcowboy-dnc" if _flag(p.get("dnc")) else None)
    if provider == "fonedynamics":
        status = _text(p.get("Status")) or ""
        code = _text(p.get("ErrorCode"))
        return Receipt(our_id=_int(p.get("ExternalId")), provider_id=_text(p.get("MessageSid")),
                       phone=_text(p.get("To")), delivered=_state(status), status=status,
                       reason=code, code=code, cost=None, suppress=None)
    if provider == "skycore":
        status = _text(p.get("status")) or ""
        code = (_text(p.get("error-code")) or "").upper() or None
        return Receipt(our_id=None, provider_id=_text(p.get("tracking-id")), phone=_text(p.get("to")),
                       delivered=_state(status), status=status, reason=_text(p.get("error-info")) or code,
                       code=code, cost=None, suppress="skycore-E114" if code == "E114" else None)
    return None


def _apply_receipt(store: Store, conn: Connection, provider: str, payload: Mapping[str, Any],
                   received_at: datetime, now: datetime) -> str | None:
    """What the receipt did (the event's result), or None when it must wait for a later pass."""
    r = parse_receipt(provider, payload)
    if r is None:
        return f"ignored: no receipts from {provider}"
    msg = _find_message(conn, provider, r)
    notes: list[str] = []
    if r.suppress:
        phone = msg["phone"] if msg is not None else _e164(r.phone)
        if phone is None:
            notes.append(f"{r.suppress}: no valid number to suppress")
        else:
            why = (f"{provider} receipt: number on a do-not-contact list" if r.suppress == "dropcowboy-dnc"
                   else f"{provider} receipt: {r.code} {r.reason or ''}".strip())
            added = _suppress(store, conn, phone, r.suppress, f"{why} ({received_at:%Y-%m-%d})")
            notes.append(f"{mask(phone)} {'suppressed' if added else 'already suppressed'} ({r.suppress})")
    tail = "".join(f"; {n}" for n in notes)
    if msg is None:
        if r.our_id is None and r.provider_id is None:
            return "ignored: the receipt names no message" + tail
        if now - received_at < UNMATCHED_GRACE:
            return None
        return "ignored: no matching message" + tail
    mid, status = msg["id"], msg["status"]
    if status == Status.SENDING.value:
        return None
    if r.delivered is None:
        return f"interim status {r.status!r}: message {mid} stays {status}" + tail
    values: dict[str, Any] = {"updated_at": now, "provider_code": r.code[:64] if r.code else None}
    if not msg["provider_message_id"] and r.provider_id and len(r.provider_id) <= 128:
        values["provider_message_id"] = r.provider_id
    if r.cost is not None:
        values["cost"] = r.cost
    if r.delivered:
        allowed = (Status.SENT.value, Status.UNKNOWN.value, Status.FAILED.value)
        values.update(status=Status.DELIVERED.value, reason=None)
    else:
        allowed = (Status.SENT.value, Status.UNKNOWN.value)
        values.update(status=Status.FAILED.value, reason=f"undelivered ({provider} receipt: {r.reason or r.status})")
    moved = conn.execute(update(M).where(M.c.id == mid, M.c.status.in_(allowed)).values(**values)).rowcount
    if moved:
        return f"message {mid} ({mask(msg['phone'])}) {status} -> {values['status']}" + tail
    if status == Status.DELIVERED.value:
        what = "duplicate" if r.delivered else "failure after delivery"
        return f"ignored ({what}): message {mid} is delivered" + tail
    return f"ignored: message {mid} is {status}" + tail


def _find_message(conn: Connection, provider: str, r: Receipt) -> Mapping[str, Any] | None:
    q = (select(M.c.id, M.c.status, M.c.phone, M.c.provider_message_id).join(C, C.c.id == M.c.campaign_id)
         .where(C.c.provider == provider))
    phone = _e164(r.phone)
    candidates = []
    if r.our_id is not None:
        candidates.append(q.where(M.c.id == r.our_id))
    if r.provider_id:
        candidates.append(q.where(M.c.provider_message_id == r.provider_id).order_by(M.c.id.desc()).limit(1))
    for query in candidates:
        row = conn.execute(query).mappings().first()
        # a receipt naming another number is not about this message (a stale or foreign id)
        if row is not None and (phone is None or row["phone"] == phone):
            return row
    return None


# ---- replies

def _apply_reply(store: Store, conn: Connection, payload: Mapping[str, Any], received_at: datetime) -> str:
    phone = _e164(_first_text(payload, REPLY_FROM_KEYS))
    if phone is None:
        return "ignored: the reply's sender is not a valid number"
    word = stop_word(_first_text(payload, REPLY_TEXT_KEYS) or "")
    if word is None:
        return f"reply from {mask(phone)} recorded"
    added = _suppress(store, conn, phone, "stop-reply", f"replied {word} on {received_at:%Y-%m-%d}")
    return f"opt-out ({word}): {mask(phone)} {'suppressed' if added else 'was already suppressed'}"


def stop_word(text: str) -> str | None:
    """The opt-out keyword a reply consists of (trimmed, any case, trailing . or ! allowed), else None."""
    word = text.strip().rstrip(".!").strip().upper()
    return word if word in STOP_WORDS else None


# ---- SQL helpers (suppression entries keep the first reason a number got)

def _suppress(store: Store, conn: Connection, phone: str, source: str, reason: str) -> bool:
    insert = (postgresql.insert if store.is_pg else sqlite.insert)(S)
    stmt = insert.values(phone=phone, source=source, reason=reason, created_at=utcnow()).on_conflict_do_nothing(
        index_elements=["phone"]).returning(S.c.phone)
    return conn.execute(stmt).first() is not None     # rowcount is -1 here with psycopg


# ---- reading payloads defensively (they are the provider's, or anyone's with the token)

def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    s = str(value).strip()
    return s or None


def _first_text(payload: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = payload.get(key)
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return str(value)
    return None


def _int(value: Any) -> int | None:
    """A message id: digits within the id column's range (PostgreSQL INTEGER), else None."""
    s = _text(value)
    if s is None or not (s.isascii() and s.isdigit()) or len(s) > 10:
        return None
    n = int(s)
    return n if 0 < n < 2 ** 31 else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(str(value)) if _text(value) else None
    except ValueError:
        return None


def _flag(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _state(status: str) -> bool | None:
    s = status.strip().lower()
    return True if s in _DELIVERED else False if s in _FAILED else None


def _e164(raw: str | None) -> str | None:
    """E.164 from a provider's number: ``+1...``, ``001...`` or Skycore's ``1...`` (no plus)."""
    if not raw:
        return None
    digits = raw.strip().replace(" ", "").replace("-", "")
    if digits.startswith("00"):
        digits = "+" + digits[2:]
    elif not digits.startswith("+"):
        digits = "+" + digits
    try:
        return normalise(digits, None).e164
    except (InvalidNumber, ValueError):
        return None


def main(argv: list[str] | None = None) -> None:
    """``python -m dispatcher.webhooks [--host 127.0.0.1] [--port 8026]``."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m dispatcher.webhooks", description="the webhook receiver")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8026, help="port to bind (default 8026)")
    args = parser.parse_args(argv)
    try:
        serve(host=args.host, port=args.port)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
