"""A lean HTTP/1.1 transport for ``httpx.Client``: keep-alive sockets and nothing else.

httpx stays the client API (adapters call ``client.request``); this only replaces what sits
under it. Through an adapter, one request to the sandbox costs about 460 µs of CPU over httpx's
default transport (httpcore + h11) and about 270 µs over this one (BENCHMARKS.md).

What it speaks is what the provider APIs need: HTTP/1.1 over TCP or TLS, request bodies
read whole, responses framed by Content-Length, chunked encoding or the end of the connection,
informational (1xx) answers skipped, idle connections checked before reuse. No proxies and no
HTTP/2: ``runtime.http_client`` uses httpx's own transport when a proxy is configured or
``HTTP_TRANSPORT=httpx``. One idle-connection stack per origin; safe to share between threads
(each request takes its own connection), though the engine gives every thread its own.

It raises httpx's exceptions, so ``providers.http`` cannot tell the transports apart:

    name resolution, refused, unreachable, TLS failure   httpx.ConnectError
    connect or TLS handshake takes too long              httpx.ConnectTimeout
    no answer within the read timeout                    httpx.ReadTimeout
    sending stalls past the write timeout                httpx.WriteTimeout
    connection lost while sending                        httpx.WriteError
    closed or reset before or during the answer          httpx.RemoteProtocolError / httpx.ReadError
    malformed answer, or one over the size limits        httpx.RemoteProtocolError
    CR or LF inside a header (would split the request)   httpx.LocalProtocolError
"""

from __future__ import annotations

import os
import select
import socket
import ssl
import time
from typing import Iterable

import httpx

MAX_HEAD = 64 * 1024          # bytes of status line and headers accepted
MAX_BODY = 16 * 1024 * 1024   # bytes of body accepted (provider answers are small)
_RECV = 65536
_DEFAULT_PORTS = {"http": 80, "https": 443}
_NO_BODY_STATUS = (204, 304)


class _Malformed(Exception):
    """The peer's answer is not HTTP/1.1 we can read; ``str()`` says why."""


class _Closed(Exception):
    """The peer closed the connection before the answer was complete."""

    def __init__(self, started: bool) -> None:
        super().__init__("connection closed in the middle of the answer" if started
                         else "server disconnected without sending an answer")
        self.started = started


class _Conn:
    __slots__ = ("sock", "idle_since")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.idle_since = 0.0


