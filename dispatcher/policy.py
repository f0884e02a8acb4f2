"""Compliance rules: consent, suppression, length and quiet hours, as pure functions of a clock.

``decide`` is the one question the engine asks per recipient. Its answer, in this order
of precedence:

    skip   no recorded consent / suppressed / longer than the campaign allows
    hold   quiet hours are configured but no time zone is known for the number, or no
           instant within ``HORIZON`` is allowed in every zone: a person must look
    defer  inside quiet hours (or on a day without sending) in at least one zone:
           ``not_before`` is the earliest instant allowed in all of them
    send   everything else

Quiet hours are read off the recipient's local wall clock: an instant is allowed in a zone
when its local date is a sending day, not a blackout date, and its local time is outside
``[start, end)``. When the clock jumps forward over an opening time (DST), sending opens at
the jump; when it falls back, the first occurrence of the opening time counts.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dispatcher.encoding import TextInfo, fits
from dispatcher.phones import timezones_for

__all__ = [
    "HORIZON",
    "Action",
    "Decision",
    "QuietHours",
    "decide",
    "next_allowed",
    "parse_opt_in",
    "resolve_zones",
    "zone",
]

HORIZON = timedelta(days=14)
_DAY = timedelta(days=1)
_SECOND = timedelta(seconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MIDNIGHT = time(0, 0)
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

_OPT_IN_WORDS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def parse_opt_in(value: str | None) -> bool:
    """Read a contact's opt_in column: true/false/yes/no/1/0, any case, surrounding blanks ignored.

    ``None`` or a blank value means no recorded consent (False). Raises ``ValueError`` for
    anything else, including y/n and t/f, with a message naming the accepted words.
    """
    if value is None:
        return False
    word = value.strip().lower()
    if not word:
        return False
    try:
        return _OPT_IN_WORDS[word]
    except KeyError:
        raise ValueError(f"opt_in must be one of true/false/yes/no/1/0, got {value!r}") from None


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    """The IANA zone called ``name``; raises ``ValueError`` naming it when there is none.

    Host-dependent keys ("localtime") and the "Factory" placeholder are refused too.
    """
    if name in ("localtime", "Factory", "posixrules"):
        raise ValueError(f"unknown time zone {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {name!r}") from None


@dataclass(frozen=True, slots=True)
class QuietHours:
    """When messages may not reach a recipient, in the recipient's local time.

    Quiet from ``start`` (included) to ``end`` (excluded); the window wraps midnight when
    ``end < start`` (21:00-08:00). ``start == end`` means no daily window: only ``days``
    and ``blackout_dates`` apply. ``days`` are the weekdays (Monday=0) on which sending is
    allowed, ``None`` for every day; ``blackout_dates`` are local dates with no sending.
    ``default_timezone`` is used for numbers whose zone is unknown.

    Raises ``ValueError`` for aware times, weekdays outside 0-6, an empty ``days``, datetimes
    among the blackout dates or an unknown ``default_timezone``.
    """

    start: time
    end: time
    default_timezone: str | None = None
    days: frozenset[int] | None = None
    blackout_dates: frozenset[date] = frozenset()

    def __post_init__(self) -> None:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("quiet hours start and end are local wall times and must not carry a time zone")
        if self.days is not None:
            days = frozenset(self.days)
            if not days:
                raise ValueError("days must name at least one weekday (or be omitted for every day)")
            if not days <= frozenset(range(7)):
                raise ValueError(f"days must be weekday numbers 0 (Monday) to 6 (Sunday), got {sorted(days)}")
            object.__setattr__(self, "days", days)
        blackout = frozenset(self.blackout_dates)
        if any(isinstance(d, datetime) or not isinstance(d, date) for d in blackout):
            raise ValueError("blackout_dates must be dates, not datetimes")
        object.__setattr__(self, "blackout_dates", blackout)
        if self.default_timezone is not None:
            zone(self.default_timezone)

    def is_quiet_time(self, wall: time) -> bool:
        """Whether the local wall time ``wall`` (naive) falls inside the daily window."""
        start, end = self.start, self.end
        if start == end:
            return False
        if start < end:
            return start <= wall < end
        return wall >= start or wall < end

    def allows(self, local: datetime) -> bool:
        """Whether sending is allowed at this local wall-clock reading (its tzinfo is ignored)."""
        return self._blocker(local) is None

    def _blocker(self, local: datetime) -> str | None:
        day = local.date()
        if self.days is not None and day.weekday() not in self.days:
            return f"no sending on {_WEEKDAYS[day.weekday()]}s"
        if day in self.blackout_dates:
            return f"blackout date {day.isoformat()}"
        if self.is_quiet_time(local.time()):
            return "quiet hours"
        return None


def resolve_zones(contact_timezone: str | None, e164: str, default_timezone: str | None) -> tuple[str, ...]:
    """The time zones in which quiet hours apply to one recipient.

    The contact's own time zone column when filled (``ValueError`` if it is not an IANA
    zone); else every zone ``phonenumbers`` gives for the number; else the default zone;
    else ``()``, meaning unknown: the message must be held.
    """
    if contact_timezone is not None and contact_timezone.strip():
        name = contact_timezone.strip()
        zone(name)
        return (name,)
    zones = timezones_for(e164)
    if zones:
        return zones
    if default_timezone:
        zone(default_timezone)
        return (default_timezone,)
    return ()


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")


def next_allowed(zones: Sequence[str], now: datetime, qh: QuietHours | None) -> datetime | None:
    """The earliest instant at or after ``now`` that is allowed in every one of ``zones``.

    Returns ``now`` itself when it is already allowed everywhere (or ``qh`` is None),
    otherwise an aware UTC datetime, exact to the microsecond; ``None`` when ``zones`` is
    empty (hold) or no instant within ``HORIZON`` of ``now`` is allowed everywhere.
    Raises ``ValueError`` for a naive ``now`` or an unknown zone name.
    """
    _require_aware(now)
    if not zones:
        return None
    if qh is None:
        return now
    tzs = list({name: zone(name) for name in zones}.values())
    if all(qh.allows(now.astimezone(tz)) for tz in tzs):
        return now
    start = now.astimezone(UTC)
    limit = start + HORIZON
    chunk = start
    while chunk < limit:
        chunk_end = min(chunk + _DAY, limit)
        candidates = sorted({c for tz in tzs for c in _openings(tz, chunk, chunk_end, qh)})
        for candidate in candidates:
            if candidate > start and all(qh.allows(candidate.astimezone(tz)) for tz in tzs):
                return candidate
        chunk = chunk_end
    return None


def _openings(tz: ZoneInfo, lo: datetime, hi: datetime, qh: QuietHours) -> Iterator[datetime]:
    """Instants in ``[lo, hi]`` at which ``tz`` may switch from not allowed to allowed.

    Between offset changes local time runs with UTC, so a zone can only open where its wall
    clock reaches ``qh.end`` or a midnight, or where its offset changes.
    """
    for seg_lo, seg_hi, offset in _constant_offset_spans(tz, lo, hi):
        yield seg_lo
        wall_lo = (seg_lo + offset).replace(tzinfo=None)
        wall_hi = (seg_hi + offset).replace(tzinfo=None)
        day = wall_lo.date()
        while day <= wall_hi.date():
            if day not in qh.blackout_dates and (qh.days is None or day.weekday() in qh.days):
                for wall_time in (_MIDNIGHT, qh.end):
                    wall = datetime.combine(day, wall_time)
                    if wall_lo <= wall <= wall_hi:
                        yield (wall - offset).replace(tzinfo=UTC)
            day += _DAY


def _offset(tz: ZoneInfo, instant: datetime) -> timedelta:
    offset = instant.astimezone(tz).utcoffset()
    assert offset is not None
    return offset


def _constant_offset_spans(
    tz: ZoneInfo, lo: datetime, hi: datetime
) -> Iterator[tuple[datetime, datetime, timedelta]]:
    """Split ``[lo, hi]`` (at most a day long) where ``tz`` changes its UTC offset.

    Assumes at most one offset change in a day, true of every zone in current tzdata.
    """
    before, after = _offset(tz, lo), _offset(tz, hi)
    if before == after:
        yield lo, hi, before
        return
    change = _find_offset_change(tz, lo, hi, before)
    yield lo, change, before
    yield change, hi, after


def _find_offset_change(tz: ZoneInfo, lo: datetime, hi: datetime, before: timedelta) -> datetime:
    """The first whole UTC second in ``(lo, hi]`` whose offset differs from ``before``."""
    # tzdata transitions fall on whole seconds, so bisecting over seconds is exact.
    low = (lo - _EPOCH) // _SECOND
    high = -((_EPOCH - hi) // _SECOND)
    while high - low > 1:
        mid = (low + high) // 2
        if _offset(tz, _EPOCH + mid * _SECOND) == before:
            low = mid
        else:
            high = mid
    return _EPOCH + high * _SECOND


Action = Literal["send", "defer", "skip", "hold"]


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one message now. ``reason`` is for the user; ``not_before`` is UTC, set for defer."""

    action: Action
    reason: str | None = None
    not_before: datetime | None = None


