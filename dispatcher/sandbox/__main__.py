"""``python -m dispatcher.sandbox [--host 127.0.0.1] [--port 8025] [--latency-ms N]``."""

from __future__ import annotations

import argparse

from dispatcher.sandbox import run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m dispatcher.sandbox",
        description="Serve the four provider APIs (Drop Cowboy, Dripcel, Skycore, Fone Dynamics) and the "
                    "/_sandbox control API on one port. Contract: docs/sandbox.md.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8025, help="port to bind (default 8025)")
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="latency added to every provider answer, also after a reset (default 0)")
    args = parser.parse_args(argv)
    if args.latency_ms < 0:
        parser.error("--latency-ms must be >= 0")
    run(host=args.host, port=args.port, latency_ms=args.latency_ms)


if __name__ == "__main__":
    main()
