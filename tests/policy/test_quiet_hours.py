"""Quiet hours per recipient zone: DST, zones without DST, split area codes, days and blackouts."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dispatcher.encoding import analyse
from dispatcher.policy import HORIZON, QuietHours, decide, next_allowed, resolve_zones

NIGHT = QuietHours(start=time(21), end=time(8))
NY, LA, PHOENIX = "America/New_York", "America/Los_Angeles", "America/Phoenix"
WEEKDAYS = frozenset(range(5))


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


@pytest.mark.parametrize(
    ("zone", "now", "expected"),
    [
        (NY, utc(2026, 1, 15, 3), utc(2026, 1, 15, 13)),        # 22:00 EST -> 08:00 EST
        (LA, utc(2026, 1, 15, 6), utc(2026, 1, 15, 16)),        # 22:00 PST -> 08:00 PST
        (PHOENIX, utc(2026, 1, 15, 5), utc(2026, 1, 15, 15)),   # 22:00 MST -> 08:00 MST
        (LA, utc(2026, 7, 15, 5), utc(2026, 7, 15, 15)),        # 22:00 PDT -> 08:00 PDT
        (PHOENIX, utc(2026, 7, 15, 5), utc(2026, 7, 15, 15)),   # Arizona keeps MST all summer
    ],
)
def test_quiet_hours_defer_until_local_8am(zone: str, now: datetime, expected: datetime) -> None:
    assert next_allowed((zone,), now, NIGHT) == expected


def test_outside_quiet_hours_next_allowed_is_now_itself() -> None:
    now = datetime(2026, 1, 15, 12, 0, tzinfo=ZoneInfo(NY))
    assert next_allowed((NY,), now, NIGHT) is now


def test_quiet_window_includes_its_start_and_excludes_its_end() -> None:
    assert next_allowed((NY,), utc(2026, 1, 15, 13), NIGHT) == utc(2026, 1, 15, 13)
    assert next_allowed((NY,), utc(2026, 1, 15, 12, 59, 59), NIGHT) == utc(2026, 1, 15, 13)
    assert next_allowed((NY,), utc(2026, 1, 16, 1, 59), NIGHT) == utc(2026, 1, 16, 1, 59)
    assert next_allowed((NY,), utc(2026, 1, 16, 2), NIGHT) == utc(2026, 1, 16, 13)


def test_no_zones_means_hold() -> None:
    assert next_allowed((), utc(2026, 1, 15, 3), NIGHT) is None


def test_without_quiet_hours_anything_goes() -> None:
    now = utc(2026, 1, 15, 3)
    assert next_allowed((NY,), now, None) is now


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError):
        next_allowed((NY,), datetime(2026, 1, 15, 3), NIGHT)


@pytest.mark.parametrize(
    ("zone", "expected"),
    [(NY, utc(2026, 3, 8, 12)), (LA, utc(2026, 3, 8, 15)), (PHOENIX, utc(2026, 3, 8, 15))],
)
def test_quiet_hours_defers_until_local_8am_across_spring_forward(zone: str, expected: datetime) -> None:
    evening_before = utc(2026, 3, 8, 6, 30)  # 01:30 EST, 22:30 PST, 23:30 MST
    assert next_allowed((zone,), evening_before, NIGHT) == expected


@pytest.mark.parametrize(
    ("zone", "expected"),
    [(NY, utc(2026, 11, 1, 13)), (LA, utc(2026, 11, 1, 16)), (PHOENIX, utc(2026, 11, 1, 15))],
)
def test_quiet_hours_defers_until_local_8am_across_fall_back(zone: str, expected: datetime) -> None:
    evening_before = utc(2026, 11, 1, 6, 30)  # after every US zone has reached 21:00 on 2026-10-31
    assert next_allowed((zone,), evening_before, NIGHT) == expected


def test_window_opening_in_the_spring_forward_gap_opens_when_the_clock_jumps() -> None:
    ends_at_0230 = QuietHours(start=time(21), end=time(2, 30))  # 02:30 does not exist on 2026-03-08
    assert next_allowed((NY,), utc(2026, 3, 8, 5), ends_at_0230) == utc(2026, 3, 8, 7)  # 03:00 EDT
    assert next_allowed((NY,), utc(2026, 3, 8, 6, 59, 59, 999999), ends_at_0230) == utc(2026, 3, 8, 7)


def test_window_opening_at_a_repeated_time_opens_at_its_first_occurrence() -> None:
    ends_at_0130 = QuietHours(start=time(21), end=time(1, 30))  # 01:30 happens twice on 2026-11-01
    assert next_allowed((NY,), utc(2026, 11, 1, 4), ends_at_0130) == utc(2026, 11, 1, 5, 30)  # 01:30 EDT


def test_quiet_hours_follow_the_wall_clock_through_the_repeated_hour() -> None:
    ends_at_0130 = QuietHours(start=time(21), end=time(1, 30))
    at_0110_est = utc(2026, 11, 1, 6, 10)  # the clock reads 01:10 again, inside 21:00-01:30
    assert next_allowed((NY,), at_0110_est, ends_at_0130) == utc(2026, 11, 1, 6, 30)


def test_number_whose_area_code_spans_two_zones_waits_for_both() -> None:
    zones = resolve_zones(None, "+16052221234", None)  # South Dakota: Mountain and Central
    assert zones == ("America/Denver", "America/North_Dakota/Center")
    morning = utc(2026, 1, 15, 14)  # 08:00 CST, 07:00 MST
    assert next_allowed(("America/North_Dakota/Center",), morning, NIGHT) == morning
    assert next_allowed(zones, morning, NIGHT) == utc(2026, 1, 15, 15)
    evening = utc(2026, 1, 15, 3, 30)  # 21:30 CST (quiet), 20:30 MST (allowed)
    assert next_allowed(("America/Denver",), evening, NIGHT) == evening
    assert next_allowed(zones, evening, NIGHT) == utc(2026, 1, 15, 15)


def test_split_area_code_deferral_names_both_zones() -> None:
    decision = decide(
        opt_in=True, suppressed_reason=None, info=analyse("hi"), max_segments=1,
        zones=("America/Denver", "America/North_Dakota/Center"), quiet_hours=NIGHT, now=utc(2026, 1, 15, 3, 30),
    )
    assert decision.action == "defer"
    assert decision.reason == (
        "quiet hours in America/North_Dakota/Center, then quiet hours in America/Denver"
        " until 2026-01-15 08:00 local (2026-01-15 15:00 UTC)"
    )


def test_weekend_is_skipped_when_only_weekdays_are_allowed() -> None:
    weekdays = QuietHours(time(21), time(8), days=WEEKDAYS)
    friday_night = utc(2026, 1, 17, 3)  # Friday 2026-01-16 22:00 EST
    saturday_noon = utc(2026, 1, 17, 17)
    monday_8am = utc(2026, 1, 19, 13)
    assert next_allowed((NY,), friday_night, weekdays) == monday_8am
    assert next_allowed((NY,), saturday_noon, weekdays) == monday_8am


def test_weekend_deferral_says_which_day_is_not_allowed() -> None:
    decision = decide(
        opt_in=True, suppressed_reason=None, info=analyse("hi"), max_segments=1, zones=(NY,),
        quiet_hours=QuietHours(time(21), time(8), days=WEEKDAYS), now=utc(2026, 1, 17, 17),
    )
    assert decision.reason == (
        "no sending on Saturdays in America/New_York until 2026-01-19 08:00 local (2026-01-19 13:00 UTC)"
    )


def test_sending_days_are_the_recipients_local_weekdays() -> None:
    weekdays_all_day = QuietHours(time(0), time(0), days=WEEKDAYS)
    sunday_2330_utc = utc(2026, 1, 18, 23, 30)  # already Monday 08:30 in Tokyo, still Sunday in New York
    assert next_allowed(("Asia/Tokyo",), sunday_2330_utc, weekdays_all_day) == sunday_2330_utc
    assert next_allowed((NY,), sunday_2330_utc, weekdays_all_day) == utc(2026, 1, 19, 5)


def test_blackout_date_defers_to_the_next_morning() -> None:
    christmas = QuietHours(time(21), time(8), blackout_dates=frozenset({date(2026, 12, 25)}))
    assert next_allowed((NY,), utc(2026, 12, 25, 3), christmas) == utc(2026, 12, 26, 13)
    assert next_allowed((NY,), utc(2026, 12, 25, 17), christmas) == utc(2026, 12, 26, 13)


def test_blackout_date_is_the_recipients_local_date() -> None:
    christmas_all_day = QuietHours(time(0), time(0), blackout_dates=frozenset({date(2026, 12, 25)}))
    now = utc(2026, 12, 26, 3)  # 22:00 on the 25th in New York, 19:00 in Los Angeles, noon on the 26th in Tokyo
    assert next_allowed((NY,), now, christmas_all_day) == utc(2026, 12, 26, 5)
    assert next_allowed((LA,), now, christmas_all_day) == utc(2026, 12, 26, 8)
    assert next_allowed(("Asia/Tokyo",), now, christmas_all_day) == now


def test_opening_more_than_a_week_away_is_found_within_the_horizon() -> None:
    mondays = QuietHours(time(21), time(8), days=frozenset({0}), blackout_dates=frozenset({date(2026, 1, 19)}))
    assert next_allowed((NY,), utc(2026, 1, 16, 17), mondays) == utc(2026, 1, 26, 13)


def test_zones_that_never_share_an_allowed_instant_give_none() -> None:
    one_hour = QuietHours(time(10), time(9))  # allowed 09:00-10:00 local only
    assert next_allowed(("Asia/Tokyo", NY), utc(2026, 1, 15), one_hour) is None


@pytest.mark.parametrize(
    ("wall", "quiet"),
    [(time(20, 59), False), (time(21), True), (time(23, 59), True), (time(0), True),
     (time(7, 59, 59), True), (time(8), False), (time(12), False)],
)
def test_window_wrapping_midnight_is_quiet_from_start_to_end(wall: time, quiet: bool) -> None:
    assert NIGHT.is_quiet_time(wall) is quiet


@pytest.mark.parametrize(
    ("wall", "quiet"),
    [(time(11, 59), False), (time(12), True), (time(12, 59), True), (time(13), False)],
)
def test_window_within_one_day_is_quiet_only_inside(wall: time, quiet: bool) -> None:
    assert QuietHours(time(12), time(13)).is_quiet_time(wall) is quiet


def test_window_within_one_day_defers_to_its_end() -> None:
    lunch = QuietHours(time(12), time(13))
    assert next_allowed((NY,), utc(2026, 1, 15, 17, 30), lunch) == utc(2026, 1, 15, 18)


def test_equal_start_and_end_means_no_daily_window() -> None:
    assert not any(QuietHours(time(9), time(9)).is_quiet_time(time(h)) for h in range(24))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"days": frozenset()},
        {"days": frozenset({7})},
        {"default_timezone": "Mars/Olympus_Mons"},
        {"blackout_dates": frozenset({datetime(2026, 12, 25)})},
        {"start": time(21, tzinfo=UTC)},
    ],
)
def test_inconsistent_quiet_hours_are_refused(kwargs: dict[str, object]) -> None:
    arguments: dict[str, object] = {"start": time(21), "end": time(8), **kwargs}
    with pytest.raises(ValueError):
        QuietHours(**arguments)  # type: ignore[arg-type]


# --- property: never inside quiet hours, never before now, never later than the true opening ---

ZONES = [
    NY, LA, PHOENIX, "America/Denver", "America/North_Dakota/Center", "America/St_Johns", "America/Santiago",
    "Europe/London", "Europe/Berlin", "Asia/Kolkata", "Asia/Kathmandu", "Asia/Tokyo", "Australia/Lord_Howe",
    "Pacific/Auckland", "Pacific/Chatham", "Pacific/Kiritimati", "Pacific/Pago_Pago", "UTC",
]
DST_CHANGES = [
    utc(2026, 3, 8, 7), utc(2026, 11, 1, 6), utc(2026, 3, 29, 1), utc(2026, 10, 25, 1),
    utc(2026, 4, 4, 15), utc(2026, 10, 3, 15), utc(2026, 9, 26, 14), utc(2026, 4, 5, 3),
]


def allowed_by_wall_clock(zone: str, instant: datetime, qh: QuietHours) -> bool:
    """Independent reading of the rules: the local clock, the local date."""
    local = instant.astimezone(ZoneInfo(zone))
    if qh.days is not None and local.weekday() not in qh.days:
        return False
    if local.date() in qh.blackout_dates:
        return False
    wall = local.time()
    if qh.start == qh.end:
        return True
    if qh.start < qh.end:
        return not (qh.start <= wall < qh.end)
    return qh.end <= wall < qh.start


minute_times = st.builds(time, st.integers(0, 23), st.sampled_from([0, 1, 15, 29, 30, 45, 59]))
instants = st.one_of(
    st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)),
    st.builds(lambda base, minutes: base + timedelta(minutes=minutes),
              st.sampled_from(DST_CHANGES), st.integers(-36 * 60, 36 * 60)),
)


@st.composite
def quiet_hours(draw: st.DrawFn, *, calendar: bool) -> QuietHours:
    days = draw(st.none() | st.frozensets(st.integers(0, 6), min_size=1)) if calendar else None
    blackouts = (
        draw(st.frozensets(st.dates(date(2026, 1, 1), date(2028, 1, 31)), max_size=6)) if calendar else frozenset()
    )
    return QuietHours(draw(minute_times), draw(minute_times), days=days, blackout_dates=blackouts)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    zones=st.lists(st.sampled_from(ZONES), min_size=1, max_size=3, unique=True),
    now=instants,
    qh=quiet_hours(calendar=True),
)
def test_next_allowed_is_never_inside_quiet_hours_nor_before_now(
    zones: list[str], now: datetime, qh: QuietHours
) -> None:
    result = next_allowed(zones, now, qh)
    if result is None:
        return
    assert now <= result <= now + HORIZON
    assert all(allowed_by_wall_clock(z, result, qh) for z in zones)
    if result != now:
        assert result.tzinfo is UTC
        just_before = result - timedelta(microseconds=1)
        assert not all(allowed_by_wall_clock(z, just_before, qh) for z in zones)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    zones=st.lists(st.sampled_from(ZONES), min_size=1, max_size=2, unique=True),
    now=instants,
    qh=quiet_hours(calendar=False),
)
def test_next_allowed_is_the_first_allowed_minute(zones: list[str], now: datetime, qh: QuietHours) -> None:
    # With whole-minute windows and whole-minute offsets, being allowed only changes on minute
    # boundaries, so checking now and every minute up to the answer is exhaustive.
    result = next_allowed(zones, now, qh)
    scan_until = result if result is not None else now + timedelta(days=2)
    minute = now.replace(second=0, microsecond=0)
    probe = now
    while probe < scan_until:
        assert not all(allowed_by_wall_clock(z, probe, qh) for z in zones), f"{probe} was already allowed"
        minute += timedelta(minutes=1)
        probe = minute
