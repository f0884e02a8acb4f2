"""What every provider endpoint shares: the request pipeline and the ``Dialect`` seam.

A provider request goes, in this order, through:

1. ``latency_ms`` (sleep),
2. scripted transport faults (``fail_next``, ``outage_seconds``, ``failure_rate``): a bare
   ``{"error": ...}`` with the scripted status, whatever the provider,
3. the provider's auth check -> its unauthorized answer,
4. the provider's throttle (``throttle_rps``, token bucket) -> its throttle answer,
5. a body that is not a JSON object -> its validation answer,
6. the endpoint handler: field validation, scripted numbers, billing, acceptance.

Then the request is counted in the stats and, when ``record`` is on, logged without credential
headers. A ``Dialect`` says how one provider answers steps 3 to 5.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from typing import Any, Awaitable, Callable, ClassVar, Mapping

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from dispatcher.sandbox.receipts import Receipts
from dispatcher.sandbox.state import State

SECRET_HEADERS = frozenset({b"authorization", b"proxy-authorization", b"cookie", b"x-api-key", b"x-secret",
                            b"x-team-id"})
NOT_JSON = object()  # the body was not valid JSON

Outcome = str | None  # "accepted", "rejected", or None for a call that is neither (lists, fixtures)
Handler = Callable[["Sandbox", Request, Any], Awaitable[tuple[Response, Outcome]]]


class Sandbox:
    """The running sandbox: its state and its receipt poster."""

    def __init__(self, *, latency_ms: float = 0.0) -> None:
        self.state = State(latency_ms=latency_ms)
        self.receipts = Receipts(self.state)

    def reset(self) -> None:
        self.receipts.cancel_all()
        self.state.reset()

    def behaviour(self, number: str | None) -> str | None:
        """The scripted behaviour of an E.164 number (``invalid``, ``slow``, ...), if any."""
        numbers = self.state.config.numbers
        return numbers.get(number) if numbers and number else None

    async def slow(self, behaviour: str | None) -> None:
        if behaviour == "slow":
            await asyncio.sleep(self.state.config.slow)

    def receipt_failed(self, behaviour: str | None) -> bool:
        return behaviour == "undeliverable" or self.state.config.receipt_status == "failed"

    def send_receipt(self, provider: str, url: str | None, payload: dict[str, Any], *,
                     after: float = 0.0, method: str = "POST") -> None:
        """Post ``payload`` to ``url`` ``receipts.delay_ms`` (+ ``after`` seconds) from now, if receipts are on."""
        config = self.state.config
        if url and config.receipts_enabled:
            self.receipts.schedule(provider, url, payload, delay=config.receipt_delay + after, method=method)


class Dialect:
    """How one provider authenticates and answers the failures every endpoint shares."""

    name: ClassVar[str]

    def authorized(self, request: Request, expected: Mapping[str, str | None]) -> bool:
        raise NotImplementedError

    def unauthorized(self, body: Any) -> Response:
        raise NotImplementedError

    def throttled(self, retry_after: float, body: Any) -> Response:
        raise NotImplementedError

    def malformed(self, body: Any) -> Response:
        """The answer to a body that is not a JSON object (``body`` is ``NOT_JSON`` when unparsable)."""
        raise NotImplementedError

    def loggable(self, body: dict[str, Any]) -> Any:
        """The body as the request log keeps it (a dialect drops credentials carried in it)."""
        return body


def matches(given: str | None, expected: str | None) -> bool:
    """A credential passes when present and equal to the expected one (any value when none is set)."""
    return bool(given) and (expected is None or given == expected)


def retry_after_header(seconds: float) -> dict[str, str]:
    """``Retry-After`` in whole seconds (HTTP allows no fractions), at least 1."""
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


def fault_response(status: int) -> Response:
    return JSONResponse({"error": f"sandbox: scripted failure (HTTP {status})"}, status_code=status)


def endpoint(sb: Sandbox, dialect: Dialect, handler: Handler, *,
             body: bool = True) -> Callable[[Request], Awaitable[Response]]:
    """A Starlette endpoint running ``handler`` behind the shared pipeline (see module docstring)."""
    state = sb.state
    name = dialect.name

    async def view(request: Request) -> Response:
        received = time.time()
        generation = state.generation
        raw = b""
        payload: Any = None
        if body:
            raw = await request.body()
            try:
                payload = json.loads(raw) if raw else None
            except ValueError:
                payload = NOT_JSON
        latency = state.config.latency
        if latency:
            await asyncio.sleep(latency)
        outcome: Outcome
        status = state.fault(name)
        if status is not None:
            response, outcome = fault_response(status), "faults"
        elif not dialect.authorized(request, state.config.credentials[name]):
            response, outcome = dialect.unauthorized(payload), "unauthorized"
        elif wait := state.throttle(name):
            response, outcome = dialect.throttled(wait, payload), "throttled"
        elif body and not isinstance(payload, dict):
            response, outcome = dialect.malformed(payload), "rejected"
        else:
            response, outcome = await handler(sb, request, payload)
        if state.generation != generation:
            # A reset came while this request waited (a `slow` number, latency): it belongs to the state before,
            # and must not show up in the log or counts of whoever reset.
            return response
        stats = state.stats[name]
        stats["requests"] += 1
        if outcome:
            stats[outcome] += 1
        if state.config.record:
            scope = request.scope
            if payload is NOT_JSON:
                logged: Any = raw.decode("utf-8", "replace")[:2000]
            elif isinstance(payload, dict):
                logged = dialect.loggable(payload)
            else:
                logged = payload
            state.log.append({
                "provider": name,
                "method": scope["method"],
                "path": scope["path"],
                "query": scope["query_string"].decode("latin-1"),
                "headers": [kv for kv in scope["headers"] if kv[0] not in SECRET_HEADERS],  # decoded when read
                "json": logged,
                "status": response.status_code,
                "received_at": received,
            })
        return response

    view.__name__ = getattr(handler, "__name__", "view")
    return view
