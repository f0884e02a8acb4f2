"""normalise's fast path for plainly written numbers (phones._plain) gives exactly the full path's answer.

The corpus: phonenumbers' example number of every type in every region (and of every non-geographic code),
written in E.164, international and national format, with and without punctuation, national and international
prefixes, the country code without "+", and with digits changed, added, dropped and zero-padded; each read with
no default region, the number's own, a region sharing its country code, and random others. Seeded, so a failure
repeats.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import phonenumbers
import pytest
from phonenumbers import PhoneMetadata, PhoneNumberFormat, PhoneNumberType

from dispatcher import phones
from dispatcher.phones import InvalidNumber, normalise, timezones_for

REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)
SEPARATORS = [" ", " ", "-", ".", "  ", " - ", "/", "\u00a0", "(", ")", ""]


def _examples() -> list[phonenumbers.PhoneNumber]:
    found = []
    for region in REGIONS:
        for kind in vars(PhoneNumberType).values():
            if isinstance(kind, int) and (n := phonenumbers.example_number_for_type(region, kind)) is not None:
                found.append(n)
    for code in phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS:
        if (n := phonenumbers.example_number_for_non_geo_entity(code)) is not None:
            found.append(n)
    return found


def _punctuated(digits: str, rnd: random.Random) -> str:
    """The digits in groups of 1-4 joined by random separators, sometimes the first group in parentheses."""
    groups, i = [], 0
    while i < len(digits):
        size = rnd.randint(1, 4)
        groups.append(digits[i:i + size])
        i += size
    if len(groups) > 1 and rnd.random() < 0.3:
        groups[0] = f"({groups[0]})"
    return "".join(g + (rnd.choice(SEPARATORS) if k < len(groups) - 1 else "") for k, g in enumerate(groups))


def _mutated(digits: str, rnd: random.Random) -> str:
    kind = rnd.randrange(6)
    at = rnd.randrange(len(digits) + 1)
    if kind == 0 and digits:      # a digit changed
        at = min(at, len(digits) - 1)
        return digits[:at] + rnd.choice("0123456789") + digits[at + 1:]
    if kind == 1:                 # a digit added
        return digits[:at] + rnd.choice("0123456789") + digits[at:]
    if kind == 2 and len(digits) > 1:   # a digit dropped
        at = min(at, len(digits) - 1)
        return digits[:at] + digits[at + 1:]
    if kind == 3:                 # leading zeros
        return "0" * rnd.randint(1, 3) + digits
    if kind == 4:                 # a few digits more at the end
        return digits + "".join(rnd.choice("0123456789") for _ in range(rnd.randint(1, 4)))
    return digits


def _spellings(n: phonenumbers.PhoneNumber, rnd: random.Random) -> list[tuple[str, str | None]]:
    """(text, default region) pairs for one example number."""
    cc = n.country_code
    nsn = phonenumbers.national_significant_number(n)
    own = phonenumbers.region_code_for_number(n)
    own = own if own in phonenumbers.SUPPORTED_REGIONS else rnd.choice(REGIONS)
    siblings = [r for r in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(cc, ()) if r in phonenumbers.SUPPORTED_REGIONS]
    metadata = PhoneMetadata.metadata_for_region(own)
    national_prefix = (metadata.national_prefix or "") if metadata else ""
    idd = (metadata.preferred_international_prefix or metadata.international_prefix or "00") if metadata else "00"
    idd = idd if idd.isdigit() else "00"

    def some_region() -> str | None:
        return rnd.choice([None, own, own, rnd.choice(siblings or REGIONS), rnd.choice(REGIONS), "US", "GB", "IT"])

    out: list[tuple[str, str | None]] = [   # the spellings parse treats specially, each read in its own region
        (f"{national_prefix}{nsn}", own), (f"+{cc}{national_prefix}{nsn}", own), (f"{cc}{nsn}", own),
        (f"{idd}{cc}{nsn}", own), (nsn, own), (nsn, rnd.choice(siblings or REGIONS)),
    ]
    for fmt in (PhoneNumberFormat.E164, PhoneNumberFormat.INTERNATIONAL):
        out.append((phonenumbers.format_number(n, fmt), some_region()))
    national = phonenumbers.format_number(n, PhoneNumberFormat.NATIONAL)
    if not any(c.isalpha() for c in national):
        out += [(national, own), (national, rnd.choice(siblings or REGIONS)), (national, rnd.choice(REGIONS))]
    for _ in range(16):
        body = _mutated(nsn, rnd) if rnd.random() < 0.6 else nsn
        if not body:
            continue
        spelled = _punctuated(body, rnd) if rnd.random() < 0.6 else body
        kind = rnd.randrange(7)
        if kind == 0:
            out.append((f"+{cc}{rnd.choice(['', ' ', '-', '.'])}{spelled}", some_region()))
        elif kind == 1:      # a national prefix after the country code, as people write it
            out.append((f"+{cc} {rnd.choice(['(0)', '0', national_prefix, ''])}{spelled}", some_region()))
        elif kind == 2:      # national, perhaps with the national prefix
            prefix = national_prefix if rnd.random() < 0.5 else ""
            out.append((f"{prefix}{spelled}", rnd.choice([own, own, some_region() or own])))
        elif kind == 3:      # the country code without "+"
            out.append((f"{cc} {spelled}", rnd.choice([own, rnd.choice(siblings or REGIONS)])))
        elif kind == 4:      # dialled from abroad
            out.append((f"{idd} {cc} {spelled}", rnd.choice([own, rnd.choice(REGIONS)])))
        elif kind == 5:      # digits of another country code
            out.append((f"+{_mutated(str(cc), rnd)}{spelled}", some_region()))
        else:
            out.append((spelled, rnd.choice(REGIONS)))
    return out


def _corpus() -> list[tuple[str, str | None]]:
    rnd = random.Random(20261201)
    cases = []
    for n in _examples():
        for text, region in _spellings(n, rnd):
            text = text.strip()
            # normalise refuses these before either path is asked
            if text and not any(c.isalpha() for c in text) and (region is not None or text[0] in "+\uff0b"):
                cases.append((text, region))
    return cases


CORPUS = _corpus()


def _full(text: str, region: str | None) -> Any:
    try:
        return phones._parsed(text, region)
    except InvalidNumber as exc:
        return f"refused: {exc}"


def test_the_corpus_is_large_and_varied() -> None:
    assert len(CORPUS) > 20_000
    outcomes = Counter("valid" if isinstance(_full(t, r), tuple) else "refused" for t, r in CORPUS[::10])
    assert outcomes["valid"] > 500 and outcomes["refused"] > 500


def test_fast_path_gives_the_full_paths_answer_or_leaves_it_to_the_full_path() -> None:
    taken = Counter()
    for text, region in CORPUS:
        full = _full(text, region)          # first: it fills the zone cache the fast path reads
        fast = phones._plain(text, region)
        if fast is not None:
            assert fast == full, (text, region)
        taken[isinstance(full, tuple), fast is not None] += 1
    assert taken[False, True] == 0
    assert taken[True, True] > 5000


def test_fast_path_answers_for_almost_every_valid_example_number_in_e164() -> None:
    # the exceptions start with what may be a national prefix (Argentina, Russia's 8, Lithuania's 8, Belarus' 80)
    answered = Counter()
    for n in _examples():
        e164 = phonenumbers.format_number(n, PhoneNumberFormat.E164)
        if isinstance(full := _full(e164, None), tuple):
            answered[phones._plain(e164, None) == full] += 1
    assert answered[True] > 0.98 * (answered[True] + answered[False])


@pytest.mark.parametrize("text", ["+12025550147", "+1 202-555-0147", "+1 (202) 555-0147", "+44 7400 123456",
                                  "+447400123456", "+33 6 12 34 56 78", "+49 1512 3456789", "+61 412 345 678"])
def test_fast_path_answers_for_common_international_spellings(text: str) -> None:
    full = phones._parsed(text, None)
    assert phones._plain(text, None) == full


@pytest.mark.parametrize(("text", "region"), [("(202) 555-0147", "US"), ("202-555-0147", "US"), ("202.555.0147", "US"),
                                              ("2025550147", "US"), ("(416) 555-0147", "CA"), ("06 1234 5678", "IT")])
def test_fast_path_answers_for_common_national_spellings(text: str, region: str) -> None:
    full = phones._parsed(text, region)
    assert phones._plain(text, region) == full


@pytest.mark.parametrize(("text", "region"), [
    ("1 202 555 0147", "US"),        # country code without "+": parse may strip it
    ("011 44 20 7946 0958", "US"),   # an international prefix
    ("020 7946 0958", "GB"),         # a national prefix
    ("+44 (0)20 7946 0958", None),   # a national prefix after the country code
    ("+1 202 555 0147.", None),      # trailing punctuation
    ("+1 202 555 0147 #8", None),    # an extension
    ("+1 202/555/0147", None),       # other separators
])
def test_fast_path_leaves_prefixes_and_unusual_spellings_to_the_full_path(text: str, region: str | None) -> None:
    assert phones._plain(text, region) is None
    assert isinstance(_full(text, region), tuple)


def test_normalise_and_timezones_for_agree_with_the_full_path_over_the_corpus() -> None:
    normalise.cache_clear()
    for text, region in CORPUS[::3]:
        full = _full(text, region)
        try:
            got: Any = normalise(text, region)
        except InvalidNumber as exc:
            assert full == f"refused: {exc}", (text, region)
            continue
        assert isinstance(full, tuple) and got == full[0], (text, region)
        assert timezones_for(got.e164) == full[1]
