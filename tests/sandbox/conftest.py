"""Fixtures for the sandbox tests: valid requests per provider, and a webhook receiver.

The sandbox itself is the session's real process (``sandbox`` fixture in tests/conftest.py).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]

DC_HEADERS = {"x-team-id": "team-1", "x-secret": "secret-1"}
DRIPCEL_HEADERS = {"Authorization": "Bearer dripcel-key"}
SKYCORE_HEADERS = {"x-api-key": "skycore-key"}
FONE_HEADERS = {"Authorization": "Basic " + base64.b64encode(b"AC123:token-1").decode()}


def dc_sms_body() -> dict[str, Any]:
    return {"team_id": "team-1", "secret": "secret-1", "phone_number": "+15552223333", "caller_id": "+15557778888",
            "pool_id": "text", "sms_body": "Hello world", "opt_in": True}


def dc_rvm_body() -> dict[str, Any]:
    return {"team_id": "team-1", "secret": "secret-1", "foreign_id": "msg-1", "brand_id": "sandbox-brand",
            "phone_number": "+15552223333", "recording_id": "sandbox-recording"}


def dripcel_sms_body() -> dict[str, Any]:
    return {"content": "Hello World", "cell": "0821234567", "skipNonContacts": True, "country": "ZA",
            "deliveryMethod": "reverse"}


def dripcel_email_body() -> dict[str, Any]:
    return {"from": "news@example.com", "template_id": "template123", "destinations": ["a@example.com"]}


def skycore_body() -> dict[str, Any]:
    return {"action": "sendsms", "message-text": "Hello", "to": "17743199144", "from": "00000"}


def fone_body() -> dict[str, Any]:
    return {"From": "+61499009990", "To": "+61488023555", "Text": "You win again, gravity!"}


def _merge(base: dict[str, Any], changes: dict[str, Any] | None, drop: tuple[str, ...]) -> dict[str, Any]:
    body = {k: v for k, v in base.items() if k not in drop}
    body.update(changes or {})
    return body


class Api:
    """Sends each provider a valid request (with valid credentials) unless told otherwise."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http

    def dc_sms(self, changes: dict[str, Any] | None = None, *, drop: tuple[str, ...] = (),
               headers: dict[str, str] | None = None) -> httpx.Response:
        return self.http.post("/v1/sms", json=_merge(dc_sms_body(), changes, drop),
                              headers=DC_HEADERS if headers is None else headers)

    def dc_rvm(self, changes: dict[str, Any] | None = None, *, drop: tuple[str, ...] = ()) -> httpx.Response:
        return self.http.post("/v1/rvm", json=_merge(dc_rvm_body(), changes, drop), headers=DC_HEADERS)

    def dc(self, method: str, path: str, body: Any = None) -> httpx.Response:
        return self.http.request(method, path, json=body, headers=DC_HEADERS)

    def dripcel_sms(self, changes: dict[str, Any] | None = None, *, drop: tuple[str, ...] = (),
                    headers: dict[str, str] | None = None) -> httpx.Response:
        return self.http.post("/send/sms", json=_merge(dripcel_sms_body(), changes, drop),
                              headers=DRIPCEL_HEADERS if headers is None else headers)

    def dripcel_email(self, changes: dict[str, Any] | None = None, *, drop: tuple[str, ...] = ()) -> httpx.Response:
        return self.http.post("/send/email/bulk", json=_merge(dripcel_email_body(), changes, drop),
                              headers=DRIPCEL_HEADERS)

    def skycore(self, changes: dict[str, Any] | None = None, *, drop: tuple[str, ...] = (),
                headers: dict[str, str] | None = None) -> httpx.Response:
        return self.http.post("/skycore/api", json=_merge(skycore_body(), changes, drop),
                              headers=SKYCORE_HEADERS if headers is None else headers)

    def fone(self, changes: dict[str, Any] | None = None, *, drop: tuple[str, ...] = (),
             headers: dict[str, str] | None = None, property_sid: str = "PS1") -> httpx.Response:
        return self.http.post(f"/v2/Properties/{property_sid}/Messages", json=_merge(fone_body(), changes, drop),
                              headers=FONE_HEADERS if headers is None else headers)


@pytest.fixture()
def api(sandbox: Any) -> Api:
    return Api(sandbox.http)


class Receiver:
    """A local HTTP server that records every request it gets and answers ``status``."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.status = 200
        self._cond = threading.Condition()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                entry = {"method": self.command, "path": parts.path, "query": dict(parse_qsl(parts.query)),
                         "json": json.loads(raw) if raw else None, "at": time.monotonic()}
                self.send_response(owner.status)
                self.send_header("content-length", "0")
                self.end_headers()
                with owner._cond:
                    owner.received.append(entry)
                    owner._cond.notify_all()

            do_POST = do_GET = _record

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def wait(self, count: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The requests received once there are at least ``count`` (fails after ``timeout`` s)."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.received) >= count, timeout):
                raise AssertionError(f"expected {count} request(s) at the receiver, got {len(self.received)}")
            return list(self.received)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture()
def own_sandbox() -> Iterator[Callable[..., str]]:
    """Start a separate sandbox process with extra env/args; returns its base URL. Stopped after the test."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(env: dict[str, str] | None = None, args: list[str] | None = None) -> str:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen(
            [sys.executable, "-m", "dispatcher.sandbox", "--host", "127.0.0.1", "--port", str(port), *(args or [])],
            cwd=ROOT, env={**os.environ, **(env or {})},
        )
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/_sandbox/health", timeout=1.0).status_code == 200:
                    return url
            except httpx.HTTPError:
                time.sleep(0.05)
        raise AssertionError(f"sandbox at {url} did not start")

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
