"""RateLimiter against the real Redis, from one process: reservations, cost, burst, isolation,
back-off and recovery, expiry, round trips, failures, and the caller's clock left out.

Redis decides on its own clock; the tests see it through calls. Redis's "now" for a call lies
between the caller's clock readings before and after it, so a slot (now + ``wait``) is known
as a ``Moment``, a span of the caller's ``perf_counter``, and every timing check is exact
reasoning over those spans: tight on a quiet machine, never flaky on a busy one.
"""

from __future__ import annotations

import math
import socket
import time
from typing import Any, Callable, NamedTuple, TypeVar

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from dispatcher.errors import TransientError
from dispatcher.ratelimit import Rate, RateLimiter, Reservation, limiter_key

PREFIX = "rl:test:"  # as the `make_limiter` fixture's limiters
EPS = 2e-6  # seconds: waits come rounded up to the microsecond
T = TypeVar("T")


class Moment(NamedTuple):
    """A moment of Redis time, known to lie within [lo, hi] of the caller's perf_counter."""

    lo: float
    hi: float

    def __add__(self, seconds: float) -> Moment:  # type: ignore[override]
        return Moment(self.lo + seconds, self.hi + seconds)


def timed(call: Callable[[], T]) -> tuple[T, Moment]:
    """``call()``'s result and when Redis ran it."""
    before = time.perf_counter()
    result = call()
    return result, Moment(before, time.perf_counter())


def book(limiter: RateLimiter, key: str, rate: Rate, costs: list[int], *, max_wait: float = 10.0) -> list[Moment]:
    """Reserve one slot per cost back to back; return each slot."""
    slots = []
    for cost in costs:
        r, now = timed(lambda: limiter.acquire(key, rate, cost=cost, max_wait=max_wait))
        assert r.granted, r
        slots.append(now + r.wait)
    return slots


def assert_same(a: Moment, b: Moment) -> None:
    assert a.lo - EPS <= b.hi and b.lo - EPS <= a.hi, (a, b)


def assert_gaps(slots: list[Moment], expected: list[float]) -> None:
    """Consecutive slots are ``expected`` seconds apart."""
    assert len(slots) == len(expected) + 1
    for a, b, gap in zip(slots, slots[1:], expected):
        assert b.lo - a.hi - EPS <= gap <= b.hi - a.lo + EPS, (a, b, gap)


def test_idle_key_grants_at_once_then_spaces_slots_one_interval_apart(make_limiter: Callable[..., RateLimiter], key: str) -> None:
    limiter, rate = make_limiter(), Rate.parse("10/s")
    first, now = timed(lambda: limiter.acquire(key, rate, max_wait=0))
    assert first == Reservation(granted=True, wait=0.0)
    slots = book(limiter, key, rate, [1] * 5)
    assert_gaps([now, *slots], [0.1] * 5)


def test_refusal_beyond_max_wait_reserves_nothing(make_limiter: Callable[..., RateLimiter], key: str, client: redis.Redis) -> None:
    limiter, rate = make_limiter(), Rate.parse("2/s")
    _, now = timed(lambda: limiter.acquire(key, rate, max_wait=0))
    state = client.hgetall(PREFIX + key)
    for _ in range(50):
        r = limiter.acquire(key, rate, max_wait=0)
        assert not r.granted
        assert 0 < r.wait <= 0.5
    assert client.hgetall(PREFIX + key) == state
    assert_same(book(limiter, key, rate, [1])[0], now + 0.5)


def test_cost_holds_the_key_for_cost_intervals(make_limiter: Callable[..., RateLimiter], key: str) -> None:
    limiter, rate = make_limiter(), Rate.parse("20/s")
    slots = book(limiter, key, rate, [3, 1, 2, 1])
    assert_gaps(slots, [0.15, 0.05, 0.10])
    r, now = timed(lambda: limiter.acquire(key, rate, cost=4, max_wait=0.1))
    assert not r.granted
    assert_same(now + r.wait, slots[-1] + 0.05)


