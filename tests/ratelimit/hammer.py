"""A worker process for the rate-limit tests: hammers keys through one RateLimiter.

Run as ``python hammer.py '<json config>'``. Config: ``redis_url``, ``prefix``, ``duration``
(seconds of acquiring), ``clock_skew`` (seconds added to this process's ``time.time``), and
``jobs``: ``[{"key", "rate", "cost", "max_wait"}]``, one thread each. Prints ``ready``, waits
for a line on stdin, then acquires until the duration is over: a granted slot is slept
(``wait``) and its send time recorded (``time.monotonic``, system-wide on Linux); a refusal
is slept too, like a re-queued task's countdown. Finally prints one JSON line:
``{"sends": {key: [t, ...]}, "refused": {key: n}, "calls": n}``.
"""

from __future__ import annotations

import itertools
import json
import sys
import threading
import time
from typing import Any

import redis

from dispatcher.ratelimit import Rate, RateLimiter


class CountingRedis(redis.Redis):
    """Counts commands sent (one round trip each; no pipelines are used)."""

    calls = itertools.count()

    def execute_command(self, *args: Any, **options: Any) -> Any:
        next(self.calls)
        return super().execute_command(*args, **options)


def main() -> None:
    config = json.loads(sys.argv[1])
    skew = float(config.get("clock_skew", 0.0))
    if skew:
        real_time, real_time_ns = time.time, time.time_ns
        time.time = lambda: real_time() + skew  # type: ignore[assignment]
        time.time_ns = lambda: real_time_ns() + int(skew * 1e9)  # type: ignore[assignment]
    client = CountingRedis.from_url(config["redis_url"])
    limiter = RateLimiter(client, prefix=config["prefix"])
    jobs = config["jobs"]
    for job in jobs:
        limiter.effective_rate(job["key"], Rate.parse(job["rate"]))  # connect and load the script
    warmup_calls = next(CountingRedis.calls)
    sends: dict[str, list[float]] = {job["key"]: [] for job in jobs}
    refused: dict[str, int] = {job["key"]: 0 for job in jobs}

    print("ready", flush=True)
    sys.stdin.readline()
    deadline = time.monotonic() + float(config["duration"])

    def hammer(job: dict[str, Any]) -> None:
        key, rate = job["key"], Rate.parse(job["rate"])
        while time.monotonic() < deadline:
            r = limiter.acquire(key, rate, cost=int(job.get("cost", 1)), max_wait=float(job["max_wait"]))
            if r.granted:
                time.sleep(r.wait)
                sends[key].append(time.monotonic())
            else:
                refused[key] += 1
                time.sleep(max(0.0, min(r.wait, deadline - time.monotonic())))

    threads = [threading.Thread(target=hammer, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    calls = next(CountingRedis.calls) - warmup_calls - 1
    print(json.dumps({"sends": sends, "refused": refused, "calls": calls}), flush=True)


if __name__ == "__main__":
    main()
