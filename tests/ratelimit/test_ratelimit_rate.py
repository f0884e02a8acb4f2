"""Rate strings and limiter keys: pure parsing, no Redis."""

from __future__ import annotations

import pytest

from dispatcher.ratelimit import Rate, limiter_key


@pytest.mark.parametrize(
    ("text", "count", "period"),
    [
        ("50/s", 50, 1.0),
        ("50/sec", 50, 1.0),
        ("3000/m", 3000, 60.0),
        ("3000/min", 3000, 60.0),
        ("100/h", 100, 3600.0),
        ("10000/d", 10000, 86400.0),
        (" 20 / SEC ", 20, 1.0),
        ("1/minute", 1, 60.0),
    ],
)
def test_rate_parses_count_per_unit(text: str, count: int, period: float) -> None:
    rate = Rate.parse(text)
    assert rate == Rate(count, period)
    assert rate.burst == 1
    assert rate.per_second == pytest.approx(count / period)
    assert rate.interval == pytest.approx(period / count)


def test_rate_burst_is_configurable_and_defaults_to_one() -> None:
    assert Rate.parse("50/s").burst == 1
    assert Rate.parse("50/s", burst=10) == Rate(50, 1.0, burst=10)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "expected '<count>/<unit>'"),
        ("50", "expected '<count>/<unit>'"),
        ("50/", "expected '<count>/<unit>'"),
        ("/s", "expected '<count>/<unit>'"),
        ("1.5/s", "expected '<count>/<unit>'"),
        ("-5/s", "expected '<count>/<unit>'"),
        ("50/s/s", "expected '<count>/<unit>'"),
        ("0/s", "count must be >= 1"),
        ("50/ms", "unknown unit 'ms'"),
        ("50/week", "unknown unit 'week'"),
    ],
)
def test_rate_rejects_bad_strings_naming_the_text(text: str, says: str) -> None:
    with pytest.raises(ValueError) as info:
        Rate.parse(text)
    assert repr(text) in str(info.value)
    assert says in str(info.value)


@pytest.mark.parametrize(
    ("args", "says"),
    [((0, 1.0), "count"), ((5, 0), "period"), ((5, float("inf")), "period"), ((5, 1.0, 0), "burst"), ((True, 1.0), "count")],
)
def test_rate_rejects_impossible_fields(args: tuple, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        Rate(*args)


def test_limiter_key_is_provider_then_scope_with_account_by_default() -> None:
    assert limiter_key("dropcowboy", None) == "dropcowboy:account"
    assert limiter_key("dropcowboy") == "dropcowboy:account"
    assert limiter_key("skycore", "from:+15550001111") == "skycore:from:+15550001111"


@pytest.mark.parametrize(("provider", "scope"), [("", None), ("sky:core", None), (" skycore", None), ("skycore", "")])
def test_limiter_key_rejects_names_that_could_collide(provider: str, scope: str | None) -> None:
    with pytest.raises(ValueError, match="limiter key"):
        limiter_key(provider, scope)