class KeepAliveTransport(httpx.BaseTransport):
    """``httpx.Client(transport=KeepAliveTransport())``.

    ``verify``: True (system CAs via certifi, or ``SSL_CERT_FILE``), False, or an ``ssl.SSLContext``.
    ``max_idle``: idle connections kept per origin. ``check_idle_after``: seconds a connection may sit
    idle before it is checked for a close by the peer on reuse (a busy connection is not checked: a peer
    that closes it says so in ``Connection: close``, or the request fails as any lost connection does).
    """

    def __init__(self, *, verify: ssl.SSLContext | bool = True, max_idle: int = 8,
                 check_idle_after: float = 1.0) -> None:
        self._verify = verify
        self._ssl: ssl.SSLContext | None = verify if isinstance(verify, ssl.SSLContext) else None
        self._idle: dict[tuple[str, str, int], list[_Conn]] = {}
        self._max_idle = max_idle
        self._check_after = check_idle_after

    # ------------------------------------------------------------ httpx.BaseTransport
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.scheme
        if scheme not in _DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(f"Request URL has an unsupported protocol '{scheme}://'.", request=request)
        origin = (scheme, url.host, url.port or _DEFAULT_PORTS[scheme])
        timeouts = request.extensions.get("timeout") or {}
        payload = _head(request, request.headers.raw) + request.read()
        conn = self._checkout(origin, timeouts.get("connect"), request)
        sock = conn.sock
        try:
            sock.settimeout(timeouts.get("write"))
            try:
                sock.sendall(payload)
            except TimeoutError:
                raise httpx.WriteTimeout("timed out while sending the request", request=request) from None
            except OSError as exc:
                raise httpx.WriteError(f"connection lost while sending: {exc}", request=request) from None
            sock.settimeout(timeouts.get("read"))
            try:
                status, reason, headers, body, keep = _read_response(sock, request.method == "HEAD")
            except TimeoutError:
                raise httpx.ReadTimeout("timed out waiting for the answer", request=request) from None
            except _Closed as exc:
                raise httpx.RemoteProtocolError(str(exc), request=request) from None
            except _Malformed as exc:
                raise httpx.RemoteProtocolError(f"malformed answer: {exc}", request=request) from None
            except OSError as exc:
                raise httpx.ReadError(f"connection lost while reading the answer: {exc}", request=request) from None
        except BaseException:
            _close(sock)
            raise
        if keep:
            self._checkin(origin, conn)
        else:
            _close(sock)
        return httpx.Response(status, headers=headers, stream=httpx.ByteStream(body),
                              extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason})

    def close(self) -> None:
        idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                _close(conn.sock)

    # ------------------------------------------------------------ connections
    def _checkout(self, origin: tuple[str, str, int], connect_timeout: float | None, request: httpx.Request) -> _Conn:
        stack = self._idle.get(origin)
        while stack:
            try:
                conn = stack.pop()
            except IndexError:      # another thread took the last one
                break
            if time.monotonic() - conn.idle_since < self._check_after or _still_open(conn.sock):
                return conn
            _close(conn.sock)
        return _Conn(self._connect(origin, connect_timeout, request))

    def _checkin(self, origin: tuple[str, str, int], conn: _Conn) -> None:
        stack = self._idle.setdefault(origin, [])
        if len(stack) >= self._max_idle:
            _close(conn.sock)
            return
        conn.idle_since = time.monotonic()
        stack.append(conn)

    def _connect(self, origin: tuple[str, str, int], timeout: float | None, request: httpx.Request) -> socket.socket:
        scheme, host, port = origin
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out", request=request) from None
        except OSError as exc:
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {exc}", request=request) from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":
                sock = self._context().wrap_socket(sock, server_hostname=host)
        except TimeoutError:
            _close(sock)
            raise httpx.ConnectTimeout(f"TLS handshake with {host}:{port} timed out", request=request) from None
        except (ssl.SSLError, ssl.CertificateError, OSError) as exc:
            _close(sock)
            raise httpx.ConnectError(f"TLS with {host}:{port} failed: {exc}", request=request) from None
        return sock

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            if self._verify is False:
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            else:
                import certifi

                ctx = ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE") or certifi.where())
            self._ssl = ctx
        return self._ssl


