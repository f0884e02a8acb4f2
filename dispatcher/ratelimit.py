"""One shared, adaptive rate limiter per provider account or sender, held in Redis.

Providers meter throughput in segments per second per account or sender, across every
worker process and host we run; Celery's ``rate_limit`` is per process. Every worker that
sends through the same provider scope therefore calls :meth:`RateLimiter.acquire` on the
same key before each send, and one Lua script decides for all of them.

The script implements GCRA (the "virtual scheduling" form of a leaky bucket) and
*reserves* slots: a caller asks for the next slot of ``cost`` segments; if it is at most
``max_wait`` seconds away it is booked and the caller sleeps ``wait`` seconds before sending,
otherwise nothing is booked and the caller re-queues the work with ``wait`` as countdown.
A booked message of ``cost`` segments goes out at its slot and holds the key for ``cost``
emission intervals (``period / count`` seconds each); after an idle period up to
``rate.burst`` segments may go back to back. Over any span of ``W`` seconds the sends booked
on one key therefore total at most ``W * rate.per_second + rate.burst - 1 + cost`` segments,
``cost`` being the largest single booking (``W * rate + 1`` for one-segment messages).

Every time comes from Redis (``TIME`` inside the script): the workers' clocks, however
wrong, never enter the decision. One ``EVALSHA`` per call; the script is loaded again
after ``NOSCRIPT`` (Redis restart, failover, ``SCRIPT FLUSH``). All of a key's state lives in
one hash that expires by itself once it no longer differs from "idle, full rate".

Adaptive back-off, also computed in Redis time so every worker agrees: a throttle answer
(HTTP 429, Skycore E106/E113/E120) reported with :meth:`RateLimiter.penalise` multiplies the
key's fraction of its configured rate by ``backoff`` (floored at ``min_fraction``) and blocks
new slots until ``retry_after`` has passed. Throttle answers within ``penalty_gap`` seconds
of the last cut are the same episode (every in-flight send of a burst answers 429) and do
not cut again. The fraction doubles for every ``quiet_period`` seconds without a throttle,
back up to 1.

Keys are logical, ``"<provider>:<scope>"`` (see :func:`limiter_key`); the limiter stores them
under its ``prefix``, so ``limiter_key("skycore", "from:+15550001111")`` lives in Redis as
``rl:skycore:from:+15550001111``. All callers of one key must pass the same :class:`Rate`.

Redis failures surface as :class:`dispatcher.errors.TransientError`; invalid arguments as
``ValueError``.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from typing import Any

import redis
from redis.exceptions import NoScriptError, RedisError

from dispatcher.errors import TransientError

__all__ = ["Rate", "Reservation", "RateLimiter", "limiter_key"]

_UNITS: dict[str, float] = {
    "s": 1.0, "sec": 1.0, "second": 1.0,
    "m": 60.0, "min": 60.0, "minute": 60.0,
    "h": 3600.0, "hr": 3600.0, "hour": 3600.0,
    "d": 86400.0, "day": 86400.0,
}
_RATE_RE = re.compile(r"\s*(\d+)\s*/\s*([a-zA-Z]+)\s*")


@dataclass(frozen=True, slots=True)
class Rate:
    """``count`` units (SMS segments) per ``period_seconds`` seconds.

    ``burst`` is how many units may go back to back after an idle period; the default 1
    means strict spacing of one emission interval (``period_seconds / count`` seconds).
    """

    count: int
    period_seconds: float
    burst: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise ValueError(f"rate count must be a whole number >= 1, got {self.count!r}")
        if not (isinstance(self.period_seconds, (int, float)) and math.isfinite(self.period_seconds)
                and self.period_seconds > 0):
            raise ValueError(f"rate period must be a finite number of seconds > 0, got {self.period_seconds!r}")
        if isinstance(self.burst, bool) or not isinstance(self.burst, int) or self.burst < 1:
            raise ValueError(f"rate burst must be a whole number >= 1, got {self.burst!r}")

    @classmethod
    def parse(cls, text: str, *, burst: int = 1) -> Rate:
        """Parse ``"<count>/<unit>"``: unit s|sec|second, m|min|minute, h|hr|hour, d|day.

        Case and spaces around ``/`` do not matter: ``"50/s"``, ``"3000 / min"``, ``"10000/d"``.
        Raises ``ValueError`` naming the text and the accepted form.
        """
        if not isinstance(text, str):
            raise ValueError(f"rate must be a string like '50/s', got {text!r}")
        m = _RATE_RE.fullmatch(text)
        if m is None:
            raise ValueError(
                f"rate {text!r}: expected '<count>/<unit>' with a whole count >= 1 and unit one of "
                "s, sec, m, min, h, d (e.g. '50/s', '3000/min')"
            )
        unit = m.group(2).lower()
        if unit not in _UNITS:
            raise ValueError(f"rate {text!r}: unknown unit {m.group(2)!r}; use s, sec, m, min, h or d")
        count = int(m.group(1))
        if count < 1:
            raise ValueError(f"rate {text!r}: count must be >= 1")
        return cls(count, _UNITS[unit], burst)

    @property
    def per_second(self) -> float:
        """Units per second."""
        return self.count / self.period_seconds

    @property
    def interval(self) -> float:
        """Emission interval: seconds per unit."""
        return self.period_seconds / self.count

    def __str__(self) -> str:
        unit = {1.0: "s", 60.0: "min", 3600.0: "h", 86400.0: "d"}.get(float(self.period_seconds))
        text = f"{self.count}/{unit}" if unit else f"{self.count}/{self.period_seconds:g}s"
        return text if self.burst == 1 else f"{text} (burst {self.burst})"


@dataclass(frozen=True, slots=True)
class Reservation:
    """The answer to :meth:`RateLimiter.acquire`.

    ``granted``: a slot is booked; sleep ``wait`` seconds, then send.
    Refused: nothing is booked; the next slot is ``wait`` seconds away (the countdown to re-queue with).
    """

    granted: bool
    wait: float


def limiter_key(provider: str, scope: str | None = None) -> str:
    """The logical key for a provider's meter: ``"<provider>:<scope>"``, scope ``"account"`` by default.

    ``provider`` is the provider's name without ``:`` (so different providers never share a
    key); ``scope`` is what the provider meters by, e.g. ``"from:+15550001111"`` for a sender.
    Campaigns on the same provider scope get the same key and share its rate.
    """
    if not provider or ":" in provider or provider != provider.strip():
        raise ValueError(f"limiter key: provider must be a non-empty name without ':' or spaces, got {provider!r}")
    if scope is not None and (not scope or scope != scope.strip()):
        raise ValueError(f"limiter key: scope must be a non-empty string without surrounding spaces, got {scope!r}")
    return f"{provider}:{scope if scope is not None else 'account'}"


# Times are microseconds of Redis time. Hash fields: tat = theoretical arrival time (the
# schedule's end), f = fraction of the configured rate as of q, q = last throttle (start of
# the quiet period), cut = last time the fraction was cut, blk = no slot before this time.
# Numbers go to Redis formatted: Lua's default tostring keeps 14 digits, too few for µs.
_SCRIPT = """
if redis.replicate_commands then redis.replicate_commands() end
local key, op, quiet = KEYS[1], ARGV[1], tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local h = redis.call('HMGET', key, 'tat', 'f', 'q', 'cut', 'blk')
local tat, f, q = tonumber(h[1]), tonumber(h[2]) or 1, tonumber(h[3]) or now
local cut, blk = tonumber(h[4]), tonumber(h[5]) or 0

