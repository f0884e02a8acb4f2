"""Consent parsing and the precedence of ``decide``."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest

from dispatcher.encoding import analyse
from dispatcher.policy import Decision, QuietHours, decide, parse_opt_in, resolve_zones

NIGHT_IN_NEW_YORK = datetime(2026, 1, 15, 3, 0, tzinfo=UTC)  # 22:00 EST
NOON_IN_NEW_YORK = datetime(2026, 1, 15, 17, 0, tzinfo=UTC)
QUIET = QuietHours(start=time(21), end=time(8))
SHORT = analyse("Your table is ready.")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True), ("TRUE", True), (" True ", True), ("yes", True), ("YES", True), ("1", True),
        ("false", False), ("False", False), ("no", False), ("No ", False), ("0", False),
        (None, False), ("", False), ("   ", False),
    ],
)
def test_opt_in_accepts_the_six_words_and_blank_means_no_consent(value: str | None, expected: bool) -> None:
    assert parse_opt_in(value) is expected


@pytest.mark.parametrize("value", ["maybe", "y", "n", "t", "f", "on", "off", "2", "-1", "1.0", "yes!", "oui"])
def test_opt_in_rejects_anything_else_naming_the_accepted_words(value: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_opt_in(value)
    assert str(caught.value) == f"opt_in must be one of true/false/yes/no/1/0, got {value!r}"


def _decide(**overrides: object) -> Decision:
    arguments: dict[str, object] = dict(
        opt_in=True,
        suppressed_reason=None,
        info=SHORT,
        max_segments=1,
        zones=("America/New_York",),
        quiet_hours=QUIET,
        now=NOON_IN_NEW_YORK,
    )
    arguments.update(overrides)
    return decide(**arguments)  # type: ignore[arg-type]


def test_decide_sends_when_nothing_stands_in_the_way() -> None:
    assert _decide() == Decision("send", None, None)


def test_no_consent_is_skipped_before_anything_else() -> None:
    decision = _decide(opt_in=False, suppressed_reason="STOP reply on 2026-11-02", info=analyse("a" * 200),
                       zones=(), now=NIGHT_IN_NEW_YORK)
    assert decision == Decision("skip", "no recorded consent")


def test_suppressed_number_is_skipped_with_the_suppression_reason() -> None:
    decision = _decide(suppressed_reason="STOP reply on 2026-11-02", info=analyse("a" * 200), zones=())
    assert decision == Decision("skip", "suppressed: STOP reply on 2026-11-02")


def test_too_long_message_is_skipped_before_quiet_hours_are_considered() -> None:
    decision = _decide(info=analyse("a" * 161), now=NIGHT_IN_NEW_YORK)
    assert decision == Decision("skip", "too long: 2 segments of GSM-7 (161 characters), at most 1 allowed")


def test_too_long_reason_names_ucs2_when_one_character_forces_it() -> None:
    decision = _decide(info=analyse("ć" * 71))
    assert decision.reason == "too long: 2 segments of UCS-2 (71 characters), at most 1 allowed"


def test_unknown_zone_with_quiet_hours_configured_is_held() -> None:
    zones = resolve_zones(None, "+80012345678", None)
    assert zones == ()
    assert _decide(zones=zones) == Decision(
        "hold", "no time zone known for this number and no quiet_hours.default_timezone"
    )


def test_unknown_zone_falls_back_to_the_default_timezone() -> None:
    assert resolve_zones(None, "+80012345678", "Europe/Paris") == ("Europe/Paris",)


def test_zones_do_not_matter_without_quiet_hours() -> None:
    assert _decide(zones=(), quiet_hours=None, now=NIGHT_IN_NEW_YORK) == Decision("send")


def test_inside_quiet_hours_is_deferred_until_local_8am_with_a_readable_reason() -> None:
    decision = _decide(now=datetime(2026, 1, 15, 12, 0, tzinfo=UTC))  # 07:00 EST
    assert decision == Decision(
        "defer",
        "quiet hours in America/New_York until 08:00 local (13:00 UTC)",
        datetime(2026, 1, 15, 13, 0, tzinfo=UTC),
    )


def test_deferral_into_the_next_day_gives_the_date() -> None:
    decision = _decide(now=NIGHT_IN_NEW_YORK)
    assert decision.action == "defer"
    assert decision.not_before == datetime(2026, 1, 15, 13, 0, tzinfo=UTC)
    assert decision.reason == "quiet hours in America/New_York until 2026-01-15 08:00 local (2026-01-15 13:00 UTC)"


def test_no_common_sending_time_within_the_horizon_is_held() -> None:
    only_monday_and_blacked_out = QuietHours(
        time(21), time(8), days=frozenset({0}),
        blackout_dates=frozenset({datetime(2026, 1, 19).date(), datetime(2026, 1, 26).date()}),
    )
    decision = _decide(quiet_hours=only_monday_and_blacked_out, now=datetime(2026, 1, 16, 17, tzinfo=UTC))
    assert decision == Decision(
        "hold", "no time in the next 14 days when sending is allowed in America/New_York"
    )


def test_contact_timezone_column_wins_over_the_numbers_zones() -> None:
    assert resolve_zones(" Europe/Berlin ", "+12125550123", "UTC") == ("Europe/Berlin",)


def test_blank_contact_timezone_falls_back_to_the_number() -> None:
    assert resolve_zones("", "+12125550123", "UTC") == ("America/New_York",)


def test_unknown_contact_timezone_is_an_error_naming_it() -> None:
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus_Mons'"):
        resolve_zones("Mars/Olympus_Mons", "+12125550123", None)


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        _decide(now=datetime(2026, 1, 15, 12, 0))
