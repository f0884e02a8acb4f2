"""Phone numbers: normalise what a contacts file says into E.164, mask it for logs, find its time zones.

Only ``phonenumbers`` is used, and only here; its exceptions are translated into
``InvalidNumber``, whose ``str()`` is a short reason a user understands ("too short",
"premium-rate number"). Reasons never repeat the number itself, so they are safe to log.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType, ValidationResult, shortnumberinfo
from phonenumbers import timezone as pn_timezone

__all__ = ["InvalidNumber", "PhoneNumber", "normalise", "mask", "timezones_for"]

_REFUSED_TYPES = {
    PhoneNumberType.PREMIUM_RATE: "premium-rate number",
    PhoneNumberType.SHARED_COST: "shared-cost number",
}
_UNKNOWN_ZONE = "Etc/Unknown"


class InvalidNumber(ValueError):
    """A number we will not send to. ``str()`` is the reason, for the user (no digits in it)."""


@dataclass(frozen=True, slots=True)
class PhoneNumber:
    """A valid, sendable number.

    ``e164`` is "+15552223333"; ``region`` the ISO 3166 alpha-2 code of the number itself
    (not of the default region); ``national`` the national significant number, digits only,
    without trunk prefix ("5552223333"; Italian fixed lines keep their leading 0).
    """

    e164: str
    region: str
    country_code: int
    national: str


@lru_cache(maxsize=16_384)
def normalise(raw: str, default_region: str | None) -> PhoneNumber:
    """Parse ``raw`` as a number, dialled from ``default_region`` unless it starts with +CC.

    Raises ``InvalidNumber`` when the number is empty, contains letters (vanity numbers are
    refused), has no country code and there is no default region, is too short or too long,
    is not valid for its country, is premium-rate, shared-cost, a short code, or belongs to
    no country (+800 and friends). Raises plain ``ValueError`` when ``default_region`` is not
    a region ``phonenumbers`` knows: that is a configuration error, not a bad row.
    """
    region = default_region.strip().upper() if default_region else None
    if region is not None and region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"unknown default region {default_region!r}: expected an ISO 3166 code such as 'US'")
    text = raw.strip()
    if not text:
        raise InvalidNumber("empty phone number")
    if any(c.isalpha() for c in text):
        raise InvalidNumber("contains letters")
    if region is None and text[0] not in "+\uff0b":
        raise InvalidNumber("no country code (+...) and no default region")
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException as exc:
        raise InvalidNumber(_parse_error_reason(exc, text)) from None
    country_code = number.country_code or 0

    possible = phonenumbers.is_possible_number_with_reason(number)
    if possible != ValidationResult.IS_POSSIBLE:
        if shortnumberinfo.is_valid_short_number(number):
            raise InvalidNumber("short code")
        if possible in (ValidationResult.TOO_SHORT, ValidationResult.IS_POSSIBLE_LOCAL_ONLY):
            raise InvalidNumber("too short")
        if possible == ValidationResult.TOO_LONG:
            raise InvalidNumber("too long")
        if possible == ValidationResult.INVALID_COUNTRY_CODE:
            raise InvalidNumber(f"unknown country code +{country_code}")
    # number_type is UNKNOWN exactly when is_valid_number is False (both match the national
    # number against the same metadata); asking once halves the cost of a valid number.
    number_type = phonenumbers.number_type(number)
    if number_type == PhoneNumberType.UNKNOWN:
        if shortnumberinfo.is_valid_short_number(number):
            raise InvalidNumber("short code")
        country = phonenumbers.region_code_for_country_code(country_code)
        where = "any country" if country in ("ZZ", "001") else country
        raise InvalidNumber(f"not a valid number for {where}")
    refused = _REFUSED_TYPES.get(number_type)
    if refused:
        raise InvalidNumber(refused)
    number_region = phonenumbers.region_code_for_number(number)
    if number_region is None or number_region == "001":
        raise InvalidNumber("international non-geographic number (not in any country)")
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if len(_ZONES) > 4096:   # the loader asks right after normalising: a small window is enough
        _ZONES.clear()
    _ZONES[e164] = _zones_of(number, number_type)   # the loader asks next; spare it a second parse
    return PhoneNumber(
        e164=e164,
        region=number_region,
        country_code=country_code,
        national=phonenumbers.national_significant_number(number),
    )


def _parse_error_reason(exc: NumberParseException, text: str) -> str:
    kind = exc.error_type
    if kind == NumberParseException.INVALID_COUNTRY_CODE:
        return "unknown country code" if text[0] in "+\uff0b" else "no valid country code"
    if kind in (NumberParseException.TOO_SHORT_NSN, NumberParseException.TOO_SHORT_AFTER_IDD):
        return "too short"
    if kind == NumberParseException.TOO_LONG:
        return "too long"
    digits = sum(c.isdigit() for c in text)
    return "too short" if 0 < digits < 3 else "not a phone number"


def _country_code_length(digits: str) -> int:
    # Country codes are prefix-free, so the first known prefix is the code.
    for length in (1, 2, 3):
        if int(digits[:length] or 0) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return length
    return 0


def mask(e164: str) -> str:
    """``+14155550147`` -> ``+1415***0147``: country code, 3 first and 4 last national digits.

    National numbers under 10 digits show less (2 + 2 for 8-9 digits, the last 2 below that)
    so that most of a short number stays hidden. Never raises: anything that is not
    ``+`` followed by digits becomes ``***``.
    """
    digits = e164[1:]
    if not e164.startswith("+") or not digits.isdigit() or not digits.isascii():
        return "***"
    cc = _country_code_length(digits)
    if not cc:
        return "+***" + digits[-2:] if len(digits) >= 8 else "+***"
    national = digits[cc:]
    n = len(national)
    head, tail = (3, 4) if n >= 10 else (2, 2) if n >= 8 else (0, 2) if n >= 4 else (0, 0)
    return f"+{digits[:cc]}{national[:head]}***{national[n - tail:] if tail else ''}"


_ZONES: dict[str, tuple[str, ...]] = {}


def _zones_of(number: phonenumbers.PhoneNumber, number_type: int) -> tuple[str, ...]:
    # What pn_timezone.time_zones_for_number does, without computing number_type a second time.
    if phonenumbers.is_number_type_geographical(number_type, number.country_code):
        zones = tuple(pn_timezone.time_zones_for_geographical_number(number))
    else:
        zones = tuple(pn_timezone._country_level_time_zones_for_number(number))
    return () if zones == (_UNKNOWN_ZONE,) else zones


def timezones_for(e164: str) -> tuple[str, ...]:
    zones = _ZONES.get(e164)
    return zones if zones is not None else _timezones_for(e164)


@lru_cache(maxsize=65_536)
def _timezones_for(e164: str) -> tuple[str, ...]:
    """The IANA zones ``phonenumbers`` gives for a number; ``()`` when it knows none.

    Geographic numbers map by prefix (one area code may span two zones); non-geographic
    ones (mobiles in many countries, toll-free) get every zone of their country.
    Raises ``InvalidNumber`` if ``e164`` cannot be parsed.
    """
    try:
        number = phonenumbers.parse(e164, None)
    except NumberParseException as exc:
        raise InvalidNumber(_parse_error_reason(exc, e164)) from None
    zones = tuple(pn_timezone.time_zones_for_number(number))
    return () if zones == (_UNKNOWN_ZONE,) else zones