local function fraction()
  if f >= 1 then return 1 end
  return math.min(1, f * 2 ^ math.floor((now - q) / quiet))
end

local function fmt(x) return string.format('%.17g', x) end

local function expire(tat_)
  local until_ = math.max(tat_ or 0, blk)
  if f < 1 then
    local g, n = f, 0
    while g < 1 do g = g * 2; n = n + 1 end
    until_ = math.max(until_, q + n * quiet)
  end
  redis.call('PEXPIRE', key, string.format('%d', math.ceil((until_ - now) / 1000) + 1000))
end

if op == 'acquire' then
  local interval, burst = tonumber(ARGV[3]), tonumber(ARGV[4])
  local cost, max_wait = tonumber(ARGV[5]), tonumber(ARGV[6])
  local step = interval / fraction()
  local tau = (burst - 1) * step
  tat = math.max(tat or now, blk + tau)
  local wait = math.max(0, tat - tau - now)
  if wait > max_wait then return {0, math.ceil(wait)} end
  tat = math.max(tat, now) + cost * step
  redis.call('HSET', key, 'tat', fmt(tat))
  expire(tat)
  return {1, math.ceil(wait)}
elseif op == 'penalise' then
  local backoff, floor, gap, retry = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
  local frac = fraction()
  if cut == nil or now - cut >= gap then
    frac = math.max(floor, frac * backoff)
    cut = now
  end
  f, q = frac, now
  if retry >= 0 then blk = math.max(blk, now + retry) end
  redis.call('HSET', key, 'f', fmt(f), 'q', fmt(q), 'cut', fmt(cut), 'blk', fmt(blk))
  expire(tat)
  return fmt(frac)
elseif op == 'fraction' then
  return fmt(fraction())
