"""A local stand-in for the four SMS providers (Drop Cowboy, Dripcel, Skycore, Fone Dynamics).

``run()`` serves it with uvicorn; ``create_app()`` builds the ASGI app. The wire contract, the
scriptable behaviour and the control API are described in ``docs/sandbox.md``.
"""

from __future__ import annotations

from dispatcher.sandbox.app import create_app

__all__ = ["create_app", "run"]


def run(host: str = "127.0.0.1", port: int = 8025, latency_ms: float = 0.0) -> None:
    """Serve the sandbox on ``host:port`` until interrupted (single process, uvloop/httptools when installed)."""
    import uvicorn

    uvicorn.run(
        create_app(latency_ms=latency_ms),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=2,  # a scripted `slow` number must not hold a shutdown for 30 s
    )
