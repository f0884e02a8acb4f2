"""Campaign files: strict YAML into a frozen model, every problem located (file:line: field: what).

YAML 1.1 traps are caught here rather than guessed at: an unquoted ``21:00`` (read as the
number 1260) must be quoted, unknown keys are errors, and ``${VAR}`` references are resolved from the
environment, never stored resolved.
"""

from __future__ import annotations

import csv
import os
import re
from datetime import date, datetime, time, timezone
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import CampaignFileError, Location
from .template import MessageTemplate, TemplateError

PROVIDER_NAMES = ("dropcowboy", "dripcel", "skycore", "fonedynamics")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_DAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}

Path_ = tuple[str | int, ...]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ProviderSpec(_Strict):
    name: Literal["dropcowboy", "dripcel", "skycore", "fonedynamics"]
    base_url: str | None = None
    credentials: dict[str, str] = Field(default_factory=dict)
    options: dict[str, str | int | float | bool] = Field(default_factory=dict)
    rate_limit: str | None = None
    burst: int = Field(default=1, ge=1)
    rate_scope: str | None = None  # e.g. a pool or sender: campaigns with the same scope share one limit

    @field_validator("rate_limit")
    @classmethod
    def _rate(cls, v: str | None) -> str | None:
        if v is not None:
            from .ratelimit import Rate

            Rate.parse(v)
        return v


class ContactsSpec(_Strict):
    path: str
    default_region: str | None = None

    @field_validator("default_region")
    @classmethod
    def _region(cls, v: str | None) -> str | None:
        import phonenumbers

        if v is not None and v.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown region {v!r}: use an ISO 3166 code such as US, GB, ZA, AU")
        return v.upper() if v else v