end
return redis.error_reply('ratelimit: unknown op ' .. tostring(op))
"""
_SHA = hashlib.sha1(_SCRIPT.encode()).hexdigest()

_US = 1_000_000.0


class RateLimiter:
    """GCRA slot reservations and adaptive back-off per key, shared by all processes through Redis.

    ``prefix`` is prepended to every logical key. Back-off tuning (seconds, fractions):
    a throttle multiplies the key's fraction of its configured rate by ``backoff``, never
    below ``min_fraction``; further throttles within ``penalty_gap`` seconds of a cut do not
    cut again; the fraction doubles per ``quiet_period`` seconds without a throttle, up to 1.
    Every worker should use the same tuning. Thread-safe as far as the Redis client is.
    """

    def __init__(
        self,
        redis_client: redis.Redis,
        *,
        prefix: str = "rl:",
        backoff: float = 0.5,
        min_fraction: float = 0.1,
        quiet_period: float = 10.0,
        penalty_gap: float = 1.0,
    ) -> None:
        if not 0 < backoff < 1:
            raise ValueError(f"backoff must be in (0, 1), got {backoff!r}")
        if not 0 < min_fraction <= 1:
            raise ValueError(f"min_fraction must be in (0, 1], got {min_fraction!r}")
        if not (math.isfinite(quiet_period) and quiet_period > 0):
            raise ValueError(f"quiet_period must be > 0 seconds, got {quiet_period!r}")
        if not 0 <= penalty_gap <= quiet_period:
            raise ValueError(f"penalty_gap must be between 0 and quiet_period seconds, got {penalty_gap!r}")
        self._redis = redis_client
        self._prefix = prefix
        self._backoff = backoff
        self._min_fraction = min_fraction
        self._quiet_us = quiet_period * _US
        self._gap_us = penalty_gap * _US
        self._sha = _SHA

    def acquire(self, key: str, rate: Rate, *, cost: int = 1, max_wait: float) -> Reservation:
        """Reserve the next slot of ``cost`` units (segments) on ``key`` at ``rate``.

        Granted if the slot is at most ``max_wait`` seconds away: the caller must sleep
        ``wait`` seconds, then send. Otherwise nothing is reserved and ``wait`` is how many
        seconds away the next such slot is. A throttle block or back-off set by
        :meth:`penalise` applies. Raises ``ValueError`` for a bad ``cost``/``max_wait``,
        ``TransientError`` when Redis fails.
        """
        if isinstance(cost, bool) or not isinstance(cost, int) or cost < 1:
            raise ValueError(f"cost must be a whole number of segments >= 1, got {cost!r}")
        if not (isinstance(max_wait, (int, float)) and max_wait >= 0 and not math.isnan(max_wait)):
            raise ValueError(f"max_wait must be >= 0 seconds, got {max_wait!r}")
        granted, wait_us = self._run(
            key, "acquire", repr(rate.interval * _US), rate.burst, cost,
            repr(min(float(max_wait), 1e12) * _US),
        )
        return Reservation(bool(int(granted)), int(wait_us) / _US)

    def penalise(self, key: str, *, retry_after: float | None) -> float:
        """Report a throttle answer for ``key``: cut its rate and block slots for ``retry_after`` seconds.

        ``retry_after`` is the provider's Retry-After in seconds, or None when it gave none.
        Slots already reserved stay reserved. Returns the key's new fraction of its
        configured rate (``min_fraction`` .. 1). Raises ``TransientError`` when Redis fails.
        """
        if retry_after is not None and not (math.isfinite(retry_after) and retry_after >= 0):
            raise ValueError(f"retry_after must be >= 0 seconds or None, got {retry_after!r}")
        reply = self._run(
            key, "penalise", repr(self._backoff), repr(self._min_fraction), repr(self._gap_us),
            repr(-1.0 if retry_after is None else retry_after * _US),
        )
        return float(reply)

    def effective_rate(self, key: str, rate: Rate) -> float:
        """The rate now in force on ``key``, in units per second: ``rate`` scaled by any back-off.

        Raises ``TransientError`` when Redis fails.
        """
        return rate.per_second * float(self._run(key, "fraction"))

    def _run(self, key: str, op: str, *args: object) -> Any:
        if not key:
            raise ValueError("rate limiter key must be a non-empty string")
        name = self._prefix + key
        argv = (op, repr(self._quiet_us), *args)
        try:
            try:
                return self._redis.evalsha(self._sha, 1, name, *argv)
            except NoScriptError:
                self._sha = self._redis.script_load(_SCRIPT)
                return self._redis.evalsha(self._sha, 1, name, *argv)
        except RedisError as exc:
            raise TransientError(f"rate limiter {name!r}: Redis failed: {exc}") from exc
