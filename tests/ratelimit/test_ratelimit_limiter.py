"""RateLimiter against the real Redis, from one process: reservations, cost, burst, isolation,
back-off and recovery, expiry, round trips, failures, and the caller's clock left out.

Slots are estimated on the caller's side as ``perf_counter() before the call + wait``; the
gap to Redis's own "now" is one network hop, hence the few-millisecond tolerances.
"""

from __future__ import annotations

import itertools
import math
import socket
import time
from typing import Any, Callable

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from dispatcher.errors import TransientError
from dispatcher.ratelimit import Rate, RateLimiter, Reservation, limiter_key

from conftest import PREFIX  # type: ignore[import-not-found]  # tests/ratelimit/conftest.py

TOL = 0.005  # seconds


def book(limiter: RateLimiter, key: str, rate: Rate, costs: list[int], *, max_wait: float = 10.0) -> list[float]:
    """Reserve one slot per cost back to back; return each slot's time on the perf_counter clock."""
    slots = []
    for cost in costs:
        before = time.perf_counter()
        r = limiter.acquire(key, rate, cost=cost, max_wait=max_wait)
        assert r.granted, r
        slots.append(before + r.wait)
    return slots


def gaps(slots: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(slots)]


def test_idle_key_grants_at_once_then_spaces_slots_one_interval_apart(make_limiter: Callable[..., RateLimiter], key: str) -> None:
    limiter = make_limiter()
    first = limiter.acquire(key, Rate.parse("10/s"), max_wait=0)
    assert first == Reservation(granted=True, wait=0.0)
    slots = book(limiter, key, Rate.parse("10/s"), [1] * 5)
    assert slots[0] - time.perf_counter() > 0.05
    assert gaps(slots) == pytest.approx([0.1] * 4, abs=TOL)


def test_refusal_beyond_max_wait_reserves_nothing(make_limiter: Callable[..., RateLimiter], key: str, client: redis.Redis) -> None:
    limiter, rate = make_limiter(), Rate.parse("10/s")
    limiter.acquire(key, rate, max_wait=0)
    state = client.hgetall(PREFIX + key)
    for _ in range(50):
        r = limiter.acquire(key, rate, max_wait=0.05)
        assert not r.granted
        assert 0.05 < r.wait <= 0.1
    assert client.hgetall(PREFIX + key) == state
    assert limiter.acquire(key, rate, max_wait=1).wait <= 0.1


def test_cost_holds_the_key_for_cost_intervals(make_limiter: Callable[..., RateLimiter], key: str) -> None:
    limiter, rate = make_limiter(), Rate.parse("20/s")
    slots = book(limiter, key, rate, [3, 1, 2, 1])
    assert gaps(slots) == pytest.approx([0.15, 0.05, 0.10], abs=TOL)
    r = limiter.acquire(key, rate, cost=4, max_wait=0.1)
    assert not r.granted and r.wait == pytest.approx(slots[-1] + 0.05 - time.perf_counter(), abs=TOL)


def test_burst_lets_that_many_go_back_to_back_after_idle(make_limiter: Callable[..., RateLimiter], key: str) -> None:
    limiter, rate = make_limiter(), Rate.parse("10/s", burst=3)
    waits = [limiter.acquire(key, rate, max_wait=10).wait for _ in range(5)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3:] == pytest.approx([0.1, 0.2], abs=TOL)


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
    assert a.acquire(key, rate, max_wait=1).wait == 0.0
    assert b.acquire(key, rate, max_wait=1).wait == pytest.approx(0.1, abs=TOL)
    assert a.acquire(key, rate, max_wait=1).wait == pytest.approx(0.2, abs=TOL)
    other.close()


def test_throttle_halves_rate_and_blocks_slots_until_retry_after(make_limiter: Callable[..., RateLimiter], key: str) -> None:
    limiter, rate = make_limiter(), Rate.parse("100/s")
    at = time.perf_counter()
    assert limiter.penalise(key, retry_after=0.25) == 0.5
    assert limiter.effective_rate(key, rate) == 50.0
    r = limiter.acquire(key, rate, max_wait=0.1)
    assert not r.granted and r.wait == pytest.approx(at + 0.25 - time.perf_counter(), abs=TOL)
    slots = book(limiter, key, rate, [1] * 4)
    assert slots[0] == pytest.approx(at + 0.25, abs=TOL)
    assert gaps(slots) == pytest.approx([0.02] * 3, abs=TOL)


def test_throttle_without_retry_after_only_slows(make_limiter: Callable[..., RateLimiter], key: str) -> None:
    limiter, rate = make_limiter(), Rate.parse("100/s")
    limiter.penalise(key, retry_after=None)
    slots = book(limiter, key, rate, [1] * 3)
    assert slots[0] <= time.perf_counter()
    assert gaps(slots) == pytest.approx([0.02] * 2, abs=TOL)


def test_throttles_within_penalty_gap_cut_once_and_extend_block(make_limiter: Callable[..., RateLimiter], key: str) -> None:
    limiter, rate = make_limiter(penalty_gap=1.0), Rate.parse("100/s")
    assert [limiter.penalise(key, retry_after=ra) for ra in (0.1, 0.3, 0.2)] == [0.5, 0.5, 0.5]
    assert limiter.effective_rate(key, rate) == 50.0
    assert limiter.acquire(key, rate, max_wait=1).wait > 0.25


