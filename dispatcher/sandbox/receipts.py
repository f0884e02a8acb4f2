"""Delivery receipts (webhooks, postbacks) posted from background tasks.

A provider answer never waits for a receipt: ``schedule`` starts a task that sleeps, then calls the
URL the request (or the config) named. Each attempt lands in ``State.receipt_log`` with the
receiver's status or the transport error, and in the provider's ``receipts_sent``/``receipts_failed``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from dispatcher.sandbox.state import State


class Receipts:
    def __init__(self, state: State) -> None:
        self.state = state
        self.client: httpx.AsyncClient | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    def schedule(self, provider: str, url: str, payload: dict[str, Any], *, delay: float,
                 method: str = "POST") -> None:
        """Call ``url`` with ``payload`` after ``delay`` seconds: JSON body for POST, query for GET."""
        task = asyncio.get_running_loop().create_task(self._deliver(provider, url, payload, delay, method))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    @property
    def pending(self) -> int:
        return len(self.tasks)

    def cancel_all(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        self.tasks.clear()

    async def aclose(self) -> None:
        self.cancel_all()
        if self.client is not None:
            await self.client.aclose()
            self.client = None

    async def _deliver(self, provider: str, url: str, payload: dict[str, Any], delay: float, method: str) -> None:
        if delay > 0:
            await asyncio.sleep(delay)
        if self.client is None:
            self.client = httpx.AsyncClient(timeout=10.0, follow_redirects=False)
        entry: dict[str, Any] = {"provider": provider, "url": url, "method": method, "json": payload,
                                 "status": None, "error": None, "sent_at": time.time()}
        state = self.state
        try:
            if method == "GET":
                params = {k: "" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
                          for k, v in payload.items() if not isinstance(v, dict)}
                # params= would replace a query the URL already has (a receiver's ?token=...): merge instead
                response = await self.client.get(httpx.URL(url).copy_merge_params(params))
            else:
                response = await self.client.post(url, json=payload)
            entry["status"] = response.status_code
            ok = 200 <= response.status_code < 300
        except httpx.HTTPError as exc:
            entry["error"] = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            ok = False
        state.stats[provider]["receipts_sent" if ok else "receipts_failed"] += 1
        state.receipt_log.append(entry)
