"""Normalising contact numbers, masking them for logs, and the zones phonenumbers gives them."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberType
from phonenumbers import timezone as pn_timezone

from dispatcher import phones
from dispatcher.phones import InvalidNumber, PhoneNumber, mask, normalise, timezones_for


def test_e164_input_is_kept_and_described() -> None:
    assert normalise("+14155550147", None) == PhoneNumber("+14155550147", "US", 1, "4155550147")


@pytest.mark.parametrize(
    ("raw", "region"),
    [
        ("+1 415 555 0147", None),
        ("+1 (415) 555-0147", "GB"),
        ("(415) 555-0147", "US"),
        ("415.555.0147", "us"),
        ("1 415 555 0147", "US"),
        ("  4155550147  ", "US"),
    ],
)
def test_same_number_written_differently_gives_the_same_e164(raw: str, region: str | None) -> None:
    assert normalise(raw, region).e164 == "+14155550147"


def test_national_number_uses_the_default_region() -> None:
    assert normalise("020 7946 0958", "GB") == PhoneNumber("+442079460958", "GB", 44, "2079460958")


def test_number_of_another_country_is_accepted_when_written_with_its_country_code() -> None:
    number = normalise("+44 7400 123456", "US")
    assert (number.e164, number.region, number.country_code) == ("+447400123456", "GB", 44)


def test_italian_fixed_line_keeps_its_leading_zero_in_the_national_number() -> None:
    assert normalise("+39 06 1234 5678", None).national == "0612345678"


@pytest.mark.parametrize(
    ("raw", "region", "reason"),
    [
        ("", "US", "empty phone number"),
        ("   ", "US", "empty phone number"),
        ("1-800-FLOWERS", "US", "contains letters"),
        ("+1 415 555 0147 ext 12", None, "contains letters"),
        ("4155550147", None, "no country code (+...) and no default region"),
        ("555-0147", "US", "too short"),
        ("12", "US", "too short"),
        ("+44 1234", None, "too short"),
        ("+1415555014712345", None, "too long"),
        ("12345678901234567890", "US", "too long"),
        ("+1 123 456 7890", None, "not a valid number for US"),
        ("+999 1234567", None, "unknown country code"),
        ("+19002345678", None, "premium-rate number"),
        ("+449012345678", None, "premium-rate number"),
        ("+34901123456", None, "shared-cost number"),
        ("+33884012345", None, "shared-cost number"),
        ("72345", "US", "short code"),
        ("911", "US", "short code"),
        ("+800 1234 5678", None, "international non-geographic number (not in any country)"),
    ],
)
def test_unusable_numbers_are_refused_with_a_reason(raw: str, region: str | None, reason: str) -> None:
    with pytest.raises(InvalidNumber) as caught:
        normalise(raw, region)
    assert str(caught.value) == reason


def test_invalid_number_is_a_value_error_whose_reason_does_not_repeat_the_digits() -> None:
    with pytest.raises(ValueError) as caught:
        normalise("+1 123 456 7890", None)
    assert "456" not in str(caught.value)


def test_unknown_default_region_is_a_configuration_error_not_a_bad_number() -> None:
    with pytest.raises(ValueError) as caught:
        normalise("4155550147", "XX")
    assert not isinstance(caught.value, InvalidNumber)


@pytest.mark.parametrize(
    ("e164", "masked"),
    [
        ("+14155550147", "+1415***0147"),
        ("+447400123456", "+44740***3456"),
        ("+33612345678", "+3361***78"),
        ("+3541234567", "+354***67"),
        ("+123", "+1***"),
        ("4155550147", "***"),
        ("", "***"),
    ],
)
def test_mask_keeps_country_code_and_a_few_digits(e164: str, masked: str) -> None:
    assert mask(e164) == masked


@pytest.mark.parametrize(
    ("e164", "zones"),
    [
        ("+12125550123", ("America/New_York",)),
        ("+13105550123", ("America/Los_Angeles",)),
        ("+16025550123", ("America/Phoenix",)),
        ("+16052221234", ("America/Denver", "America/North_Dakota/Center")),
        ("+80012345678", ()),
    ],
)
def test_timezones_for_gives_the_numbers_zones_or_nothing_when_unknown(e164: str, zones: tuple[str, ...]) -> None:
    assert timezones_for(e164) == zones


# ------------------------------------------------------------------ the fast path equals phonenumbers' own answers

def _example_numbers() -> list[str]:
    """phonenumbers' example number of every type in every region, and of every non-geographic code: valid
    numbers of all kinds."""
    found = set()
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in vars(PhoneNumberType).values():
            if isinstance(kind, int) and (n := phonenumbers.example_number_for_type(region, kind)) is not None:
                found.add(phonenumbers.format_number(n, phonenumbers.PhoneNumberFormat.E164))
    for code in phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS:     # +800, +882, ...: one "region" each
        if (n := phonenumbers.example_number_for_non_geo_entity(code)) is not None:
            found.add(phonenumbers.format_number(n, phonenumbers.PhoneNumberFormat.E164))
    return sorted(found)


EXAMPLES = _example_numbers()
_COUNTRY_CODES = sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)


@st.composite
def varied_numbers(draw: st.DrawFn) -> str:
    """E.164-like texts: example numbers with their tail rewritten (mostly valid, often sharing a zone prefix with
    an earlier draw) and arbitrary digits after a known country code (mostly invalid)."""
    digits = st.text("0123456789", min_size=1, max_size=14)
    if draw(st.booleans()):
        example = draw(st.sampled_from(EXAMPLES))
        keep = draw(st.integers(2, len(example)))
        return example[:keep] + draw(digits)[:len(example) - keep]
    return f"+{draw(st.sampled_from(_COUNTRY_CODES))}{draw(digits)}"


def _check_against_phonenumbers(text: str) -> None:
    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        return
    region, kind = phonenumbers.region_code_for_number(number), phonenumbers.number_type(number)
    assert phones._region_and_type(number) == (region, kind)
    if kind != PhoneNumberType.UNKNOWN:
        e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        plain = tuple(pn_timezone.time_zones_for_number(number))
        assert phones._zones_of(number, kind, e164) == (() if plain == ("Etc/Unknown",) else plain)


def test_region_type_and_zones_equal_phonenumbers_for_every_example_number() -> None:
    for text in EXAMPLES:
        _check_against_phonenumbers(text)


@settings(max_examples=3000, deadline=None)
@given(varied_numbers())
def test_region_type_and_zones_equal_phonenumbers_for_varied_numbers(text: str) -> None:
    _check_against_phonenumbers(text)


@settings(max_examples=1000, deadline=None)
@given(varied_numbers(), st.sampled_from([None, "US", "GB", "DE", "IT", "BR", "IN"]))
def test_normalise_agrees_with_phonenumbers_on_validity_region_e164_and_zones(text: str, region: str | None) -> None:
    normalise.cache_clear()
    try:
        got = normalise(text, region)
    except InvalidNumber:
        got = None
    number = phonenumbers.parse(text, region) if got is not None else None
    if number is None:
        return
    assert phonenumbers.is_valid_number(number)
    assert got.region == phonenumbers.region_code_for_number(number)
    assert got.e164 == phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    plain = tuple(pn_timezone.time_zones_for_number(number))
    assert timezones_for(got.e164) == (() if plain == ("Etc/Unknown",) else plain)
