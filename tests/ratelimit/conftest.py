"""Fixtures for the rate-limiter suite: limiters over real Redis clients, and worker processes."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import redis

from dispatcher.ratelimit import RateLimiter

HAMMER = Path(__file__).with_name("hammer.py")
PREFIX = "rl:test:"  # every limiter made here, in tests and worker processes


@pytest.fixture(params=[False, True], ids=["bytes-client", "decoding-client"])
def client(request: pytest.FixtureRequest, redis_client: redis.Redis, redis_url: str) -> Iterator[redis.Redis]:
    """Every single-process case runs against both kinds of redis-py client a worker may hold."""
    if not request.param:
        yield redis_client
        return
    decoding = redis.Redis.from_url(redis_url, decode_responses=True)
    yield decoding
    decoding.close()


@pytest.fixture()
def make_limiter(client: redis.Redis) -> Callable[..., RateLimiter]:
    def make(**tuning: Any) -> RateLimiter:
        return RateLimiter(client, prefix=PREFIX, **tuning)

    return make


@pytest.fixture()
def key() -> str:
    return f"test{uuid.uuid4().hex[:8]}:account"


@dataclass
class ProcessRun:
    """What the worker processes were granted, timed by Redis: slot = when Redis ran the acquire + ``wait``."""

    slots: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # per key, sorted, s
    idle_starts: dict[str, set[float]] = field(default_factory=lambda: defaultdict(set))  # granted with wait 0
    refused: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    acquires: int = 0
    commands: int = 0


class AcquireMonitor(threading.Thread):
    """Records when Redis ran each ``acquire`` on keys under ``PREFIX``, per client port (MONITOR)."""

    def __init__(self, redis_url: str) -> None:
        super().__init__(daemon=True)
        self.client = redis.Redis.from_url(redis_url)
        self.stop_command = f"GET {PREFIX}stop:{uuid.uuid4().hex}"
        self.started = threading.Event()
        self.times: dict[tuple[str, str], list[float]] = defaultdict(list)  # (port, key) -> Redis times

    def run(self) -> None:
        with self.client.monitor() as monitor:
            self.started.set()
            for event in monitor.listen():
                command = event["command"]
                if command == self.stop_command:
                    break
                parts = command.split(" ")
                if parts[0].upper() == "EVALSHA" and len(parts) > 4 and parts[4] == "acquire" and parts[3].startswith(PREFIX):
                    self.times[(event["client_port"], parts[3][len(PREFIX):])].append(event["time"])

    def stop(self) -> None:
        self.client.execute_command(*self.stop_command.split(" "))
        self.join(10)
        self.client.close()


@pytest.fixture()
def run_processes(redis_client: redis.Redis, redis_url: str) -> Callable[..., ProcessRun]:
    """Start one `hammer.py` process per job list, release them together, return what they were granted.

    Slots are timed on Redis's clock: MONITOR gives the moment Redis ran each acquire, to the
    microsecond, and the reply's ``wait`` runs from there. So the windows counted are the
    limiter's own decisions, free of the OS's scheduling of a busy test machine.

    Another test run on this machine may flush the test database mid-run (the shared
    `redis_client` fixture does), wiping the schedule; a sentinel key detects that and the run
    is repeated, up to three times in all.
    """

    def run(per_process: list[list[dict[str, Any]]], *, duration: float,
            clock_skews: list[float] | None = None) -> ProcessRun:
        keys = {PREFIX + job["key"] for jobs in per_process for job in jobs}
        for _ in range(3):
            redis_client.delete(*keys)
            sentinel = f"{PREFIX}sentinel:{uuid.uuid4().hex}"
            redis_client.set(sentinel, 1, ex=int(duration) + 60)
            result = run_once(per_process, duration, clock_skews or [0.0] * len(per_process))
            if redis_client.delete(sentinel):
                return result
        pytest.fail("the test database was flushed during each of three runs by another test run")

    def run_once(per_process: list[list[dict[str, Any]]], duration: float, skews: list[float]) -> ProcessRun:
        procs = [
            subprocess.Popen(
                [sys.executable, str(HAMMER), json.dumps({
                    "redis_url": redis_url, "prefix": PREFIX, "duration": duration,
                    "clock_skew": skew, "jobs": jobs,
                })],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )
            for jobs, skew in zip(per_process, skews)
        ]
        monitor = AcquireMonitor(redis_url)
        try:
            for p in procs:
                assert p.stdout is not None and p.stdout.readline().strip() == "ready"
            monitor.start()
            assert monitor.started.wait(10)
            for p in procs:
                assert p.stdin is not None
                p.stdin.write("go\n")
                p.stdin.flush()
            reports = []
            for p in procs:
                out, _ = p.communicate(timeout=duration + 20)
                assert p.returncode == 0, f"worker process failed with exit code {p.returncode}"
                reports.extend(json.loads(out)["jobs"])
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            if monitor.is_alive():
                monitor.stop()

        result = ProcessRun()
        for report in reports:
            key, calls = report["key"], report["calls"]
            times = monitor.times[(report["port"], key)]
            assert len(times) == len(calls), "each acquire is exactly one EVALSHA"
            for at, (granted, wait) in zip(times, calls):
                if granted:
                    result.slots[key].append(at + wait)
                    if wait == 0:
                        result.idle_starts[key].add(at)
                else:
                    result.refused[key] += 1
            result.acquires += len(calls)
            result.commands += report["commands"]
        for slots in result.slots.values():
            slots.sort()
        return result

    return run
