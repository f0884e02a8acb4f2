"""Shared HTTP plumbing for the provider adapters: one request, bounded retries, one answer.

``request`` sends one logical request through the caller's ``httpx.Client`` and returns either
a ``Reply`` for the adapter to classify, or a finished ``SendResult`` when the transport alone
decides the outcome. httpx exceptions are translated here and nowhere else:

    connect error, connect/pool timeout    retried       exhausted -> RETRYABLE
    HTTP 5xx                               retried       exhausted -> RETRYABLE
    HTTP 429                               retried       exhausted -> THROTTLED (retry_after)
    Retry-After beyond the wait budget     not retried             -> THROTTLED / RETRYABLE (retry_after)
    read/write timeout, connection lost
      once the body may have been sent     never retried           -> UNKNOWN
    request cannot be built (bad URL)      never retried           -> REJECTED
    any other status                       a Reply: the adapter classifies it

Backoff is jittered exponential; a Retry-After header replaces it. The sleeps of one
request never add up to more than ``RetryPolicy.wait_budget`` seconds.
"""

from __future__ import annotations

import email.utils
import functools
import logging
import math
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, ClassVar, Mapping
from urllib.parse import quote

import httpx
import tenacity

from dispatcher.errors import InputError
from dispatcher.phones import mask
from dispatcher.providers.base import NumberFormat, Outcome, ProviderConfig, SendResult

log = logging.getLogger(__name__)

_CONNECT_FAILURES = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError)
_UNSENDABLE = (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.InvalidURL)
_EXCERPT = 200


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Transport retries for one request. Times in seconds."""

    attempts: int = 3            # HTTP requests at most, the first included
    initial_wait: float = 0.25   # first backoff; doubles per retry, plus up to the same again as jitter
    max_wait: float = 2.0        # one computed backoff at most (a Retry-After is honoured up to the budget)
    wait_budget: float = 5.0     # total sleep per request; a longer Retry-After ends the retries
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)


DEFAULT_RETRY = RetryPolicy()


@dataclass(frozen=True, slots=True)
class Reply:
    """A provider's HTTP answer that the transport did not settle (not 5xx, not 429)."""

    status_code: int
    body: Any                  # decoded JSON, or None when the body is empty or not JSON
    text: str                  # the raw body, for details when it is not JSON
    retry_after: float | None
    tries: int
    duration: float

    def result(self, outcome: Outcome, **fields: Any) -> SendResult:
        """A ``SendResult`` for this answer; status, tries and duration filled in."""
        return SendResult(outcome, status_code=self.status_code, tries=self.tries, duration=self.duration, **fields)

    def get(self, key: str) -> Any:
        """``body[key]`` when the body is a JSON object, else None."""
        return self.body.get(key) if isinstance(self.body, dict) else None

    def excerpt(self) -> str:
        return excerpt(self.text) or f"HTTP {self.status_code} with an empty body"


def request(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    timeout: float,
    json: Any = None,
    headers: Mapping[str, str] | None = None,
    auth: tuple[str, str] | None = None,
    policy: RetryPolicy = DEFAULT_RETRY,
    label: str = "",
) -> Reply | SendResult:
    """Send one request with transport retries; never raises an httpx exception.

    ``timeout`` (seconds) applies to each HTTP request made, not to the sum of retries.
    ``label`` names the request in logs (provider and masked number); it must hold no secret.
    """
    started = time.monotonic()
    tries = 0

    def once() -> httpx.Response | Exception:
        nonlocal tries
        tries += 1
        try:
            return client.request(method, _parsed(url), json=json, headers=headers, auth=auth, timeout=timeout)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            return exc

    def log_retry(state: tenacity.RetryCallState) -> None:
        log.info("%s: %s, try %d of %d in %.2fs", label, _describe(_last(state)), state.attempt_number + 1,
                 policy.attempts, state.upcoming_sleep)

    first = once()
    if not _retryable(first):
        # The common case answers at once; tenacity's bookkeeping is only paid when a retry may follow.
        return _conclude(first, tries=tries, duration=time.monotonic() - started, timeout=timeout)
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_result(_retryable),
        wait=_Wait(policy),
        stop=tenacity.stop_after_attempt(policy.attempts) | _WaitBudget(policy.wait_budget),
        sleep=policy.sleep,
        before_sleep=log_retry,
        retry_error_callback=_last,
    )
    pending = [first]
    last = retrying(lambda: pending.pop() if pending else once())
    return _conclude(last, tries=tries, duration=time.monotonic() - started, timeout=timeout)


