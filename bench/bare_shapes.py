"""Bare in the dispatcher's shape: the end-to-end benchmark's bare requests from one process, and the same requests
split over two processes (as the dispatcher's two worker processes send them), against the sandbox.

What the dispatcher's own HTTP traffic could reach with no dispatcher work at all: if two processes of bare are no
faster than one, the dispatcher, which sends the same requests from two processes and does more for each, cannot be
faster than bare either. Each round runs every shape once, so a machine whose speed drifts touches them all alike.
Everything runs on 127.0.0.1 and stops by itself.

    .venv/bin/python bench/bare_shapes.py [--latency 20] [--requests 40000] [--rounds 2]
                                          [--one 128] [--two 64 80 96 128]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from e2e_throughput import Stack, bare
from procfs import machine


def _child(url: str, n: int, width: int, go: Any, out: Any) -> None:
    go.wait()
    out.put(bare(url, n, width))


def split(stack: Stack, n: int, width: int, processes: int = 2) -> float:
    """``n`` requests over ``processes`` processes of ``width`` threads each, started together; requests a second."""
    ctx = mp.get_context("fork")
    go, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_child, args=(stack.sandbox, n // processes, width, go, out)) for _ in range(processes)]
    for p in procs:
        p.start()
    time.sleep(1.0)                     # imports and clients made before the clock starts
    t0 = time.perf_counter()
    go.set()
    for p in procs:
        p.join()
    if any(p.exitcode for p in procs):
        raise SystemExit("a bare process failed")
    return (n // processes) * processes / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--latency", type=float, default=20.0, help="the sandbox's answer latency, ms")
    ap.add_argument("--requests", type=int, default=40_000, help="requests per shape and round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--one", type=int, nargs="+", default=[128], help="widths for one process")
    ap.add_argument("--two", type=int, nargs="+", default=[64, 80, 96, 128], help="widths for each of two processes")
    ap.add_argument("--redis", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"))
    a = ap.parse_args()
    print(f"machine: {machine()}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-shapes-"))
    stack = Stack(tmp, a.redis, a.latency, max(a.two))
    results: dict[str, list[float]] = {}
    try:
        for _ in range(a.rounds):
            for w in a.one:
                results.setdefault(f"1 process x {w} threads", []).append(bare(stack.sandbox, a.requests, w))
            for w in a.two:
                results.setdefault(f"2 processes x {w} threads", []).append(split(stack, a.requests, w))
    finally:
        stack.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"latency {a.latency:g} ms, {a.requests:,} requests a shape a round:")
    for shape, rates in results.items():
        print(f"  {shape}: " + " / ".join(f"{r:,.0f}" for r in rates) + " requests/s")


if __name__ == "__main__":
    main()
