"""Field checks shared by the sandbox's provider dialects.

Written from the provider documents, not from the adapters: a number, e-mail, URL or time is
judged here the way the documents describe it, so an adapter that formats one wrongly is caught.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

E164 = re.compile(r"\+[1-9][0-9]{6,14}")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")
ISO2 = re.compile(r"[A-Za-z]{2}")

# ISO 3166 alpha-2 -> ITU calling code, for turning national numbers (Dripcel `cell`, Drop Cowboy
# list `region`) into E.164. Enough countries for the campaigns we run; others stay unconverted.
CALLING_CODES: dict[str, str] = {
    "US": "1", "CA": "1", "PR": "1", "MX": "52", "BR": "55", "AR": "54", "CL": "56", "CO": "57",
    "PE": "51", "GB": "44", "IE": "353", "FR": "33", "DE": "49", "NL": "31", "BE": "32", "LU": "352",
    "ES": "34", "PT": "351", "IT": "39", "CH": "41", "AT": "43", "DK": "45", "SE": "46", "NO": "47",
    "FI": "358", "PL": "48", "CZ": "420", "SK": "421", "HU": "36", "RO": "40", "BG": "359", "GR": "30",
    "TR": "90", "IL": "972", "AE": "971", "SA": "966", "EG": "20", "MA": "212", "NG": "234",
    "KE": "254", "GH": "233", "ZA": "27", "NA": "264", "BW": "267", "ZW": "263", "ZM": "260",
    "IN": "91", "PK": "92", "BD": "880", "CN": "86", "HK": "852", "JP": "81", "KR": "82", "SG": "65",
    "MY": "60", "TH": "66", "PH": "63", "ID": "62", "VN": "84", "AU": "61", "NZ": "64",
}
# Countries whose national numbers keep their leading 0 after the calling code.
_KEEP_ZERO = frozenset({"IT"})

GSM7 = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXT = frozenset("^{}\\[~]|€\f")


def is_e164(value: Any) -> bool:
    """True for a string like ``+15552223333`` (``+``, 7 to 15 digits, no leading 0)."""
    return isinstance(value, str) and E164.fullmatch(value) is not None


def is_email(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= 254 and EMAIL.fullmatch(value) is not None


def is_http_url(value: Any) -> bool:
    """True for an absolute ``http://`` or ``https://`` URL with a host."""
    if not isinstance(value, str):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def is_nonempty_str(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def parse_iso(value: Any) -> datetime | None:
    """An ISO 8601 date-time (``2023-10-01T12:00:00Z``), or None when it is not one."""
    if not isinstance(value, str) or "T" not in value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def to_e164(number: str, region: str | None) -> str | None:
    """``number`` as E.164, reading a national number in ``region`` (ISO alpha-2); None if impossible."""
    n = number.strip()
    for ch in " -().":
        n = n.replace(ch, "")
    if n.startswith("+"):
        return n if E164.fullmatch(n) else None
    if n.startswith("00"):
        n = "+" + n[2:]
        return n if E164.fullmatch(n) else None
    if not n.isdigit() or not region:
        return None
    region = region.upper()
    code = CALLING_CODES.get(region)
    if code is None:
        return None
    if n.startswith(code) and len(n) > len(code) + 7 and not n.startswith("0"):
        national = n[len(code):]  # already international, without the '+'
    elif region in _KEEP_ZERO:
        national = n
    else:
        national = n[1:] if n.startswith("0") else n
    candidate = "+" + code + national
    return candidate if len(national) >= 4 and E164.fullmatch(candidate) else None


def segments(text: str) -> int:
    """How many SMS parts ``text`` takes: GSM-7 160/153 per part, otherwise UCS-2 70/67."""
    if all(c in GSM7 or c in GSM7_EXT for c in text):
        units = len(text) + sum(1 for c in text if c in GSM7_EXT)
        return 1 if units <= 160 else math.ceil(units / 153)
    units = sum(2 if ord(c) > 0xFFFF else 1 for c in text)
    return 1 if units <= 70 else math.ceil(units / 67)