class QuietHoursSpec(_Strict):
    start: str
    end: str
    default_timezone: str | None = None
    days: list[str] | None = None          # days on which sending is allowed, e.g. [mon, tue, wed, thu, fri, sat]
    blackout_dates: list[str] = Field(default_factory=list)  # "2026-12-25"

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        if not _HHMM.match(v):
            raise ValueError(f"{v!r} is not a time: write it as \"HH:MM\" (24-hour, quoted)")
        return v

    @field_validator("default_timezone")
    @classmethod
    def _tz(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                ZoneInfo(v)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {v!r} (use an IANA name such as America/New_York)") from None
        return v

    @field_validator("days")
    @classmethod
    def _days(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            bad = [d for d in v if d.lower()[:3] not in _DAYS]
            if bad:
                raise ValueError(f"unknown day(s) {bad}: use mon, tue, wed, thu, fri, sat, sun")
        return v

    @field_validator("blackout_dates")
    @classmethod
    def _dates(cls, v: list[str]) -> list[str]:
        for d in v:
            try:
                date.fromisoformat(d)
            except ValueError:
                raise ValueError(f"{d!r} is not a date: write it as \"YYYY-MM-DD\"") from None
        return v

    def to_policy(self) -> Any:
        from .policy import QuietHours

        h1, m1 = map(int, self.start.split(":"))
        h2, m2 = map(int, self.end.split(":"))
        return QuietHours(
            start=time(h1, m1),
            end=time(h2, m2),
            default_timezone=self.default_timezone,
            days=frozenset(_DAYS[d.lower()[:3]] for d in self.days) if self.days is not None else None,
            blackout_dates=frozenset(date.fromisoformat(d) for d in self.blackout_dates),
        )


class CampaignSpec(_Strict):
    name: str
    channel: Literal["sms"] = "sms"
    provider: ProviderSpec
    contacts: ContactsSpec
    message: str
    quiet_hours: QuietHoursSpec | None = None
    schedule: datetime | None = None
    max_segments: int = Field(default=1, ge=1, le=10)
    max_attempts: int = Field(default=5, ge=1, le=20)
    test_mode: bool = False
    cost_per_segment: float | None = Field(default=None, ge=0)   # for the plan's cost estimate

    @field_validator("cost_per_segment", mode="before")
    @classmethod
    def _cost(cls, v: Any) -> Any:
        return float(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("use letters, digits, '-', '_' or '.', starting with a letter or digit (at most 100)")
        return v

    @field_validator("message")
    @classmethod
    def _message(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("the message is empty")
        return v

    @field_validator("schedule", mode="before")
    @classmethod
    def _schedule(cls, v: Any) -> Any:
        if isinstance(v, str):
            try:
                v = datetime.fromisoformat(v)
            except ValueError:
                raise ValueError(f"{v!r} is not an ISO 8601 time such as \"2026-12-01T09:00:00-05:00\"") from None
        if isinstance(v, datetime) and v.tzinfo is None:
            raise ValueError("the schedule needs a UTC offset, e.g. \"2026-12-01T09:00:00-05:00\"")
        return v


class Campaign:
    """A validated campaign file: the spec as written (``${VAR}`` unresolved) plus what was derived from it."""

    def __init__(self, spec: CampaignSpec, raw: dict[str, Any], source: Path) -> None:
        self.spec = spec
        self.raw = raw                 # as written, ${VAR} references unresolved: safe to store
        self.source = source
        self.template = MessageTemplate(spec.message)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def contacts_path(self) -> Path:
        p = Path(self.spec.contacts.path)
        return p if p.is_absolute() else (self.source.parent / p)

    @property
    def schedule_utc(self) -> datetime | None:
        s = self.spec.schedule
        return s.astimezone(timezone.utc) if s else None

    def credentials(self, environ: dict[str, str] | None = None) -> dict[str, str]:
        """Credentials with ``${VAR}`` resolved from the environment (raises KeyError naming a missing var)."""
        env = os.environ if environ is None else environ
        return {k: expand(v, env) for k, v in self.spec.provider.credentials.items()}

    def options(self, environ: dict[str, str] | None = None) -> dict[str, Any]:
        env = os.environ if environ is None else environ
        return {k: expand(v, env) if isinstance(v, str) else v for k, v in self.spec.provider.options.items()}

    def base_url(self, environ: dict[str, str] | None = None) -> str | None:
        env = os.environ if environ is None else environ
        b = self.spec.provider.base_url
        return expand(b, env).rstrip("/") if b else None


def expand(value: str, env: Any) -> str:
    def sub(m: re.Match[str]) -> str:
        if m.group(1) not in env:
            raise KeyError(m.group(1))
        return str(env[m.group(1)])

    return _VAR.sub(sub, value)


# ---------------------------------------------------------------- YAML with line numbers

class _Located:
    def __init__(self) -> None:
        self.lines: dict[Path_, int] = {}
        self.problems: list[tuple[Path_, str]] = []


_constructor = yaml.constructor.SafeConstructor()


def _build(node: yaml.Node, path: Path_, loc: _Located) -> Any:
    loc.lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for knode, vnode in node.value:
            key = _constructor.construct_object(knode, deep=True)
            if not isinstance(key, str):
                key = str(knode.value)
            kpath = path + (key,)
            if key in out:
                loc.lines[kpath] = knode.start_mark.line + 1
                loc.problems.append((kpath, "duplicate key"))
                continue
            out[key] = _build(vnode, kpath, loc)
            loc.lines[kpath] = knode.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(n, path + (i,), loc) for i, n in enumerate(node.value)]
    value = _constructor.construct_object(node, deep=True)
    if isinstance(value, int) and not isinstance(value, bool) and node.style is None and ":" in node.value:
        # YAML 1.1 sexagesimal: 21:00 is 1260. Keep the text so the field validator can say "quote it".
        loc.problems.append((path, f"{node.value} must be quoted (\"{node.value}\"): unquoted, YAML reads it as the number {value}"))
    return value


def _field(path: Path_) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _line_for(path: Path_, loc: _Located) -> int | None:
    while path:
        if path in loc.lines:
            return loc.lines[path]
        path = path[:-1]
    return loc.lines.get((), None)


def load_campaign(path: str | Path, *, environ: dict[str, str] | None = None, check_contacts: bool = True) -> Campaign:
    """Read and validate a campaign file. Raises CampaignFileError listing every problem found."""
    source = Path(path)
    fname = str(path)
    env = os.environ if environ is None else environ

    def fail(problems: list[tuple[int | None, str | None, str]]) -> CampaignFileError:
        return CampaignFileError([(Location(fname, line, field), msg) for line, field, msg in problems])

    try:
        text = source.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise fail([(None, None, "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise fail([(None, None, f"cannot read the file: {exc}")]) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        what = getattr(exc, "problem", None) or str(exc)
        raise fail([(mark.line + 1 if mark else None, None, f"not valid YAML: {what}")]) from None
    if node is None or not isinstance(node, yaml.MappingNode):
        raise fail([(1, None, "a campaign file is a YAML mapping (name:, provider:, contacts:, message:, ...)")])

    loc = _Located()
    try:
        raw = _build(node, (), loc)
    except yaml.YAMLError as exc:
        raise fail([(None, None, f"not valid YAML: {exc}")]) from None

    problems: list[tuple[int | None, str | None, str]] = [(_line_for(p, loc), _field(p), m) for p, m in loc.problems]
    bad_paths = {p for p, _ in loc.problems}
    spec: CampaignSpec | None = None
    if not problems:
        try:
            spec = CampaignSpec.model_validate(raw)
        except ValidationError as exc:
            for err in exc.errors():
                p: Path_ = tuple(err["loc"])
                p = tuple(x for x in p if not (isinstance(x, str) and x in ("function-after", "function-before", "str", "int", "bool", "float")))
                if any(p[: len(b)] == b for b in bad_paths):
                    continue
                problems.append((_line_for(p, loc), _field(p), _pydantic_message(err, raw, p)))
    if spec is not None:
        problems += _semantic_checks(spec, loc, env, source, check_contacts)
    if problems:
        problems.sort(key=lambda x: (x[0] or 0))
        raise fail(problems)
    assert spec is not None
    return Campaign(spec, raw, source)


def _pydantic_message(err: dict[str, Any], raw: Any, path: Path_) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown key (check the spelling; see the campaign file reference in README.md)"
    if kind == "missing":
        return "required field is missing"
    if kind == "literal_error":
        return f"must be one of {err['ctx']['expected']}"
    if kind == "value_error":
        return str(err["ctx"]["error"])
    if kind in ("string_type",):
        return f"must be a quoted string, got {err.get('input')!r}"
    if kind in ("int_type", "int_parsing"):
        return f"must be a whole number, got {err.get('input')!r}"
    if kind == "bool_type":
        return f"must be true or false, got {err.get('input')!r}"
    if kind == "dict_type":
        return "must be a mapping (key: value lines)"
    if kind == "list_type":
        return "must be a list"
    return err["msg"]


def _semantic_checks(spec: CampaignSpec, loc: _Located, env: Any, source: Path,
                     check_contacts: bool) -> list[tuple[int | None, str | None, str]]:
    from .providers import get_provider_class

    out: list[tuple[int | None, str | None, str]] = []

    def add(path: Path_, msg: str) -> None:
        out.append((_line_for(path, loc), _field(path), msg))

    for key, value in spec.provider.credentials.items():
        for var in _VAR.findall(value):
            if var not in env:
                add(("provider", "credentials", key), f"environment variable {var} is not set")
    for key, value in spec.provider.options.items():
        if isinstance(value, str):
            for var in _VAR.findall(value):
                if var not in env:
                    add(("provider", "options", key), f"environment variable {var} is not set")

    cls = get_provider_class(spec.provider.name)
    for cred in cls.required_credentials:
        if cred not in spec.provider.credentials:
            add(("provider", "credentials"), f"{spec.provider.name} needs credential '{cred}' (e.g. {cred}: \"${{{spec.provider.name.upper()}_{cred.upper()}}}\")")
    for extra in set(spec.provider.credentials) - set(cls.required_credentials):
        add(("provider", "credentials", extra), f"unknown credential for {spec.provider.name}; expected {list(cls.required_credentials)}")
    known = set(cls.required_options) | set(cls.optional_options)
    for opt in spec.provider.options:
        if opt not in known:
            add(("provider", "options", opt), f"unknown option for {spec.provider.name}; known: {sorted(known)}")
    validate_options = getattr(cls, "validate_options", None)
    if validate_options is not None:
        opts = {k: (expand(v, env) if isinstance(v, str) else v) for k, v in spec.provider.options.items()
                if not (isinstance(v, str) and any(var not in env for var in _VAR.findall(v)))}
        for msg in validate_options(opts):
            add(("provider", "options"), msg)
    else:
        for opt in cls.required_options:
            if opt not in spec.provider.options:
                add(("provider", "options"), f"provider.options.{opt} is required for {spec.provider.name}")
    if spec.max_segments > 1 and not cls.concatenates:
        add(("max_segments",), f"{spec.provider.name} sends one segment at most (no concatenation): max_segments must be 1")

    try:
        template = MessageTemplate(spec.message)
    except TemplateError as exc:
        add(("message",), str(exc))
        return out

    if check_contacts:
        contacts = Path(spec.contacts.path)
        contacts = contacts if contacts.is_absolute() else source.parent / contacts
        try:
            header = read_header(contacts)
        except OSError as exc:
            add(("contacts", "path"), f"cannot open {contacts}: {exc.strerror or exc}")
            return out
        if header is None:
            add(("contacts", "path"), f"{contacts} is empty: the first line must name the columns (phone, opt_in, ...)")
            return out
        for col in ("phone", "opt_in"):
            if col not in header:
                add(("contacts", "path"), f"{contacts}:1: column '{col}' is missing (columns found: {', '.join(header) or 'none'})")
        missing = sorted(template.variables - set(header))
        if missing:
            add(("message",), f"template uses {', '.join(missing)}, which no column of {contacts.name} provides (columns: {', '.join(header)})")
    return out


def read_header(path: Path) -> list[str] | None:
    """The contact file's column names, normalised (trimmed, lower-case); None for an empty file."""
    with open(path, "rb") as fh:
        first = fh.readline()
    if not first.strip():
        return None
    text = first.decode("utf-8-sig", errors="replace")
    row = next(csv.reader([text]), [])
    return [c.strip().lower() for c in row]


def campaign_from_stored(raw: dict[str, Any], source: str) -> Campaign:
    """Rebuild a campaign from the spec stored at load time (the contacts file is not read again)."""
    return Campaign(CampaignSpec.model_validate(raw), raw, Path(source))
