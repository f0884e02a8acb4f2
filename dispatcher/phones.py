"""Phone numbers: normalise what a contacts file says into E.164, mask it for logs, find its time zones.

Only ``phonenumbers`` is used, and only here; its exceptions are translated into
``InvalidNumber``, whose ``str()`` is a short reason a user understands ("too short",
"premium-rate number"). Reasons never repeat the number itself, so they are safe to log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable

import phonenumbers
from phonenumbers import NumberParseException, PhoneMetadata, PhoneNumberType, ValidationResult, shortnumberinfo
from phonenumbers import timezone as pn_timezone
from phonenumbers.phonenumberutil import _number_type_helper
from phonenumbers.re_util import re_compile
from phonenumbers.tzdata import TIMEZONE_DATA, TIMEZONE_LONGEST_PREFIX

__all__ = ["InvalidNumber", "PhoneNumber", "normalise", "mask", "timezones_for"]

_REFUSED_TYPES = {
    PhoneNumberType.PREMIUM_RATE: "premium-rate number",
    PhoneNumberType.SHARED_COST: "shared-cost number",
}
_UNKNOWN_ZONE = "Etc/Unknown"
_ASCII_LETTER = re.compile("[A-Za-z]")   # the ASCII characters str.isalpha accepts, found in one C call


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


@lru_cache(maxsize=4096)   # repeats of a spelling; about 400 bytes an entry in every planning process
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
    if _ASCII_LETTER.search(text) if text.isascii() else any(c.isalpha() for c in text):
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
    number_region, number_type = _region_and_type(number)
    if number_type == PhoneNumberType.UNKNOWN:
        if shortnumberinfo.is_valid_short_number(number):
            raise InvalidNumber("short code")
        country = phonenumbers.region_code_for_country_code(country_code)
        where = "any country" if country in ("ZZ", "001") else country
        raise InvalidNumber(f"not a valid number for {where}")
    refused = _REFUSED_TYPES.get(number_type)
    if refused:
        raise InvalidNumber(refused)
    if number_region is None or number_region == "001":
        raise InvalidNumber("international non-geographic number (not in any country)")
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if len(_ZONES) > 4096:   # the loader asks right after normalising: a small window is enough
        _ZONES.clear()
    _ZONES[e164] = _zones_of(number, number_type, e164)   # the loader asks next; spare it a second parse
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


def _region_and_type(number: phonenumbers.PhoneNumber) -> tuple[str | None, int]:
    """``(region_code_for_number(number), number_type(number))``, matching the national number against
    each candidate region's metadata once: asked separately, a number of a shared country code (+1, +7)
    goes through the type patterns three times."""
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(number.country_code)
    if regions is None:
        return None, PhoneNumberType.UNKNOWN
    national = phonenumbers.national_significant_number(number)
    if len(regions) == 1:
        region = regions[0]
    else:
        for region in regions:   # region_code_for_number's search, keeping the type it computes on the way
            metadata = PhoneMetadata.metadata_for_region(region.upper(), None)
            if metadata is None:
                continue
            if metadata.leading_digits is not None:
                if re_compile(metadata.leading_digits).match(national):
                    break
            else:
                found = _number_type_helper(national, metadata)
                if found != PhoneNumberType.UNKNOWN:
                    return region, found    # number_type would match the same metadata again
        else:
            return None, PhoneNumberType.UNKNOWN
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(number.country_code, region)
    return region, (_number_type_helper(national, metadata) if metadata is not None else PhoneNumberType.UNKNOWN)


def _tz_key_length(country_code: int) -> int:
    # The zone table is searched by longest prefix of the E.164 digits, so only its keys that start with the
    # country code (or are a prefix of it) can match: the digits up to the longest of those decide the answer.
    cc = str(country_code)
    return max([len(cc)] + [len(k) for k in TIMEZONE_DATA if k.startswith(cc)])


_TZ_KEY_LENGTHS = {cc: _tz_key_length(cc) for cc in phonenumbers.COUNTRY_CODE_TO_REGION_CODE}
_GEO_ZONES: dict[str, tuple[str, ...]] = {}   # the decisive leading digits -> zones (about 60 bytes an entry)


def _zones_of(number: phonenumbers.PhoneNumber, number_type: int, e164: str) -> tuple[str, ...]:
    # What pn_timezone.time_zones_for_number does, without computing number_type a second time.
    if not phonenumbers.is_number_type_geographical(number_type, number.country_code):
        return _country_zones(number.country_code)
    key = e164[1:1 + _TZ_KEY_LENGTHS.get(number.country_code, TIMEZONE_LONGEST_PREFIX)]
    zones = _GEO_ZONES.get(key)
    if zones is None:
        if len(_GEO_ZONES) >= 8192:
            _GEO_ZONES.clear()
        zones = _GEO_ZONES[key] = _known(pn_timezone.time_zones_for_geographical_number(number))
    return zones


@lru_cache(maxsize=None)
def _country_zones(country_code: int) -> tuple[str, ...]:
    return _known(pn_timezone._country_level_time_zones_for_number(phonenumbers.PhoneNumber(country_code=country_code)))


def _known(zones: Iterable[str]) -> tuple[str, ...]:
    zones = tuple(zones)
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
    return _known(pn_timezone.time_zones_for_number(number))