def test_burst_lets_that_many_go_back_to_back_after_idle(make_limiter: Callable[..., RateLimiter], key: str) -> None:
    limiter, rate = make_limiter(), Rate.parse("10/s", burst=3)
    first, now = timed(lambda: limiter.acquire(key, rate, max_wait=10))
    assert [first.wait] + [limiter.acquire(key, rate, max_wait=10).wait for _ in range(2)] == [0.0, 0.0, 0.0]
    fourth, fifth = book(limiter, key, rate, [1, 1])
    assert_same(fourth, now + 0.1)
    assert_same(fifth, now + 0.2)


def test_keys_do_not_share_capacity(make_limiter: Callable[..., RateLimiter]) -> None:
    limiter, rate = make_limiter(), Rate.parse("10/s")
    busy, other = limiter_key("dropcowboy"), limiter_key("skycore")
    sender = limiter_key("skycore", "from:+15550001111")
    book(limiter, busy, rate, [1] * 30)
    limiter.penalise(busy, retry_after=5)
    for k in (other, sender):
        assert limiter.acquire(k, rate, max_wait=0) == Reservation(True, 0.0)
        assert limiter.effective_rate(k, rate) == 10.0
    assert limiter.effective_rate(busy, rate) == 5.0


def test_two_workers_on_one_key_share_one_schedule(redis_client: redis.Redis, redis_url: str, key: str) -> None:
    other = redis.Redis.from_url(redis_url)
    a, b = RateLimiter(redis_client, prefix=PREFIX), RateLimiter(other, prefix=PREFIX)
    rate = Rate.parse("10/s")
    other.ping()
    slots = book(a, key, rate, [1]) + book(b, key, rate, [1]) + book(a, key, rate, [1])
    assert_gaps(slots, [0.1, 0.1])
    other.close()


def test_throttle_halves_rate_and_blocks_slots_until_retry_after(make_limiter: Callable[..., RateLimiter], key: str) -> None:
    limiter, rate = make_limiter(), Rate.parse("100/s")
    fraction, throttled = timed(lambda: limiter.penalise(key, retry_after=0.25))
    assert fraction == 0.5
    assert limiter.effective_rate(key, rate) == 50.0
    refused, now = timed(lambda: limiter.acquire(key, rate, max_wait=0.1))
    assert not refused.granted
    assert_same(now + refused.wait, throttled + 0.25)
    slots = book(limiter, key, rate, [1] * 4)
    assert_same(slots[0], throttled + 0.25)
    assert_gaps(slots, [0.02] * 3)


def test_throttle_without_retry_after_only_slows(make_limiter: Callable[..., RateLimiter], key: str) -> None:
    limiter, rate = make_limiter(), Rate.parse("100/s")
    limiter.penalise(key, retry_after=None)
    first, now = timed(lambda: limiter.acquire(key, rate, max_wait=0))
    assert first.granted
    assert_gaps([now, *book(limiter, key, rate, [1] * 2)], [0.02] * 2)


def test_throttles_within_penalty_gap_cut_once_and_extend_block(make_limiter: Callable[..., RateLimiter], key: str) -> None:
    limiter, rate = make_limiter(penalty_gap=1.0), Rate.parse("100/s")
    assert [limiter.penalise(key, retry_after=ra) for ra in (0.1, 0.6, 0.2)] == [0.5, 0.5, 0.5]
    assert limiter.effective_rate(key, rate) == 50.0
    assert limiter.acquire(key, rate, max_wait=1).wait > 0.4


def test_back_off_floors_at_min_fraction(make_limiter: Callable[..., RateLimiter], key: str) -> None:
    limiter, rate = make_limiter(penalty_gap=0, min_fraction=0.1), Rate.parse("100/s")
    assert [limiter.penalise(key, retry_after=None) for _ in range(6)] == [0.5, 0.25, 0.125, 0.1, 0.1, 0.1]
    assert limiter.effective_rate(key, rate) == pytest.approx(10.0)
    assert_gaps(book(limiter, key, rate, [1] * 3), [0.1] * 2)


