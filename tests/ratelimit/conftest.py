"""Fixtures for the rate-limiter suite: limiters over real Redis clients, and worker processes."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import redis

from dispatcher.ratelimit import RateLimiter

HAMMER = Path(__file__).with_name("hammer.py")
PREFIX = "rl:test:"


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


@pytest.fixture()
def run_processes(redis_client: redis.Redis, redis_url: str) -> Callable[..., list[dict[str, Any]]]:
    """Start one `hammer.py` process per job list, release them together, return their reports."""

    def run(per_process: list[list[dict[str, Any]]], *, duration: float,
            clock_skews: list[float] | None = None) -> list[dict[str, Any]]:
        skews = clock_skews or [0.0] * len(per_process)
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
        try:
            for p in procs:
                assert p.stdout is not None and p.stdout.readline().strip() == "ready"
            for p in procs:
                assert p.stdin is not None
                p.stdin.write("go\n")
                p.stdin.flush()
            reports = []
            for p in procs:
                out, _ = p.communicate(timeout=duration + 20)
                assert p.returncode == 0, f"worker process failed with exit code {p.returncode}"
                reports.append(json.loads(out))
            return reports
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()

    return run
