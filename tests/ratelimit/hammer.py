"""A worker process for the rate-limit tests: hammers keys through RateLimiter.

Run as ``python hammer.py '<json config>'``. Config: ``redis_url``, ``prefix``, ``duration``
(seconds of acquiring), ``clock_skew`` (seconds added to this process's wall clock), and
``jobs``: ``[{"key", "rate", "cost", "max_wait"}]``, one thread each, each with its own
connection. Prints ``ready``, waits for a line on stdin, then acquires until the duration is
over, sleeping every ``wait`` like a worker: a granted one before its send, a refused one as
the re-queued task's countdown. Finally prints one JSON line, per job in order:
``{"jobs": [{"key", "port", "calls": [[granted, wait], ...], "commands": n}]}`` where ``port``
is the connection's local port (how Redis's MONITOR names it) and ``commands`` counts every
command the job sent.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

import redis

from dispatcher.ratelimit import Rate, RateLimiter


class CountingRedis(redis.Redis):
    """Counts commands sent; without pipelines each is one round trip."""

    commands = 0

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.commands += 1
        return super().execute_command(*args, **options)


def main() -> None:
    config = json.loads(sys.argv[1])
    skew = float(config.get("clock_skew", 0.0))
    if skew:
        real_time, real_time_ns = time.time, time.time_ns
        time.time = lambda: real_time() + skew  # type: ignore[assignment]
        time.time_ns = lambda: real_time_ns() + int(skew * 1e9)  # type: ignore[assignment]
    workers = []
    for job in config["jobs"]:
        client = CountingRedis.from_url(config["redis_url"], single_connection_client=True)
        limiter = RateLimiter(client, prefix=config["prefix"])
        limiter.effective_rate(job["key"], Rate.parse(job["rate"]))  # connect and load the script
        port = client.client_info()["addr"].rsplit(":", 1)[1]
        client.commands = 0
        workers.append((job, client, limiter, {"key": job["key"], "port": port, "calls": []}))

    print("ready", flush=True)
    sys.stdin.readline()
    deadline = time.monotonic() + float(config["duration"])

    def hammer(job: dict[str, Any], limiter: RateLimiter, report: dict[str, Any]) -> None:
        rate, cost, max_wait = Rate.parse(job["rate"]), int(job.get("cost", 1)), float(job["max_wait"])
        while time.monotonic() < deadline:
            r = limiter.acquire(job["key"], rate, cost=cost, max_wait=max_wait)
            report["calls"].append([r.granted, r.wait])
            time.sleep(r.wait if r.granted else max(0.0, min(r.wait, deadline - time.monotonic())))

    threads = [threading.Thread(target=hammer, args=(job, limiter, report)) for job, _, limiter, report in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for _, client, _, report in workers:
        report["commands"] = client.commands
    print(json.dumps({"jobs": [report for *_, report in workers]}), flush=True)


if __name__ == "__main__":
    main()