def test_back_off_floors_at_min_fraction(make_limiter: Callable[..., RateLimiter], key: str) -> None:
    limiter, rate = make_limiter(penalty_gap=0, min_fraction=0.1), Rate.parse("100/s")
    assert [limiter.penalise(key, retry_after=None) for _ in range(6)] == [0.5, 0.25, 0.125, 0.1, 0.1, 0.1]
    assert limiter.effective_rate(key, rate) == pytest.approx(10.0)
    assert gaps(book(limiter, key, rate, [1] * 3)) == pytest.approx([0.1] * 2, abs=TOL)


def poll_fractions(limiter: RateLimiter, key: str, rate: Rate, *, since: tuple[float, float], duration: float) -> list[tuple[float, float, float]]:
    """Sample the effective fraction for ``duration`` s: (earliest, latest possible age since ``since``, fraction)."""
    samples = []
    end = time.perf_counter() + duration
    while time.perf_counter() < end:
        before = time.perf_counter()
        fraction = limiter.effective_rate(key, rate) / rate.per_second
        after = time.perf_counter()
        samples.append((before - since[1], after - since[0], fraction))
        time.sleep(0.01)
    return samples


def assert_doubling(samples: list[tuple[float, float, float]], start: float, quiet: float) -> None:
    for lo, hi, fraction in samples:
        allowed = {min(1.0, start * 2 ** k) for k in range(math.floor(lo / quiet), math.floor(hi / quiet) + 1)}
        assert any(fraction == pytest.approx(a) for a in allowed), (lo, hi, fraction, allowed)


def test_rate_recovers_doubling_per_quiet_period(make_limiter: Callable[..., RateLimiter], key: str) -> None:
    quiet = 0.2
    limiter, rate = make_limiter(quiet_period=quiet, penalty_gap=0), Rate.parse("100/s")
    before = time.perf_counter()
    for _ in range(3):
        last = limiter.penalise(key, retry_after=None)
    after = time.perf_counter()
    assert last == 0.125
    samples = poll_fractions(limiter, key, rate, since=(before, after), duration=0.8)
    assert_doubling(samples, 0.125, quiet)
    assert {f for _, _, f in samples} == {0.125, 0.25, 0.5, 1.0}
    assert gaps(book(limiter, key, rate, [1] * 3)) == pytest.approx([0.01] * 2, abs=TOL)


def test_throttle_during_recovery_restarts_the_quiet_period(make_limiter: Callable[..., RateLimiter], key: str) -> None:
    quiet = 0.3
    limiter, rate = make_limiter(quiet_period=quiet, penalty_gap=0), Rate.parse("100/s")
    limiter.penalise(key, retry_after=None)
    time.sleep(0.15)
    before = time.perf_counter()
    assert limiter.penalise(key, retry_after=None) == 0.25
    after = time.perf_counter()
    samples = poll_fractions(limiter, key, rate, since=(before, after), duration=0.45)
    assert_doubling(samples, 0.25, quiet)


def test_keys_expire_once_their_state_no_longer_matters(make_limiter: Callable[..., RateLimiter], key: str, client: redis.Redis) -> None:
    limiter, rate = make_limiter(quiet_period=10.0), Rate.parse("10/s")
    limiter.acquire(key, rate, max_wait=0)
    assert 1000 < client.pttl(PREFIX + key) <= 1100  # schedule end (+0.1 s) and 1 s of slack
    limiter.penalise(key, retry_after=30)
    assert 30_000 < client.pttl(PREFIX + key) <= 31_000  # the block outlasts the recovery
    limiter.penalise(limiter_key("quiet"), retry_after=None)
    assert 10_000 < client.pttl(PREFIX + "quiet:account") <= 11_000  # one quiet period back to full rate


def test_caller_clock_is_never_consulted(make_limiter: Callable[..., RateLimiter], key: str, client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    limiter, rate = make_limiter(), Rate.parse("20/s")
    for absurd in (0.0, 1e10):  # 1970, and the year 2286
        monkeypatch.setattr(time, "time", lambda: absurd)
        monkeypatch.setattr(time, "time_ns", lambda: int(absurd * 1e9))
        monkeypatch.setattr(time, "monotonic", lambda: absurd)
        monkeypatch.setattr(time, "monotonic_ns", lambda: int(absurd * 1e9))
        k = f"{key}{absurd:.0f}"
        assert gaps(book(limiter, k, rate, [1] * 4)) == pytest.approx([0.05] * 3, abs=TOL)
        at = time.perf_counter()
        limiter.penalise(k, retry_after=0.2)
        slot = book(limiter, k, rate, [1])[0]
        assert slot == pytest.approx(at + 0.2, abs=TOL)
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
    assert limiter.acquire(key, rate, max_wait=0).granted
    assert (CountingRedis.calls, limiter._sha) == (3, real)
    assert limiter.acquire(key, rate, max_wait=1).wait == pytest.approx(0.1, abs=TOL)
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
