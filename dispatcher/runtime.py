"""Process-wide wiring: one engine, broker producer, limiter, HTTP client and dispatcher per process.

Built lazily and rebuilt after a fork (Celery's prefork pool), since sockets must not be shared
between processes.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

import httpx
import redis

from .queue import TaskQueue
from .settings import Settings, get_settings
from .store import Store, make_engine

if TYPE_CHECKING:
    from .engine import Dispatcher

_lock = threading.Lock()
_pid: int | None = None
_dispatcher: "Dispatcher | None" = None


def http_client(settings: Settings, *, connections: int = 4) -> httpx.Client:
    """A keep-alive client for one sending thread (or for the CLI's read-only calls).

    Its transport is the lean ``KeepAliveTransport`` unless ``HTTP_TRANSPORT=httpx`` or a proxy is configured
    in the environment (``HTTPS_PROXY`` and friends): then httpx's own, which speaks to proxies."""
    if settings.http_transport == "keepalive" and not _proxied():
        from .providers.transport import KeepAliveTransport

        transport = KeepAliveTransport(max_idle=connections)
        client = _ProviderClient(transport=transport, timeout=settings.http_timeout, follow_redirects=False)
        client.direct = transport
        return client
    return _ProviderClient(limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
                           timeout=settings.http_timeout, follow_redirects=False)


class _NoCookies(httpx.Cookies):
    """Keeps nothing: provider APIs authenticate with keys, and a Set-Cookie must not travel to the next request."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None

    def set(self, name: str, value: str, domain: str = "", path: str = "/") -> None:
        return None


class _ProviderClient(httpx.Client):
    """An httpx.Client without cookie bookkeeping, which costs about 15 % of a request's CPU
    (httpx copies every request and response into urllib objects for it).

    Over the lean transport (``direct``), the requests the adapters make (read in full, no redirects, no event
    hooks, no auth but basic) go straight to it: ``send`` skips httpx's auth and redirect generators and the
    stream wrapper that times the body, about 10 % of a worker's CPU. Anything else is httpx's own ``send``.
    """

    direct: httpx.BaseTransport | None = None

    def send(self, request: httpx.Request, *, stream: bool = False, auth: Any = httpx.USE_CLIENT_DEFAULT,
             follow_redirects: Any = httpx.USE_CLIENT_DEFAULT) -> httpx.Response:
        if auth is httpx.USE_CLIENT_DEFAULT:
            auth = self.auth
        if isinstance(auth, tuple):
            auth = httpx.BasicAuth(*auth)
        redirects = self.follow_redirects if follow_redirects is httpx.USE_CLIENT_DEFAULT else follow_redirects
        plain_auth = auth is None or type(auth) is httpx.BasicAuth
        if (self.direct is None or stream or redirects or self.is_closed or not plain_auth
                or self.event_hooks["request"] or self.event_hooks["response"]):
            return super().send(request, stream=stream, auth=auth, follow_redirects=follow_redirects)
        if auth is not None:
            request = next(auth.auth_flow(request))     # sets the Authorization header; basic auth asks nothing back
        response = self.direct.handle_request(request)
        response.request = request
        response.default_encoding = self._default_encoding
        try:
            response.read()
        finally:
            response.close()
        return response

    @property  # type: ignore[override]
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, cookies: object) -> None:
        pass


_NO_COOKIES = _NoCookies()


def _proxied() -> bool:
    from urllib.request import getproxies

    return any(scheme in getproxies() for scheme in ("http", "https", "all"))


def store(settings: Settings | None = None) -> Store:
    settings = settings or get_settings()
    return Store(make_engine(settings.database_url))


def dispatcher() -> "Dispatcher":
    global _pid, _dispatcher
    with _lock:
        if _dispatcher is None or _pid != os.getpid():
            from .engine import Dispatcher
            from .ratelimit import RateLimiter

            settings = get_settings()
            if _pid is not None and _pid != os.getpid():
                make_engine.cache_clear()
            eng_store = store(settings)
            _dispatcher = Dispatcher(settings, eng_store, TaskQueue(settings),
                                     RateLimiter(redis.Redis.from_url(settings.redis_url)), lambda: http_client(settings))
            _pid = os.getpid()
        return _dispatcher


def finish_handed_off() -> None:
    """Wait, up to ``STALE_AFTER`` seconds, for the batches this process's dispatcher handed off to finish."""
    with _lock:
        d = _dispatcher if _pid == os.getpid() else None
    if d is not None and not d.wait_handed_off(d.settings.stale_after):
        import logging

        logging.getLogger(__name__).warning("stopping with sends still out after %ss: the reconciler marks them "
                                            "unknown", d.settings.stale_after)
