"""How many SMS segments a text needs, and in which encoding.

A text is sent as GSM-7 when every character is in the 3GPP TS 23.038 default alphabet or
its extension table (the table comes from the ``gsm0338`` codec); otherwise the whole
message switches to UCS-2. Counting rules:

===========  ===================================  ==========  =================
encoding     unit                                 1 segment   per part (multi)
===========  ===================================  ==========  =================
GSM-7        septet; an extension character is    160         153
             ESC + character, so it counts two
UCS-2        UTF-16 code unit; a character        70          67
             outside the BMP (emoji) counts two
===========  ===================================  ==========  =================

A character is never split across parts: when an extension character or a surrogate pair
does not fit in what is left of a part, the part ends one unit short.

National language shift tables (e.g. the Spanish ``ç``) are not used: not every network and
provider supports them, so a text needing one is counted as UCS-2.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from gsm0338 import Codec  # type: ignore[import-untyped]

Encoding = Literal["GSM-7", "UCS-2"]

GSM7_SINGLE = 160
GSM7_PART = 153
UCS2_SINGLE = 70
UCS2_PART = 67

__all__ = ["Encoding", "TextInfo", "analyse", "fits", "is_gsm7_char"]


def _gsm7_tables() -> tuple[frozenset[str], frozenset[str]]:
    """The default alphabet and the extension table, as sets of characters, read from the codec."""
    codec = Codec()
    candidates: set[str] = set()
    for first in range(0x80):
        decoded, _ = codec.decode(bytes((first,)), errors="ignore")
        candidates.update(decoded)
        decoded, _ = codec.decode(bytes((0x1B, first)), errors="ignore")
        candidates.update(decoded)
    basic: set[str] = set()
    extension: set[str] = set()
    for char in candidates:
        encoded, _ = codec.encode(char)
        (basic if len(encoded) == 1 else extension).add(char)
    # A bare ESC in user text would swallow the next character on the handset.
    basic.discard("\x1b")
    return frozenset(basic), frozenset(extension)


GSM7_BASIC, GSM7_EXTENSION = _gsm7_tables()
_GSM7 = GSM7_BASIC | GSM7_EXTENSION
# A text of the default alphabet alone, found in one C call: the common case, where each character is one septet.
_BASIC_TEXT = re.compile("[" + "".join(re.escape(c) for c in sorted(GSM7_BASIC)) + "]*")


@dataclass(frozen=True, slots=True)
class TextInfo:
    """What a text costs to send.

    ``units`` are GSM-7 septets or UTF-16 code units (see the module docstring);
    ``chars`` are Unicode code points (``len(text)``), so an emoji counts one.
    """

    encoding: Encoding
    units: int
    segments: int
    chars: int


def is_gsm7_char(char: str) -> bool:
    """Whether one character can be sent in GSM-7 (default alphabet or extension table)."""
    return char in _GSM7


def analyse(text: str) -> TextInfo:
    """Encoding, size and segment count of ``text``.

    The empty text is GSM-7 with 0 units and 1 segment: anything actually sent occupies
    at least one message (an empty body is rejected before this is asked).
    """
    chars = len(text)
    if _BASIC_TEXT.fullmatch(text):
        return _info("GSM-7", chars, 1 if chars <= GSM7_SINGLE else -(-chars // GSM7_PART), chars)
    distinct = set(text)
    if distinct <= _GSM7:
        extension = distinct & GSM7_EXTENSION
        units = chars + sum(text.count(c) for c in extension)
        if units <= GSM7_SINGLE:
            segments = 1
        elif not extension:
            segments = -(-units // GSM7_PART)
        else:
            segments = _pack(text, GSM7_PART, extension)
        return _info("GSM-7", units, segments, chars)

    units = len(text.encode("utf-16-le")) // 2
    if units <= UCS2_SINGLE:
        segments = 1
    elif units == chars:
        segments = -(-units // UCS2_PART)
    else:
        segments = _pack(text, UCS2_PART, {c for c in distinct if ord(c) > 0xFFFF})
    return _info("UCS-2", units, segments, chars)


_INFOS: dict[tuple[Encoding, int, int, int], TextInfo] = {}


def _info(encoding: Encoding, units: int, segments: int, chars: int) -> TextInfo:
    """The TextInfo of these values, made once: a loader asks for the same few over and over, and a frozen
    dataclass costs more to make than to look up."""
    key = (encoding, units, segments, chars)
    info = _INFOS.get(key)
    if info is None:
        if len(_INFOS) >= 4096:
            _INFOS.clear()
        info = _INFOS[key] = TextInfo(encoding, units, segments, chars)
    return info


def _pack(text: str, capacity: int, wide: set[str]) -> int:
    """Parts needed when each char in ``wide`` takes two units and may not straddle parts.

    Filling each part as far as it goes gives the fewest parts for a fixed order.
    """
    parts = 1
    used = 0
    for char in text:
        size = 2 if char in wide else 1
        if used + size > capacity:
            parts += 1
            used = 0
        used += size
    return parts


def fits(info: TextInfo, max_segments: int) -> bool:
    """Whether a text of this size may be sent when at most ``max_segments`` are allowed."""
    return info.segments <= max_segments