@functools.lru_cache(maxsize=1024)
def _parsed(url: str) -> httpx.URL | str:
    """An adapter's endpoint URL parsed once, not on every request (most adapters post to one or two)."""
    try:
        return httpx.URL(url)
    except httpx.InvalidURL:
        return url          # the request itself raises, and is classified as unsendable


def _last(state: tenacity.RetryCallState) -> Any:
    assert state.outcome is not None
    return state.outcome.result()


def _retryable(last: httpx.Response | Exception) -> bool:
    if isinstance(last, httpx.Response):
        return last.status_code == 429 or last.status_code >= 500
    return isinstance(last, _CONNECT_FAILURES)


class _Wait(tenacity.wait.wait_base):
    """Retry-After when the answer carries one, else tenacity's jittered exponential backoff."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._backoff = tenacity.wait_exponential_jitter(
            initial=policy.initial_wait, max=policy.max_wait, jitter=policy.initial_wait
        )

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        last = _last(retry_state)
        if isinstance(last, httpx.Response):
            after = retry_after(last.headers)
            if after is not None:
                return after
        return float(self._backoff(retry_state))


class _WaitBudget(tenacity.stop.stop_base):
    """Stop when the next sleep would take the total past ``budget`` seconds."""

    def __init__(self, budget: float) -> None:
        self._budget = budget

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return retry_state.idle_for + retry_state.upcoming_sleep > self._budget


def _conclude(last: httpx.Response | Exception, *, tries: int, duration: float, timeout: float) -> Reply | SendResult:
    def settled(outcome: Outcome, detail: str, **fields: Any) -> SendResult:
        return SendResult(outcome, detail=detail, tries=tries, duration=duration, **fields)

    if isinstance(last, _CONNECT_FAILURES):
        return settled(Outcome.RETRYABLE, f"could not reach the provider: {_describe(last)}")
    if isinstance(last, _UNSENDABLE):
        return settled(Outcome.REJECTED,
                       f"request could not be sent (check base_url and credentials): {_describe(last)}")
    if isinstance(last, httpx.TimeoutException):
        return settled(Outcome.UNKNOWN,
                       f"no answer within {timeout:g}s after sending; the provider may have accepted it")
    if isinstance(last, Exception):
        return settled(Outcome.UNKNOWN,
                       f"connection lost after sending; the provider may have accepted it: {_describe(last)}")

    after = retry_after(last.headers)
    status = last.status_code
    if status == 429:
        return settled(Outcome.THROTTLED, f"HTTP 429: {excerpt(last.text) or 'too many requests'}", status_code=status,
                       retry_after=after)
    if status >= 500:
        return settled(Outcome.RETRYABLE, f"HTTP {status}: {excerpt(last.text) or 'server error'}", status_code=status,
                       retry_after=after)
    body = _json_or_none(last)
    # JSON is UTF-8 (RFC 8259): spare the charset sniffing of Response.text, which costs more than the parse.
    text = last.content.decode("utf-8", "replace") if body is not None else last.text
    return Reply(status, body, text, after, tries, duration)


def _json_or_none(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:  # not JSON (or not decodable): the adapter falls back to the text
        return None


def _describe(last: httpx.Response | Exception) -> str:
    if isinstance(last, httpx.Response):
        return f"HTTP {last.status_code}"
    message = str(last)
    return f"{type(last).__name__}: {message}" if message else type(last).__name__


def retry_after(headers: httpx.Headers) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date); None if absent or unreadable."""
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def excerpt(text: str | None) -> str:
    """One line of at most 200 characters, for a ``SendResult.detail``."""
    if not text:
        return ""
    line = " ".join(text.split())
    return line if len(line) <= _EXCERPT else line[: _EXCERPT - 1] + "…"


_SUPPRESSION = re.compile(
    r"opt(?:ed)?[\s_-]?out|black[\s_-]?list|unsubscri|do[\s_-]not[\s_-](?:contact|call)|\bdnc\b", re.I
)
_BILLING = re.compile(r"insufficient|out of credit|no credits?\b|billing|payment required|low balance", re.I)


def outcome_from_text(text: str) -> Outcome:
    """SUPPRESSED or BILLING when a provider's error text says so, else REJECTED."""
    if _SUPPRESSION.search(text):
        return Outcome.SUPPRESSED
    if _BILLING.search(text):
        return Outcome.BILLING
    return Outcome.REJECTED


