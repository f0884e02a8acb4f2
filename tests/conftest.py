"""Shared fixtures: real Redis, real databases, the sandbox as a real HTTP server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
def _claim_redis_db() -> str:
    """A Redis database of its own for this test session, so concurrent sessions never flush each other."""
    import atexit

    import redis

    base = os.environ.get("TEST_REDIS_BASE", "redis://127.0.0.1:6379")
    admin = redis.Redis.from_url(base + "/0")
    try:
        for db in range(9, 16):
            key = f"dispatcher-tests:db:{db}"
            if admin.set(key, os.getpid(), nx=True, ex=3600):
                atexit.register(lambda k=key: admin.delete(k))
                return f"{base}/{db}"
    except redis.RedisError:
        pass
    return base + "/9"


TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL") or _claim_redis_db()
os.environ["TEST_REDIS_URL"] = TEST_REDIS_URL
TEST_POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError as exc:  # not up yet
            last = exc
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer in {timeout}s: {last}")


@pytest.fixture(scope="session")
def redis_url() -> str:
    import redis

    client = redis.Redis.from_url(TEST_REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:  # pragma: no cover - environment problem
        pytest.fail(f"Redis is not answering at {TEST_REDIS_URL}: {exc}")
    return TEST_REDIS_URL


@pytest.fixture()
def redis_client(redis_url: str) -> Iterator["redis.Redis"]:  # noqa: F821
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


class Sandbox:
    """A running `python -m dispatcher.sandbox` process and a client for its control API."""

    def __init__(self, url: str, proc: subprocess.Popen[bytes]) -> None:
        self.url = url
        self.proc = proc
        self.http = httpx.Client(base_url=url, timeout=10.0)

    def configure(self, **config: object) -> None:
        r = self.http.post("/_sandbox/config", json=config)
        r.raise_for_status()

    def reset(self) -> None:
        self.http.post("/_sandbox/reset").raise_for_status()

    def requests(self, provider: str | None = None) -> list[dict]:
        params = {"provider": provider} if provider else {}
        r = self.http.get("/_sandbox/requests", params=params)
        r.raise_for_status()
        return r.json()["requests"]

    def stop(self) -> None:
        self.http.close()
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start_sandbox(env: dict[str, str] | None = None, extra_args: list[str] | None = None) -> Sandbox:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dispatcher.sandbox", "--host", "127.0.0.1", "--port", str(port), *(extra_args or [])],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/_sandbox/health")
    except RuntimeError:
        proc.kill()
        raise
    return Sandbox(url, proc)


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[Sandbox]:
    sb = start_sandbox()
    yield sb
    sb.stop()


@pytest.fixture()
def sandbox(sandbox_server: Sandbox) -> Iterator[Sandbox]:
    """The session's sandbox, reset (log, config, scripted faults) before each test."""
    sandbox_server.reset()
    yield sandbox_server