_SEND = Decision("send")   # frozen: one for every message that may go now


def decide(
    *,
    opt_in: bool,
    suppressed_reason: str | None,
    info: TextInfo,
    max_segments: int,
    zones: tuple[str, ...],
    quiet_hours: QuietHours | None,
    now: datetime,
) -> Decision:
    """Whether to send one message at ``now``, following the precedence in the module docstring.

    ``suppressed_reason`` is None when the number is not suppressed, else what suppressed it
    ("STOP reply on 2026-11-02"). ``zones`` come from ``resolve_zones`` and only matter when
    ``quiet_hours`` is set. Raises ``ValueError`` for a naive ``now`` or an unknown zone.
    """
    _require_aware(now)
    if not opt_in:
        return Decision("skip", "no recorded consent")
    if suppressed_reason is not None:
        return Decision("skip", f"suppressed: {suppressed_reason}" if suppressed_reason else "suppressed")
    if not fits(info, max_segments):
        return Decision(
            "skip",
            f"too long: {info.segments} segments of {info.encoding} ({info.chars} characters),"
            f" at most {max_segments} allowed",
        )
    if quiet_hours is None:
        return _SEND
    if not zones:
        return Decision("hold", "no time zone known for this number and no quiet_hours.default_timezone")
    not_before = next_allowed(zones, now, quiet_hours)
    if not_before is None:
        where = ", ".join(zones) if len(zones) <= 3 else f"all {len(zones)} time zones of this number"
        return Decision("hold", f"no time in the next {HORIZON.days} days when sending is allowed in {where}")
    if not_before == now:
        return _SEND
    return Decision("defer", _defer_reason(zones, now, not_before, quiet_hours), not_before)