def poll_fractions(limiter: RateLimiter, key: str, rate: Rate, *, since: Moment, duration: float) -> list[tuple[float, float, float]]:
    """Sample the fraction of ``rate`` in force for ``duration`` s: (least, most seconds since ``since``, fraction)."""
    samples = []
    end = time.perf_counter() + duration
    while time.perf_counter() < end:
        effective, now = timed(lambda: limiter.effective_rate(key, rate))
        samples.append((now.lo - since.hi, now.hi - since.lo, effective / rate.per_second))
        time.sleep(0.01)
    return samples


def assert_doubling(samples: list[tuple[float, float, float]], start: float, quiet: float) -> None:
    for lo, hi, fraction in samples:
        allowed = {min(1.0, start * 2 ** k) for k in range(math.floor(lo / quiet), math.floor(hi / quiet) + 1)}
        assert any(fraction == pytest.approx(a) for a in allowed), (lo, hi, fraction, allowed)


def test_rate_recovers_doubling_per_quiet_period(make_limiter: Callable[..., RateLimiter], key: str) -> None:
    quiet = 0.2
    limiter, rate = make_limiter(quiet_period=quiet, penalty_gap=0), Rate.parse("100/s")
    limiter.penalise(key, retry_after=None)
    limiter.penalise(key, retry_after=None)
    last, throttled = timed(lambda: limiter.penalise(key, retry_after=None))
    assert last == 0.125
    samples = poll_fractions(limiter, key, rate, since=throttled, duration=0.8)
    assert_doubling(samples, 0.125, quiet)
    assert {f for _, _, f in samples} == {0.125, 0.25, 0.5, 1.0}
    assert_gaps(book(limiter, key, rate, [1] * 3), [0.01] * 2)


def test_throttle_during_recovery_restarts_the_quiet_period(make_limiter: Callable[..., RateLimiter], key: str) -> None:
    quiet = 0.3
    limiter, rate = make_limiter(quiet_period=quiet, penalty_gap=0), Rate.parse("100/s")
    limiter.penalise(key, retry_after=None)
    time.sleep(0.15)
    fraction, throttled = timed(lambda: limiter.penalise(key, retry_after=None))
    assert fraction == 0.25
    samples = poll_fractions(limiter, key, rate, since=throttled, duration=0.45)
    assert_doubling(samples, 0.25, quiet)


def test_keys_expire_once_their_state_no_longer_matters(make_limiter: Callable[..., RateLimiter], key: str, client: redis.Redis) -> None:
    limiter, rate = make_limiter(quiet_period=10.0), Rate.parse("10/s")
    limiter.acquire(key, rate, max_wait=0)
    assert 900 < client.pttl(PREFIX + key) <= 1100  # schedule end (+0.1 s) and 1 s of slack
    limiter.penalise(key, retry_after=30)
    assert 29_900 < client.pttl(PREFIX + key) <= 31_000  # the block outlasts the recovery
    limiter.penalise(limiter_key("quiet"), retry_after=None)
    assert 9_900 < client.pttl(PREFIX + "quiet:account") <= 11_000  # one quiet period back to full rate


