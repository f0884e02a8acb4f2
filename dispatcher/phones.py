"""Phone numbers: normalise what a contacts file says into E.164, mask it for logs, find its time zones.

Only ``phonenumbers`` is used, and only here; its exceptions are translated into
``InvalidNumber``, whose ``str()`` is a short reason a user understands ("too short",
"premium-rate number"). Reasons never repeat the number itself, so they are safe to log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Iterable

import phonenumbers
from phonenumbers import NumberParseException, PhoneMetadata, PhoneNumberType, ValidationResult, shortnumberinfo
from phonenumbers import timezone as pn_timezone
from phonenumbers.tzdata import TIMEZONE_DATA, TIMEZONE_LONGEST_PREFIX

__all__ = ["InvalidNumber", "PhoneNumber", "normalise", "mask", "timezones_for"]

_REFUSED_TYPES = {
    PhoneNumberType.PREMIUM_RATE: "premium-rate number",
    PhoneNumberType.SHARED_COST: "shared-cost number",
}
_UNKNOWN_ZONE = "Etc/Unknown"
_ASCII_LETTER = re.compile("[A-Za-z]")   # the ASCII characters str.isalpha accepts, found in one C call
_compiled = lru_cache(maxsize=None)(re.compile)   # metadata patterns; phonenumbers compiles them on every use


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
    number, zones = _plain(text, region) or _parsed(text, region)
    if len(_ZONES) > 4096:   # the loader asks right after normalising: a small window is enough
        _ZONES.clear()
    _ZONES[number.e164] = zones   # the loader asks next; spare it a second parse
    return number


def _parsed(text: str, region: str | None) -> tuple[PhoneNumber, tuple[str, ...]]:
    """``normalise``'s full path: phonenumbers' own parse and checks; the number and its zones, or the reason
    it is refused."""
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
    national = phonenumbers.national_significant_number(number)
    return PhoneNumber(e164, number_region, country_code, national), _zones_of(number, number_type, e164)


# A number written with digits and the usual separators only, at most one leading "+", ending in a digit: in such a
# text phonenumbers' parse finds no extension, nothing to trim and (with 3 digits or more) a viable number, and is
# left with its digits. Longer texts take the full path (parse refuses texts of over 250 characters).
_PLAIN_TEXT = re.compile(r"\+?\(?[0-9]+(?:[ ().-]{1,3}[0-9]+)*")
_PLAIN_MAX = 64
_SEPARATORS = str.maketrans("", "", "+ ().-")


def _plain(text: str, region: str | None) -> tuple[PhoneNumber, tuple[str, ...]] | None:
    """``_parsed(text, region)`` for a plainly written number that is valid and sendable, found without
    phonenumbers' parse; None whenever the answer is anything else or is not certain (the full path then decides).

    Each step is the step of phonenumbers' parse and checks that the text takes, with the same metadata: the
    country code (after "+", or the default region's), no international or national prefix (a text that starts
    with one, or with the default region's country code, is left to the full path: parse may strip it), a
    possible length, and the number's region and type. tests/policy/test_phone_fast_path.py holds it to
    ``_parsed`` over every region's example numbers, mutated and respelled.
    """
    if len(text) > _PLAIN_MAX or not _PLAIN_TEXT.fullmatch(text):
        return None
    digits = text.translate(_SEPARATORS)
    if len(digits) < 3:
        return None
    if text[0] == "+":
        length = 0 if digits[0] == "0" else _country_code_length(digits)
        if not length:
            return None
        country_code, national = int(digits[:length]), digits[length:]
        # parse strips a national prefix with the metadata of the country code's main region ...
        national_prefix = _national_prefix(phonenumbers.region_code_for_country_code(country_code), country_code)
    else:
        assert region is not None
        country_code, dialled_abroad = _region_rules(region)
        if dialled_abroad(digits):
            return None
        national = digits
        national_prefix = _national_prefix(region, country_code)   # ... and a national text's with the default's
    if len(national) not in _possible_lengths(country_code):
        return None
    if national_prefix is not None and national_prefix(national):
        return None
    number_region, number_type = _region_and_type_of(country_code, national)
    if number_type in _NOT_PLAIN_TYPES or number_region is None or number_region == "001":
        return None
    e164 = f"+{country_code}{national}"
    zones = _cached_zones(country_code, number_type, e164)
    if zones is None:
        return None   # the full path looks them up, once for all the numbers whose deciding digits these are
    return PhoneNumber(e164, number_region, country_code, national), zones


_NOT_PLAIN_TYPES = frozenset(_REFUSED_TYPES) | {PhoneNumberType.UNKNOWN}


@lru_cache(maxsize=None)
def _region_rules(region: str) -> tuple[int, Callable[[str], bool]]:
    """The default region's country code, and whether the digits of a national text start with what parse takes
    for an international prefix or for that country code (it may strip either)."""
    metadata = PhoneMetadata.metadata_for_region(region)
    idd = _compiled(metadata.international_prefix).match if metadata.international_prefix is not None else None
    own_code = str(metadata.country_code)
    return metadata.country_code, lambda digits: digits.startswith(own_code) or (idd is not None and bool(idd(digits)))


@lru_cache(maxsize=None)
def _national_prefix(region: str, country_code: int) -> Callable[[str], Any] | None:
    """A match of the national prefix (and carrier code) that parse strips when it can; None when the region's
    metadata has none."""
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
    prefix = metadata.national_prefix_for_parsing if metadata is not None else None
    return _compiled(prefix).match if prefix else None


@lru_cache(maxsize=None)
def _possible_lengths(country_code: int) -> frozenset[int]:
    """The lengths of national number that parse accepts (2 to 17 digits) and phonenumbers' possibility check calls
    possible (it looks at the length alone)."""
    def possible(length: int) -> bool:
        number = phonenumbers.PhoneNumber(country_code=country_code, national_number=int("1" * length))
        return phonenumbers.is_possible_number_with_reason(number) == ValidationResult.IS_POSSIBLE

    return frozenset(filter(possible, range(2, 18)))


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
    """``(region_code_for_number(number), number_type(number))``."""
    return _region_and_type_of(number.country_code, phonenumbers.national_significant_number(number))


def _region_and_type_of(country_code: int, national: str) -> tuple[str | None, int]:
    """``_region_and_type`` of the number with this country code and national significant number, matching it
    against each candidate region's metadata once: asked separately, a number of a shared country code (+1, +7)
    goes through the type patterns three times."""
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(country_code)
    if regions is None:
        return None, PhoneNumberType.UNKNOWN
    if len(regions) == 1:
        region = regions[0]
    else:
        # region_code_for_number's search, keeping the type it computes on the way
        for region, metadata, leading_digits in _shared_code_regions(country_code):
            if leading_digits is not None:
                if leading_digits(national):
                    break
            else:
                found = _number_type(national, metadata)
                if found != PhoneNumberType.UNKNOWN:
                    return region, found    # number_type would match the same metadata again
        else:
            return None, PhoneNumberType.UNKNOWN
    metadata = _metadata(country_code, region)
    return region, (_number_type(national, metadata) if metadata is not None else PhoneNumberType.UNKNOWN)


_metadata = lru_cache(maxsize=None)(PhoneMetadata.metadata_for_region_or_calling_code)


@lru_cache(maxsize=None)
def _shared_code_regions(country_code: int) -> tuple[tuple[str, PhoneMetadata, Callable[[str], Any] | None], ...]:
    """The regions region_code_for_number tries for a country code several share, in its order, with their
    metadata and a match of their leading digits (None when they have none); not those without metadata."""
    found = []
    for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE[country_code]:
        metadata = PhoneMetadata.metadata_for_region(region.upper(), None)
        if metadata is not None:
            leading = metadata.leading_digits
            found.append((region, metadata, _compiled(leading).match if leading is not None else None))
    return tuple(found)


_SPECIAL_TYPES = (   # the order in which phonenumbers tries them, before fixed line and mobile
    ("premium_rate", PhoneNumberType.PREMIUM_RATE), ("toll_free", PhoneNumberType.TOLL_FREE),
    ("shared_cost", PhoneNumberType.SHARED_COST), ("voip", PhoneNumberType.VOIP),
    ("personal_number", PhoneNumberType.PERSONAL_NUMBER), ("pager", PhoneNumberType.PAGER),
    ("uan", PhoneNumberType.UAN), ("voicemail", PhoneNumberType.VOICEMAIL),
)
_Matcher = Callable[[str], Any]
_TYPE_MATCHERS: dict[tuple[int, str, int], tuple[_Matcher | None, list[tuple[int, _Matcher]], _Matcher | None,
                                                 _Matcher | None, bool]] = {}


def _number_type(national: str, metadata: PhoneMetadata) -> int:
    """phonenumbers' ``_number_type_helper(national, metadata)``: the same descriptions tried in the same order,
    with the patterns that can match a number of this length compiled once."""
    key = (metadata.country_code, metadata.id, len(national))
    matchers = _TYPE_MATCHERS.get(key)
    if matchers is None:
        matchers = _TYPE_MATCHERS[key] = _type_matchers(metadata, len(national))
    general, special, fixed_line, mobile, same_patterns = matchers
    if general is None or not general(national):
        return PhoneNumberType.UNKNOWN
    for number_type, matches in special:
        if matches(national):
            return number_type
    if fixed_line is not None and fixed_line(national):
        if same_patterns or (mobile is not None and mobile(national)):
            return PhoneNumberType.FIXED_LINE_OR_MOBILE
        return PhoneNumberType.FIXED_LINE
    if not same_patterns and mobile is not None and mobile(national):
        return PhoneNumberType.MOBILE
    return PhoneNumberType.UNKNOWN


def _type_matchers(metadata: PhoneMetadata, length: int) -> tuple[_Matcher | None, list[tuple[int, _Matcher]],
                                                                   _Matcher | None, _Matcher | None, bool]:
    def matcher(desc: Any) -> _Matcher | None:
        # phonenumbers' _is_number_matching_desc: no description, a length it does not list, or no pattern never
        # match; otherwise the pattern must match the whole number.
        if desc is None or (desc.possible_length and length not in desc.possible_length):
            return None
        return _compiled(desc.national_number_pattern).fullmatch if desc.national_number_pattern else None

    special = [(t, m) for name, t in _SPECIAL_TYPES if (m := matcher(getattr(metadata, name))) is not None]
    return (matcher(metadata.general_desc), special, matcher(metadata.fixed_line), matcher(metadata.mobile),
            bool(metadata.same_mobile_and_fixed_line_pattern))


def _tz_key_lengths() -> dict[int, int]:
    # The zone table is searched by longest prefix of the E.164 digits, so only its keys that start with the
    # country code can match: the digits up to the longest of those decide the answer. One pass over the table
    # (country codes have 1 to 3 digits); a pass per country code took about 70 ms of every start-up.
    codes = {str(cc): cc for cc in phonenumbers.COUNTRY_CODE_TO_REGION_CODE}
    lengths = {cc: len(digits) for digits, cc in codes.items()}
    for key in TIMEZONE_DATA:
        for n in (1, 2, 3):
            cc = codes.get(key[:n])
            if cc is not None and len(key) > lengths[cc]:
                lengths[cc] = len(key)
    return lengths


_TZ_KEY_LENGTHS = _tz_key_lengths()
_GEO_ZONES: dict[str, tuple[str, ...]] = {}   # the decisive leading digits -> zones (about 60 bytes an entry)


def _zones_of(number: phonenumbers.PhoneNumber, number_type: int, e164: str) -> tuple[str, ...]:
    # What pn_timezone.time_zones_for_number does, without computing number_type a second time.
    zones = _cached_zones(number.country_code, number_type, e164)
    if zones is None:
        if len(_GEO_ZONES) >= 8192:
            _GEO_ZONES.clear()
        zones = _GEO_ZONES[_geo_key(number.country_code, e164)] = _known(
            pn_timezone.time_zones_for_geographical_number(number))
    return zones


def _cached_zones(country_code: int, number_type: int, e164: str) -> tuple[str, ...] | None:
    """The zones of a valid number when they are known without looking them up by prefix; None when they are not."""
    if not phonenumbers.is_number_type_geographical(number_type, country_code):
        return _country_zones(country_code)
    return _GEO_ZONES.get(_geo_key(country_code, e164))


def _geo_key(country_code: int, e164: str) -> str:
    return e164[1:1 + _TZ_KEY_LENGTHS.get(country_code, TIMEZONE_LONGEST_PREFIX)]


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