def _defer_reason(zones: tuple[str, ...], now: datetime, not_before: datetime, qh: QuietHours) -> str:
    """Why the message cannot go now, and until when, in the words of the zone that decides it."""
    blocked_now = _first_blocked(zones, now, qh, prefer=None)
    blocked_last = _first_blocked(zones, not_before - timedelta(microseconds=1), qh, prefer=blocked_now[0])
    (now_zone, now_why), (last_zone, last_why) = blocked_now, blocked_last
    local = not_before.astimezone(zone(last_zone))
    utc = not_before.astimezone(UTC)
    if local.date() == now.astimezone(zone(last_zone)).date():
        until = f"{_clock(local)} local ({_clock(utc)} UTC)"
    else:
        until = f"{local.date().isoformat()} {_clock(local)} local ({utc.date().isoformat()} {_clock(utc)} UTC)"
    if last_zone == now_zone:
        return f"{now_why} in {now_zone} until {until}"
    return f"{now_why} in {now_zone}, then {last_why} in {last_zone} until {until}"


def _first_blocked(zones: tuple[str, ...], instant: datetime, qh: QuietHours, prefer: str | None) -> tuple[str, str]:
    blocked = [(name, why) for name in zones if (why := qh._blocker(instant.astimezone(zone(name)))) is not None]
    for name, why in blocked:
        if name == prefer:
            return name, why
    return blocked[0] if blocked else (zones[0], "quiet hours")


def _clock(moment: datetime) -> str:
    return moment.strftime("%H:%M:%S" if moment.second or moment.microsecond else "%H:%M")