def test_caller_clock_is_never_consulted(make_limiter: Callable[..., RateLimiter], key: str, client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    limiter, rate = make_limiter(), Rate.parse("20/s")
    for absurd in (0.0, 1e10):  # 1970, and the year 2286
        monkeypatch.setattr(time, "time", lambda: absurd)
        monkeypatch.setattr(time, "time_ns", lambda: int(absurd * 1e9))
        monkeypatch.setattr(time, "monotonic", lambda: absurd)
        monkeypatch.setattr(time, "monotonic_ns", lambda: int(absurd * 1e9))
        k = f"{key}{absurd:.0f}"
        assert_gaps(book(limiter, k, rate, [1] * 4), [0.05] * 3)
        _, throttled = timed(lambda: limiter.penalise(k, retry_after=0.5))
        assert_same(book(limiter, k, rate, [1])[0], throttled + 0.5)
        monkeypatch.undo()
        redis_now = float(client.time()[0])
        assert abs(float(client.hget(PREFIX + k, "tat")) / 1e6 - redis_now) < 5


class CountingRedis(redis.Redis):
    calls = 0

    def execute_command(self, *args: Any, **options: Any) -> Any:
        CountingRedis.calls += 1
        return super().execute_command(*args, **options)


def test_each_call_is_one_round_trip(redis_client: redis.Redis, redis_url: str, key: str) -> None:
    counting = CountingRedis.from_url(redis_url)
    limiter, rate = RateLimiter(counting, prefix=PREFIX), Rate.parse("50/s")
    limiter.effective_rate(key, rate)
    CountingRedis.calls = 0
    limiter.acquire(key, rate, max_wait=1)
    limiter.acquire(key, rate, max_wait=0)
    limiter.penalise(key, retry_after=None)
    limiter.effective_rate(key, rate)
    assert CountingRedis.calls == 4
    counting.close()


def test_script_is_loaded_again_after_noscript(redis_client: redis.Redis, redis_url: str, key: str) -> None:
    counting = CountingRedis.from_url(redis_url)
    limiter, rate = RateLimiter(counting, prefix=PREFIX), Rate.parse("10/s")
    real = limiter._sha
    # As after a Redis restart; SCRIPT FLUSH would also drop every other user's scripts on this server.
    limiter._sha = "0" * 40
    CountingRedis.calls = 0
    first, now = timed(lambda: limiter.acquire(key, rate, max_wait=0))
    assert first.granted
    assert (CountingRedis.calls, limiter._sha) == (3, real)
    assert_same(book(limiter, key, rate, [1])[0], now + 0.1)
    counting.close()


def test_redis_failure_is_a_transient_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket is closed
    # No client-side retries: redis-py 8 retries a refused connection with back-off for ~10 s.
    dead = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
    limiter = RateLimiter(dead)
    for call in (
        lambda: limiter.acquire("x:account", Rate.parse("1/s"), max_wait=1),
        lambda: limiter.penalise("x:account", retry_after=1),
        lambda: limiter.effective_rate("x:account", Rate.parse("1/s")),
    ):
        with pytest.raises(TransientError, match="rl:x:account") as info:
            call()
        assert isinstance(info.value.__cause__, redis.ConnectionError)


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [({"cost": 0}, "cost"), ({"cost": 1.5}, "cost"), ({"max_wait": -1}, "max_wait"), ({"max_wait": math.nan}, "max_wait")],
)
def test_acquire_rejects_bad_arguments(redis_client: redis.Redis, kwargs: dict[str, Any], says: str) -> None:
    limiter = RateLimiter(redis_client, prefix=PREFIX)
    with pytest.raises(ValueError, match=says):
        limiter.acquire("x:account", Rate.parse("1/s"), **{"max_wait": 1.0, **kwargs})


def test_penalise_and_tuning_reject_bad_numbers(redis_client: redis.Redis) -> None:
    with pytest.raises(ValueError, match="retry_after"):
        RateLimiter(redis_client).penalise("x:account", retry_after=-1)
    with pytest.raises(ValueError, match="non-empty"):
        RateLimiter(redis_client).acquire("", Rate.parse("1/s"), max_wait=1)
    for tuning in ({"backoff": 1.0}, {"min_fraction": 0}, {"quiet_period": 0}, {"penalty_gap": 20}):
        with pytest.raises(ValueError):
            RateLimiter(redis_client, **tuning)