def _head(request: httpx.Request, headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    lines = [b"%s %s HTTP/1.1" % (request.method.encode("ascii"), request.url.raw_path)]
    for name, value in headers:
        if b"\r" in value or b"\n" in value or b"\r" in name or b"\n" in name or b":" in name:
            raise httpx.LocalProtocolError(f"illegal character in header {name!r}", request=request)
        lines.append(name + b": " + value)
    lines.append(b"\r\n")
    return b"\r\n".join(lines)


def _still_open(sock: socket.socket) -> bool:
    """An idle keep-alive connection is readable only when the peer closed it (or sent garbage)."""
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


def _close(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass


def _read_response(sock: socket.socket, head_only: bool) -> tuple[int, bytes, list[tuple[bytes, bytes]], bytes, bool]:
    """(status, reason phrase, headers, body, connection reusable) of the next final answer on ``sock``.

    The connection is reusable only when the answer was framed, kept alive, and nothing followed it."""
    buf = b""
    got_any = False
    while True:
        end = buf.find(b"\r\n\r\n")
        while end < 0:
            if len(buf) > MAX_HEAD:
                raise _Malformed(f"headers longer than {MAX_HEAD} bytes")
            chunk = sock.recv(_RECV)
            if not chunk:
                raise _Closed(got_any)
            got_any = True
            buf += chunk
            end = buf.find(b"\r\n\r\n", max(0, len(buf) - len(chunk) - 3))
        if end > MAX_HEAD:
            raise _Malformed(f"headers longer than {MAX_HEAD} bytes")
        lines = buf[:end].split(b"\r\n")
        buf = buf[end + 4:]
        version, _, rest = lines[0].partition(b" ")
        code, _, reason = rest.partition(b" ")
        if not version.startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit():
            raise _Malformed(f"status line {lines[0][:60]!r}")
        status = int(code)
        if 100 <= status < 200 and status != 101:
            continue                    # 100 Continue, 103 Early Hints: the final answer follows
        break
    headers: list[tuple[bytes, bytes]] = []
    length: int | None = None
    chunked = False
    close = version != b"HTTP/1.1"
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise _Malformed(f"header line {line[:60]!r}")
        value = value.strip(b" \t")
        headers.append((name, value))
        key = name.lower()
        if key == b"content-length":
            if not value.isdigit() or (length is not None and int(value) != length):
                raise _Malformed(f"Content-Length {value[:30]!r}")
            length = int(value)
        elif key == b"transfer-encoding":
            chunked = value.lower().rsplit(b",", 1)[-1].strip() == b"chunked"
            if not chunked:
                raise _Malformed(f"Transfer-Encoding {value[:30]!r}")
        elif key == b"connection":
            tokens = {t.strip() for t in value.lower().split(b",")}
            if b"close" in tokens:
                close = True
            elif b"keep-alive" in tokens and version == b"HTTP/1.0":
                close = False
    if head_only or status in _NO_BODY_STATUS or status == 101:
        body, keep = b"", not close and status != 101
    elif chunked:
        body, buf = _read_chunked(sock, buf)
        keep = not close
    elif length is not None:
        if length > MAX_BODY:
            raise _Malformed(f"body of {length} bytes is over the {MAX_BODY} limit")
        while len(buf) < length:
            chunk = sock.recv(max(_RECV, length - len(buf)))
            if not chunk:
                raise _Closed(True)
            buf += chunk
        body, buf = buf[:length], buf[length:]
        keep = not close
    else:                               # no framing: the body runs to the end of the connection
        parts = [buf]
        size = len(buf)
        while chunk := sock.recv(_RECV):
            size += len(chunk)
            if size > MAX_BODY:
                raise _Malformed(f"body over the {MAX_BODY} limit")
            parts.append(chunk)
        body, buf, keep = b"".join(parts), b"", False
    return status, reason, headers, body, keep and not buf


def _read_chunked(sock: socket.socket, buf: bytes) -> tuple[bytes, bytes]:
    """The decoded body of a chunked answer and what follows it."""
    parts: list[bytes] = []
    size_total = 0

    def line() -> bytes:
        nonlocal buf
        while (i := buf.find(b"\r\n")) < 0:
            if len(buf) > MAX_HEAD:
                raise _Malformed("chunk header too long")
            chunk = sock.recv(_RECV)
            if not chunk:
                raise _Closed(True)
            buf += chunk
        out, buf = buf[:i], buf[i + 2:]
        return out

    while True:
        size_field = line().split(b";", 1)[0].strip()
        try:
            size = int(size_field, 16)
        except ValueError:
            raise _Malformed(f"chunk size {size_field[:20]!r}") from None
        if size < 0:
            raise _Malformed("negative chunk size")
        if size == 0:
            while line():               # trailers, up to the empty line
                pass
            return b"".join(parts), buf
        size_total += size
        if size_total > MAX_BODY:
            raise _Malformed(f"body over the {MAX_BODY} limit")
        while len(buf) < size + 2:
            chunk = sock.recv(max(_RECV, size + 2 - len(buf)))
            if not chunk:
                raise _Closed(True)
            buf += chunk
        if buf[size:size + 2] != b"\r\n":
            raise _Malformed("chunk not followed by CRLF")
        parts.append(buf[:size])
        buf = buf[size + 2:]


__all__ = ["KeepAliveTransport", "MAX_BODY", "MAX_HEAD"]
