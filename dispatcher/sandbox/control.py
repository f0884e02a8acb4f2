"""The control API (``/_sandbox/...``): configure behaviour, read the log and stats, reset.

Not part of any provider, and never subject to latency, faults, auth or throttling.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dispatcher.sandbox.base import Sandbox
from dispatcher.sandbox.state import PROVIDERS, ConfigError, iso


def _provider_filter(request: Request) -> tuple[str | None, Response | None]:
    provider = request.query_params.get("provider") or None
    if provider is not None and provider not in PROVIDERS:
        return None, JSONResponse({"error": f"provider: unknown {provider!r} (one of {', '.join(PROVIDERS)})"},
                                  status_code=400)
    return provider, None


def routes(sb: Sandbox) -> list[Route]:
    state = sb.state

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def reset(request: Request) -> Response:
        sb.reset()
        return JSONResponse({"ok": True})

    async def set_config(request: Request) -> Response:
        raw = await request.body()
        try:
            patch: Any = json.loads(raw) if raw else {}
        except ValueError:
            return JSONResponse({"error": "config: body is not valid JSON"}, status_code=400)
        try:
            state.configure(patch)
        except ConfigError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"ok": True, "config": state.config.as_dict()})

    async def get_config(request: Request) -> Response:
        return JSONResponse(state.config.as_dict())

    async def requests(request: Request) -> Response:
        provider, problem = _provider_filter(request)
        if problem is not None:
            return problem
        return JSONResponse({"requests": [
            {**entry, "headers": {k.decode("latin-1"): v.decode("latin-1") for k, v in entry["headers"]},
             "received_at": iso(entry["received_at"])}
            for entry in state.log if provider is None or entry["provider"] == provider
        ]})

    async def receipts(request: Request) -> Response:
        provider, problem = _provider_filter(request)
        if problem is not None:
            return problem
        return JSONResponse({"receipts": [
            {**entry, "sent_at": iso(entry["sent_at"])}
            for entry in state.receipt_log if provider is None or entry["provider"] == provider
        ], "pending": sb.receipts.pending})

    async def stats(request: Request) -> Response:
        return JSONResponse({
            "by_provider": state.stats,
            "requests": sum(s["requests"] for s in state.stats.values()),
            "accepted": sum(s["accepted"] for s in state.stats.values()),
            "duplicates": state.duplicates,
            "receipts_pending": sb.receipts.pending,
            "lists": len(state.lists),
        })

    return [
        Route("/_sandbox/health", health, methods=["GET"]),
        Route("/_sandbox/reset", reset, methods=["POST"]),
        Route("/_sandbox/config", set_config, methods=["POST"]),
        Route("/_sandbox/config", get_config, methods=["GET"]),
        Route("/_sandbox/requests", requests, methods=["GET"]),
        Route("/_sandbox/receipts", receipts, methods=["GET"]),
        Route("/_sandbox/stats", stats, methods=["GET"]),
    ]
