"""The sandbox ASGI app: the four provider APIs and the control API on one port.

A second, independent reading of the provider documents (``shared/seeds``, ``shared/PROVIDERS.md``);
the wire contract is ``docs/sandbox.md``. It must never import ``dispatcher.providers``.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

from starlette.applications import Starlette

from dispatcher.sandbox import control, dripcel, dropcowboy, fonedynamics, skycore
from dispatcher.sandbox.base import Sandbox


def create_app(*, latency_ms: float = 0.0) -> Starlette:
    """A fresh sandbox app; ``latency_ms`` is the default latency that a reset returns to."""
    sb = Sandbox(latency_ms=latency_ms)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await sb.receipts.aclose()

    app = Starlette(
        routes=[  # matched in order: the hot send paths first
            *dropcowboy.routes(sb),
            *dripcel.routes(sb),
            *skycore.routes(sb),
            *fonedynamics.routes(sb),
            *control.routes(sb),
        ],
        lifespan=lifespan,
    )
    app.state.sandbox = sb
    return app
