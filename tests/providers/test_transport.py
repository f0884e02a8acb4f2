"""KeepAliveTransport against real loopback servers that answer with scripted bytes.

The adapters' behaviour over this transport is the contract suite's (test_contract.py runs over both
transports); these cases cover the wire: framing, keep-alive, closes, timeouts and malformed answers.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import httpx
import pytest

from dispatcher.providers.http import request
from dispatcher.providers.base import Outcome, SendResult
from dispatcher.providers.transport import MAX_HEAD, KeepAliveTransport

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}"
Handler = Callable[[socket.socket, bytes, int], bool]   # (connection, request bytes, request number) -> keep open


class Server:
    """Accepts connections on 127.0.0.1; for each request read, calls ``handler`` which writes the answer."""

    def __init__(self, handler: Handler, *, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.tls = tls
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.requests: list[bytes] = []
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self.tls:
                conn = self.tls.wrap_socket(conn, server_side=True)
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, _, rest = buf.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(rest) < length:
                    rest += conn.recv(65536)
                self.requests.append(head + b"\r\n\r\n" + rest[:length])
                buf = rest[length:]
                if not self.handler(conn, self.requests[-1], len(self.requests)):
                    return
        except OSError:
            return
        finally:
            conn.close()

    def close(self) -> None:
        self._stop = True
        self.sock.close()


@pytest.fixture()
def serve() -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(handler: Handler, **kw: ssl.SSLContext) -> Server:
        servers.append(Server(handler, **kw))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def answer(data: bytes, *, keep: bool = True) -> Handler:
    def handler(conn: socket.socket, _req: bytes, _n: int) -> bool:
        conn.sendall(data)
        return keep
    return handler


def client(**kw: object) -> httpx.Client:
    return httpx.Client(transport=KeepAliveTransport(**kw), timeout=2)  # type: ignore[arg-type]


def test_a_json_answer_with_content_length(serve):
    srv = serve(answer(OK))
    with client() as c:
        r = c.post(srv.url + "/v1/sms?x=1", json={"to": "+15550001111"}, headers={"x-secret": "s"})
    assert (r.status_code, r.json(), r.reason_phrase, r.http_version) == (200, {"ok": True}, "OK", "HTTP/1.1")
    head, _, body = srv.requests[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v1/sms?x=1 HTTP/1.1"
    assert b"x-secret: s" in lines and f"host: 127.0.0.1:{srv.port}".encode() in [h.lower() for h in lines]
    assert body == b'{"to":"+15550001111"}'


def test_keep_alive_reuses_one_connection(serve):
    srv = serve(answer(OK))
    with client() as c:
        for _ in range(5):
            assert c.get(srv.url + "/").status_code == 200
    assert srv.connections == 1 and len(srv.requests) == 5


def test_connection_close_is_honoured_and_the_next_request_reconnects(serve):
    srv = serve(answer(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", keep=False))
    with client() as c:
        assert [c.get(srv.url + "/").text for _ in range(3)] == ["ok", "ok", "ok"]
    assert srv.connections == 3


def test_an_idle_connection_closed_by_the_server_is_not_reused(serve):
    # The server closes after each answer without saying so; the idle check notices before the next request.
    srv = serve(answer(OK, keep=False))
    with client(check_idle_after=0) as c:
        assert c.get(srv.url + "/").status_code == 200
        time.sleep(0.1)
        assert c.get(srv.url + "/").status_code == 200
    assert srv.connections == 2


def test_chunked_answer_with_trailers_is_decoded(serve):
    srv = serve(answer(b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"4;ext=1\r\n{\"a\"\r\n5\r\n:[1]}\r\n0\r\nX-Trailer: y\r\n\r\n"))
    with client() as c:
        r1 = c.get(srv.url + "/")
        r2 = c.get(srv.url + "/")
    assert r1.status_code == 201 and r1.json() == {"a": [1]} and r2.json() == {"a": [1]}
    assert srv.connections == 1


def test_answer_without_framing_runs_to_the_close(serve):
    srv = serve(answer(b"HTTP/1.1 200 OK\r\n\r\nthe whole rest", keep=False))
    with client() as c:
        assert c.get(srv.url + "/").text == "the whole rest"
        assert c.get(srv.url + "/").text == "the whole rest"
    assert srv.connections == 2


def test_informational_answers_are_skipped(serve):
    srv = serve(answer(b"HTTP/1.1 100 Continue\r\n\r\n" + OK))
    with client() as c:
        assert c.get(srv.url + "/").json() == {"ok": True}


def test_head_and_204_have_no_body(serve):
    srv = serve(answer(b"HTTP/1.1 204 No Content\r\n\r\n"))
    with client() as c:
        assert c.delete(srv.url + "/a").content == b"" and c.delete(srv.url + "/b").status_code == 204
    assert srv.connections == 1


def test_gzip_answer_is_decoded_by_httpx(serve):
    import gzip

    body = gzip.compress(b'{"drop_id":"d-1"}')
    srv = serve(answer(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(body) + body))
    with client() as c:
        assert c.get(srv.url + "/").json() == {"drop_id": "d-1"}


def test_silent_server_is_a_read_timeout_and_unknown_for_the_adapter(serve):
    srv = serve(lambda conn, req, n: (time.sleep(1.5), False)[1])
    with client() as c:
        with pytest.raises(httpx.ReadTimeout):
            c.get(srv.url + "/", timeout=0.3)
        result = request(c, "POST", srv.url + "/", json={}, timeout=0.3)
    assert isinstance(result, SendResult) and (result.outcome, result.tries) == (Outcome.UNKNOWN, 1)


def test_refused_connection_is_a_connect_error_and_retryable():
    port = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{port.getsockname()[1]}/"
    port.close()
    with client() as c:
        with pytest.raises(httpx.ConnectError):
            c.get(url)
        from dispatcher.providers.http import RetryPolicy
        result = request(c, "POST", url, json={}, timeout=1, policy=RetryPolicy(sleep=lambda s: None))
    assert isinstance(result, SendResult) and (result.outcome, result.tries) == (Outcome.RETRYABLE, 3)


def test_close_before_any_answer_is_a_protocol_error_and_unknown(serve):
    srv = serve(lambda conn, req, n: False)
    with client() as c:
        with pytest.raises(httpx.RemoteProtocolError, match="without sending an answer"):
            c.get(srv.url + "/")
        result = request(c, "POST", srv.url + "/", json={}, timeout=1)
    assert isinstance(result, SendResult) and result.outcome == Outcome.UNKNOWN


def test_close_in_the_middle_of_the_body(serve):
    srv = serve(answer(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", keep=False))
    with client() as c, pytest.raises(httpx.RemoteProtocolError, match="middle of the answer"):
        c.get(srv.url + "/")


@pytest.mark.parametrize("raw", [
    b"NOT HTTP\r\n\r\n",
    b"HTTP/1.1 2000 Huh\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nX: " + b"a" * (MAX_HEAD + 10) + b"\r\n\r\n",
])
def test_malformed_answers_are_protocol_errors(serve, raw):
    srv = serve(answer(raw, keep=False))
    with client() as c, pytest.raises(httpx.RemoteProtocolError, match="malformed"):
        c.get(srv.url + "/")


def test_a_header_that_would_split_the_request_is_refused_before_sending(serve):
    srv = serve(answer(OK))
    with client() as c, pytest.raises(httpx.LocalProtocolError):
        c.get(srv.url + "/", headers={"x-secret": "a\r\nx-injected: 1"})
    assert srv.requests == []


def test_unsupported_scheme():
    with client() as c, pytest.raises(httpx.UnsupportedProtocol):
        c.get("ftp://127.0.0.1/")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if not shutil.which("openssl"):
        pytest.skip("openssl is needed to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")],
                   check=True, capture_output=True)
    return d / "cert.pem", d / "key.pem"


def test_https_with_a_trusted_certificate(serve, certificate):
    cert, key = certificate
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    srv = serve(answer(OK), tls=server_ctx)
    trusted = ssl.create_default_context(cafile=str(cert))
    with client(verify=trusted) as c:
        assert [c.get(srv.url + "/").json() for _ in range(2)] == [{"ok": True}] * 2
    assert srv.connections == 1


def test_https_refuses_an_untrusted_certificate(serve, certificate):
    cert, key = certificate
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    srv = serve(answer(OK), tls=server_ctx)
    with client() as c, pytest.raises(httpx.ConnectError, match="TLS"):
        c.get(srv.url + "/")


def test_runtime_client_falls_back_to_httpx_transport_behind_a_proxy(monkeypatch):
    from dispatcher.runtime import http_client
    from dispatcher.settings import Settings

    def transport_of(c: httpx.Client) -> object:
        return c._transport  # noqa: SLF001 - which transport was chosen is the point of this test

    assert isinstance(transport_of(http_client(Settings())), KeepAliveTransport)
    assert isinstance(transport_of(http_client(Settings(http_transport="httpx"))), httpx.HTTPTransport)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    assert isinstance(transport_of(http_client(Settings())), httpx.HTTPTransport)


def test_runtime_client_keeps_no_cookies(serve):
    from dispatcher.runtime import http_client
    from dispatcher.settings import Settings

    srv = serve(answer(b"HTTP/1.1 200 OK\r\nSet-Cookie: session=abc\r\nContent-Length: 0\r\n\r\n"))
    with http_client(Settings()) as c:
        c.get(srv.url + "/")
        c.get(srv.url + "/")
    assert all(b"cookie" not in r.lower() for r in srv.requests)


def test_runtime_client_sends_basic_auth_and_leaves_redirects_and_hooks_as_httpx_does(serve):
    from dispatcher.runtime import http_client
    from dispatcher.settings import Settings

    srv = serve(answer(b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 4\r\n\r\nmove"))
    seen: list[int] = []
    with http_client(Settings()) as c:
        r = c.post(srv.url + "/v1/sms", json={"a": 1}, auth=("user", "pässword"))
        assert (r.status_code, r.text, r.headers["location"]) == (302, "move", "/elsewhere")   # not followed
        assert r.request.url == srv.url + "/v1/sms"
        c.event_hooks["response"] = [lambda resp: seen.append(resp.status_code)]
        c.get(srv.url + "/")
    assert seen == [302]   # a client with hooks takes httpx's own path, which runs them
    sent = dict(line.split(b": ", 1) for line in srv.requests[0].partition(b"\r\n\r\n")[0].split(b"\r\n")[1:])
    expected = next(httpx.BasicAuth("user", "pässword").auth_flow(httpx.Request("GET", srv.url))).headers["authorization"]
    assert {k.lower(): v for k, v in sent.items()}[b"authorization"] == expected.encode()