def outcome_from_status(status: int) -> Outcome:
    """The outcome of a status the adapter has no more specific reading for."""
    if status in (401, 403):
        return Outcome.AUTH
    if status == 402:
        return Outcome.BILLING
    if 300 <= status < 500:
        return Outcome.REJECTED
    return Outcome.UNKNOWN  # an unexpected 1xx/2xx: we cannot tell whether it was accepted


_E164 = re.compile(r"\+[1-9][0-9]{6,14}")


def is_e164(value: str) -> bool:
    """``+`` then 7 to 15 ASCII digits, the first not 0."""
    return _E164.fullmatch(value) is not None


def local_result(outcome: Outcome, detail: str) -> SendResult:
    """A result decided before any request was made (tries=0)."""
    return SendResult(outcome, detail=detail, tries=0)


def option_text(options: Mapping[str, Any], key: str) -> str | None:
    """A string option, None when absent or blank."""
    value = options.get(key)
    if value is None:
        return None
    value = str(value).strip()
    return value or None


class HttpAdapter:
    """What the four adapters share: config, client, retry policy, option checks.

    Subclasses declare the ``Provider`` class attributes and implement ``send``.
    The constructor raises ``InputError`` if a required credential is missing, an option is wrong
    (see ``validate_options``) or no base URL is known.
    """

    name: ClassVar[str]
    default_base_url: ClassVar[str]
    number_format: ClassVar[NumberFormat]
    concatenates: ClassVar[bool]
    max_chars: ClassVar[int | None] = None   # characters one request accepts; None: no documented limit
    required_credentials: ClassVar[tuple[str, ...]]
    required_options: ClassVar[tuple[str, ...]]
    optional_options: ClassVar[tuple[str, ...]] = ()
    # Channels other than sms that the provider offers: channel -> (required options, optional options).
    channel_options: ClassVar[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {}

    @classmethod
    def options_for(cls, channel: str = "sms") -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(required, optional) option names for a channel; KeyError names the channels the provider has."""
        if channel == "sms":
            return cls.required_options, cls.optional_options
        if channel not in cls.channel_options:
            raise KeyError(f"{cls.name} has no {channel} channel (it has: {', '.join(['sms', *cls.channel_options])})")
        return cls.channel_options[channel]

    def __init__(self, config: ProviderConfig, client: httpx.Client, *, retry: RetryPolicy = DEFAULT_RETRY) -> None:
        missing = [key for key in self.required_credentials if not config.credentials.get(key)]
        if missing:
            raise InputError(f"{self.name}: missing credential(s): {', '.join(missing)}")
        required, optional = self.options_for(config.channel)
        known = (*required, *optional)
        problems = [f"provider.options.{key} is not an option of {self.name} (known: {', '.join(known) or 'none'})"
                    for key in config.options if key not in known]
        problems += self.validate_options(config.options, channel=config.channel)
        if problems:
            raise InputError("\n".join(problems))
        self.base_url = (config.base_url or self.default_base_url).strip()
        if not self.base_url:
            raise InputError(f"{self.name}: provider.base_url is required (no public default is documented)")
        self.config = config
        self.client = client
        self.retry = retry

    @classmethod
    def validate_options(cls, options: Mapping[str, Any], *, channel: str = "sms") -> list[str]:
        """Problems with the values of a campaign's ``provider.options``, one sentence each; empty when fine.

        Missing required options are problems; unknown keys are left to the campaign validator
        (which reports them with their line), and refused by the constructor.
        Subclasses add their own checks in ``_option_problems``.
        """
        required, _ = cls.options_for(channel)
        problems = [
            f"provider.options.{key} is required for {cls.name}" + (f" {channel}" if channel != "sms" else "")
            for key in required
            if option_text(options, key) is None
        ]
        return problems + cls._option_problems(options, channel=channel)

    @classmethod
    def _option_problems(cls, options: Mapping[str, Any], *, channel: str = "sms") -> list[str]:
        return []

    def check(self, *, timeout: float) -> list[str]:
        """Read-only check of credentials and options; problems, empty when fine.

        The default checks nothing: the provider documents no read-only endpoint.
        """
        return []

    def _url(self, *parts: str) -> str:
        return "/".join([self.base_url.rstrip("/"), *(quote(part, safe="") for part in parts)])

    def _request(
        self, method: str, url: str, *, timeout: float, to: str | None = None, **kwargs: Any
    ) -> Reply | SendResult:
        label = f"{self.name} {mask(to)}" if to else self.name
        return request(self.client, method, url, timeout=timeout, policy=self.retry, label=label, **kwargs)
