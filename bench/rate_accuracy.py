"""How exactly does the shared Redis limiter hold its rates across worker processes?

Four worker processes (``--processes``) acquire from two keys at once, "50/s" and "20/s",
one thread per key in every process, for ``--duration`` seconds (default 20, at most 300).
Each thread works like a sending worker: acquire with ``--max-wait``; when granted, sleep
``wait`` and record the send time; when refused, sleep ``wait`` as the re-queued task's
countdown. Per key it prints the mean rate (first to last send), the busiest sliding 1 s
window, the share of the limit used over the run and Redis round trips per send, with the
targets, then the machine. Exits 1 when a target is missed.

Send times are taken after the sleep, as a provider would see them; the busiest window of
the granted slots themselves (before the OS wakes the process, late on a busy machine) is
shown beside it. Times are ``time.monotonic`` (system-wide on Linux).

    .venv/bin/python bench/rate_accuracy.py [--duration 20] [--redis-url redis://127.0.0.1:6379/0]

Keys are ``rl:bench:<random>:*``; they are deleted at the end and expire on their own anyway.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import multiprocessing as mp
import os
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import redis

from dispatcher.ratelimit import Rate, RateLimiter
from procfs import machine

RATES = {"fast": "50/s", "slow": "20/s"}
PREFIX = "rl:"


class CountingRedis(redis.Redis):
    """Counts commands sent; without pipelines each is one round trip."""

    calls = itertools.count()

    def execute_command(self, *args: Any, **options: Any) -> Any:
        next(self.calls)
        return super().execute_command(*args, **options)


@dataclass
class WorkerReport:
    sent: dict[str, list[float]] = field(default_factory=dict)      # after the sleep
    slots: dict[str, list[float]] = field(default_factory=dict)     # granted slot, caller's clock
    refused: dict[str, int] = field(default_factory=dict)
    calls: int = 0
    late: float = 0.0                                               # worst wake-up lateness, s


def worker(redis_url: str, keys: dict[str, str], max_wait: float, duration: float,
           ready: Any, start_at: Any, results: Any) -> None:
    client = CountingRedis.from_url(redis_url)
    limiter = RateLimiter(client, prefix=PREFIX)
    for name, key in keys.items():
        limiter.effective_rate(key, Rate.parse(RATES[name]))  # connect, load the script
    warmup = next(CountingRedis.calls)
    report = WorkerReport()
    ready.wait()
    ready.wait()  # the parent has set start_at between the two
    start = start_at.value
    time.sleep(max(0.0, start - time.monotonic()))
    deadline = start + duration

    def run(name: str) -> None:
        key, rate = keys[name], Rate.parse(RATES[name])
        sent, slots, refused, late = [], [], 0, 0.0
        while time.monotonic() < deadline:
            before = time.monotonic()
            r = limiter.acquire(key, rate, max_wait=max_wait)
            after = time.monotonic()
            if r.granted:
                time.sleep(r.wait)
                now = time.monotonic()
                sent.append(now)
                slots.append((before + after) / 2 + r.wait)
                late = max(late, now - after - r.wait)
            else:
                refused += 1
                time.sleep(max(0.0, min(r.wait, deadline - time.monotonic())))
        report.sent[name], report.slots[name], report.refused[name] = sent, slots, refused
        report.late = max(report.late, late)

    threads = [threading.Thread(target=run, args=(name,)) for name in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report.calls = next(CountingRedis.calls) - warmup - 1
    results.put(report)
    client.close()


def max_in_window(times: list[float], span: float = 1.0) -> int:
    """Most events in any closed window of ``span`` seconds; ``times`` sorted."""
    return max((bisect.bisect_right(times, t + span) - i for i, t in enumerate(times)), default=0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of acquiring (<= 300)")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--max-wait", type=float, default=0.5, help="seconds a worker will sleep for a slot")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    args = parser.parse_args()
    if not 0 < args.duration <= 300 or not 1 <= args.processes <= 64:
        parser.error("--duration must be in (0, 300] and --processes in [1, 64]")

    run_id = uuid.uuid4().hex[:8]
    keys = {name: f"bench:{run_id}:{name}" for name in RATES}
    ctx = mp.get_context("spawn")
    ready, start_at, results = ctx.Barrier(args.processes + 1), ctx.Value("d", 0.0), ctx.Queue()
    procs = [
        ctx.Process(target=worker, args=(args.redis_url, keys, args.max_wait, args.duration, ready, start_at, results))
        for _ in range(args.processes)
    ]
    load_before = os.getloadavg()
    for p in procs:
        p.start()
    ready.wait(timeout=60)
    start_at.value = start = time.monotonic() + 0.2
    ready.wait(timeout=60)
    reports: list[WorkerReport] = [results.get(timeout=args.duration + 60) for _ in procs]
    for p in procs:
        p.join(timeout=10)
    load_after = os.getloadavg()
    end = start + args.duration

    client = redis.Redis.from_url(args.redis_url)
    server = client.info("server")
    client.delete(*(PREFIX + k for k in keys.values()))
    client.close()

    total_sends = sum(len(r.sent[n]) for r in reports for n in RATES)
    round_trips = sum(r.calls for r in reports) / total_sends
    missed = []
    print(f"{args.processes} processes x {len(RATES)} keys, {args.duration:g} s, max_wait {args.max_wait:g} s\n")
    print(f"{'key':<6}{'limit':>7}{'sends':>7}{'mean/s':>9}{'mean err':>10}{'max 1s':>8}{'(slots)':>9}"
          f"{'bound':>7}{'used':>8}{'refused':>9}")
    for name, text in RATES.items():
        limit = Rate.parse(text).per_second
        sent = sorted(t for r in reports for t in r.sent[name])
        slots = sorted(t for r in reports for t in r.slots[name])
        mean = (len(sent) - 1) / (sent[-1] - sent[0])
        err = mean / limit - 1
        window, slot_window = max_in_window(sent), max_in_window(slots)
        bound = limit * 1.01 + 1
        in_run = sum(start <= t <= end for t in sent)
        used = in_run / (limit * args.duration)
        refused = sum(r.refused[name] for r in reports)
        print(f"{text:<6}{limit:>7g}{len(sent):>7}{mean:>9.3f}{err:>+10.3%}{window:>8}{slot_window:>9}"
              f"{bound:>7.1f}{used:>8.1%}{refused:>9}")
        if abs(err) > 0.01:
            missed.append(f"{text}: mean rate off by {err:+.2%} (target within 1%)")
        if window > bound:
            missed.append(f"{text}: {window} sends in one 1 s window (target <= {bound:.1f})")
        if used < 0.98:
            missed.append(f"{text}: {used:.1%} of the limit used (target >= 98%)")
    print(f"\nRedis round trips per send: {round_trips:.3f} (target <= 2)")
    print(f"worst wake-up lateness after a sleep: {max(r.late for r in reports) * 1000:.1f} ms")
    if round_trips > 2:
        missed.append(f"{round_trips:.2f} round trips per send (target <= 2)")

    print(f"\nmachine: {machine()}, Redis {server.get('redis_version')}")
    print(f"load average (1 min) before/after: {load_before[0]:.2f} / {load_after[0]:.2f}")
    print("\n" + ("all targets met" if not missed else "MISSED:\n  " + "\n  ".join(missed)))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
