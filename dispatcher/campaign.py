"""Campaign files: strict YAML into a frozen model, every problem located (file:line: field: what).

YAML 1.1 traps are caught here rather than guessed at: an unquoted ``21:00`` (read as the
number 1260) must be quoted, unknown keys are errors, and ``${VAR}`` references are resolved from the
environment, never stored resolved.
"""

from __future__ import annotations

import csv
import math
import os
import re
from datetime import date, datetime, time, timezone
from pathlib import Path
from typing import Any, Iterator, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import CampaignFileError, ContactsError, Location
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
    channel: Literal["sms", "rvm", "email"] = "sms"
    provider: ProviderSpec
    contacts: ContactsSpec
    message: str | None = None     # sms: the text; rvm with voice_id: the tts_body; email: the template is at Dripcel
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
    def _message(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
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
        self.template = MessageTemplate(spec.message or "")

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def contacts_path(self) -> Path:
        p = Path(self.spec.contacts.path)
        return p if p.is_absolute() else (self.source.parent / p)

    @property
    def hold_until(self) -> datetime | None:
        """When sending may start here: the schedule, except for email, which Dripcel schedules itself (to_start_at)."""
        return None if self.spec.channel == "email" else self.schedule_utc

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

_BOOL_FIELDS = {("test_mode",)}            # where YAML 1.1's yes/no/on/off may stand for true/false
_MAX_DEPTH = 64                            # campaign files are a few levels deep; more is a mistake (or an attack)
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_MERGE = "tag:yaml.org,2002:merge"
_YAML_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")   # what YAML counts as a line break


class _Located:
    """What was learnt while building the document: the line of every path, its text, and the problems."""

    def __init__(self) -> None:
        self.lines: dict[Path_, int] = {}
        self.texts: dict[Path_, str] = {}  # plain scalars as written, for messages about how YAML read them
        self.problems: list[tuple[Path_, str]] = []
        self.seen: set[int] = set()
        self.constructor = yaml.constructor.SafeConstructor()


def _build(node: yaml.Node, path: Path_, loc: _Located) -> Any:
    """The document as plain data (JSON-safe: it is stored as written), recording lines and YAML 1.1 traps."""
    loc.lines[path] = node.start_mark.line + 1
    if id(node) in loc.seen:
        # An alias (*name): refused, which also rules out self-reference and "billion laughs" expansion.
        loc.problems.append((path, "aliases (*name) are not supported in campaign files: write the value out"))
        return None
    loc.seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        first: dict[str, int] = {}
        for knode, vnode in node.value:
            line = knode.start_mark.line + 1
            if not isinstance(knode, yaml.ScalarNode):
                loc.lines[path + ("?",)] = line
                loc.problems.append((path + ("?",), "a key must be a plain name, not a list or mapping"))
                continue
            if knode.tag == _MERGE:
                loc.lines[path + ("<<",)] = line
                loc.problems.append((path + ("<<",), "merge keys (<<) are not supported in campaign files"))
                continue
            key = knode.value   # as written: 'on:' stays "on", '1:' stays "1"
            kpath = path + (key,)
            if key in out:
                loc.lines[kpath] = line
                loc.problems.append((kpath, f"duplicate key (first at line {first[key]})"))
                continue
            first[key] = line
            out[key] = _build(vnode, kpath, loc)
            loc.lines[kpath] = line
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(n, path + (i,), loc) for i, n in enumerate(node.value)]
    return _scalar(node, path, loc)


def _scalar(node: yaml.ScalarNode, path: Path_, loc: _Located) -> Any:
    text = node.value
    if node.tag == _TIMESTAMP:
        # Dates and times stay text: the validators parse them (and say what is wrong), and the stored spec stays JSON.
        return text
    try:
        value = loc.constructor.construct_object(node, deep=True)
    except yaml.YAMLError as exc:
        loc.problems.append((path, f"cannot read this value: {getattr(exc, 'problem', None) or exc}"))
        return None
    except ValueError:   # an integer too long for Python to convert
        loc.problems.append((path, f"cannot read {_describe(text)} as a number: quote it if it is text"))
        return None
    if node.style is not None:
        return value
    loc.texts[path] = text
    if isinstance(value, bool) and text.lower() not in ("true", "false") and path not in _BOOL_FIELDS:
        loc.problems.append((path, f"{text} must be quoted (\"{text}\"): unquoted, YAML reads it as {str(value).lower()} "
                                   "(write true or false if you mean a yes/no setting)"))
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and ":" in text:
        # YAML 1.1 sexagesimal: 21:00 is 1260.
        loc.problems.append((path, f"{text} must be quoted (\"{text}\"): unquoted, YAML reads it as the number {value}"))
    elif isinstance(value, int) and not isinstance(value, bool) and re.fullmatch(r"[-+]?0[0-9_]+|[-+]?0[box][0-9a-fA-F_]+", text):
        loc.problems.append((path, f"{text} must be quoted (\"{text}\"): unquoted, YAML reads it as the number {value}"))
    elif isinstance(value, float) and not math.isfinite(value):
        loc.problems.append((path, f"{text} is not a usable number"))
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


def _yaml_problem(exc: yaml.YAMLError, text: str) -> tuple[int, str]:
    """(line, message) for a YAML syntax error."""
    if isinstance(exc, yaml.reader.ReaderError):
        line = len(_YAML_BREAK.findall(text, 0, exc.position)) + 1 if isinstance(exc.position, int) else 1
        if isinstance(exc.character, int):
            return line, f"not valid YAML: the control character U+{exc.character:04X} is not allowed in a YAML file"
        return line, f"not valid YAML: {exc.reason}"
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    context_mark = getattr(exc, "context_mark", None)
    what = problem
    if context and context_mark is not None and mark is not None and context_mark.line != mark.line:
        what += f" ({context} that starts on line {context_mark.line + 1})"
    elif context:
        what = f"{context}, {problem}"
    if "'\\t'" in problem:
        what += " (YAML indentation must use spaces, not tabs)"
    elif "mapping values are not allowed here" in problem:
        what += " (check the indentation, or quote a value that contains ': ')"
    return (mark.line + 1 if mark else 1), f"not valid YAML: {what}"


def _too_deep(text: str) -> int:
    """The line where nesting first passes _MAX_DEPTH (the event parser does not recurse, the composer does)."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > _MAX_DEPTH:
                    return event.start_mark.line + 1
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
    except yaml.YAMLError:
        pass
    return 1


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (an empty value)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def load_campaign(path: str | Path, *, environ: dict[str, str] | None = None, check_contacts: bool = True) -> Campaign:
    """Read and validate a campaign file. Raises CampaignFileError listing every problem found.

    Every problem names the file and, but for an unreadable file, a line; never another exception
    for any content of the file.
    """
    source = Path(path)
    fname = str(path)
    env = os.environ if environ is None else environ

    def fail(problems: list[tuple[int | None, str | None, str]]) -> CampaignFileError:
        return CampaignFileError([(Location(fname, line, field), msg) for line, field, msg in problems])

    try:
        data = source.read_bytes()
    except FileNotFoundError:
        raise fail([(None, None, "file not found")]) from None
    except (OSError, ValueError) as exc:
        raise fail([(None, None, f"cannot read the file: {getattr(exc, 'strerror', None) or exc}")]) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = len(re.findall(rb"\r\n|\r|\n", data[:exc.start])) + 1
        raise fail([(line, None, f"not UTF-8 text (byte 0x{data[exc.start]:02x}): save the file as UTF-8")]) from None
    if not text.strip():
        raise fail([(1, None, "the file is empty: a campaign file is a YAML mapping (name:, provider:, contacts:, message:, ...)")])
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        line, msg = _yaml_problem(exc, text)
        raise fail([(line, None, msg)]) from None
    except RecursionError:
        raise fail([(_too_deep(text), None, f"nested more than {_MAX_DEPTH} levels deep")]) from None
    if node is None:
        raise fail([(1, None, "the file has no content (only comments): a campaign file is a YAML mapping "
                              "(name:, provider:, contacts:, message:, ...)")])
    if not isinstance(node, yaml.MappingNode):
        raise fail([(node.start_mark.line + 1, None, "a campaign file is a YAML mapping (name:, provider:, contacts:, "
                                                     f"message:, ...), not {'a list' if isinstance(node, yaml.SequenceNode) else 'a single value'}")])

    loc = _Located()
    try:
        raw = _build(node, (), loc)
    except RecursionError:
        raise fail([(_too_deep(text), None, f"nested more than {_MAX_DEPTH} levels deep")]) from None

    problems: list[tuple[int | None, str | None, str]] = [(_line_for(p, loc), _field(p), m) for p, m in loc.problems]
    bad_paths = {p for p, _ in loc.problems}
    spec: CampaignSpec | None = None
    if not problems:
        try:
            spec = CampaignSpec.model_validate(raw)
        except ValidationError as exc:
            seen: set[Path_] = set()
            for err in exc.errors():
                p = _data_path(raw, tuple(err["loc"]))
                if p in seen or any(p[: len(b)] == b for b in bad_paths):
                    continue   # one message per field: a union reports once per member type
                seen.add(p)
                problems.append((_line_for(p, loc), _field(p), _pydantic_message(err, p, loc)))
    if spec is not None:
        problems += _semantic_checks(spec, loc, env, source, check_contacts)
    if problems:
        problems.sort(key=lambda x: (x[0] or 0))
        raise fail(list(dict.fromkeys(problems)))
    assert spec is not None
    return Campaign(spec, raw, source)


def _data_path(raw: Any, err_loc: tuple[Any, ...]) -> Path_:
    """The path into the document of a pydantic error location, without pydantic's own steps
    ('function-after', union member names such as 'str' or 'int')."""
    out: list[str | int] = []
    node = raw
    for step in err_loc:
        if isinstance(node, dict) and step in node:
            out.append(step)
            node = node[step]
        elif isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node):
            out.append(step)
            node = node[step]
        elif isinstance(node, dict) and isinstance(step, str) and _is_field_step(step):
            out.append(step)    # a missing field: the error is about a key that is not there
            node = None
    return tuple(out)


def _is_field_step(step: str) -> bool:
    return step not in ("function-after", "function-before", "function-wrap", "str", "int", "float", "bool",
                        "nullable", "literal", "union", "list", "dict") and not step.startswith(("function-", "literal["))


def _pydantic_message(err: Any, path: Path_, loc: _Located) -> str:
    kind = err["type"]
    value = err.get("input")
    written = loc.texts.get(path)
    if kind == "extra_forbidden":
        return "unknown key (check the spelling; see the campaign file reference in README.md)"
    if kind == "missing":
        return "required field is missing"
    if kind == "literal_error":
        return f"must be one of {err['ctx']['expected']}, got {_describe(value)}"
    if kind == "value_error":
        return str(err["ctx"]["error"])
    if value is None and kind.endswith("_type"):
        return "has no value"
    if kind == "string_type":
        if isinstance(value, (dict, list)):
            return f"must be text, not {_describe(value)}"
        shown = written if written is not None else str(value)
        return f"must be text: quote it (\"{shown}\"); unquoted, YAML reads it as {_describe(value)}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"must be a whole number, got {_describe(value)}"
    if kind in ("float_type", "float_parsing"):
        return f"must be a number, got {_describe(value)}"
    if kind == "bool_type":
        return f"must be true or false, got {_describe(value)}"
    if kind in ("datetime_type", "datetime_parsing", "datetime_from_date_parsing"):
        return "must be a date and time with a UTC offset, e.g. \"2026-12-01T09:00:00-05:00\""
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"must be a mapping (key: value lines), not {_describe(value)}"
    if kind == "list_type":
        return f"must be a list, not {_describe(value)}"
    if kind in ("greater_than_equal", "greater_than"):
        return f"must be at least {err['ctx'].get('ge', err['ctx'].get('gt'))}, got {_describe(value)}"
    if kind in ("less_than_equal", "less_than"):
        return f"must be at most {err['ctx'].get('le', err['ctx'].get('lt'))}, got {_describe(value)}"
    if kind.endswith("_type") and "union" not in kind:
        return f"must be text, a number or true/false, not {_describe(value)}"
    return str(err["msg"])


def _semantic_checks(spec: CampaignSpec, loc: _Located, env: Any, source: Path,
                     check_contacts: bool) -> list[tuple[int | None, str | None, str]]:
    from .providers import get_provider_class

    out: list[tuple[int | None, str | None, str]] = []

    def add(path: Path_, msg: str) -> None:
        out.append((_line_for(path, loc), _field(path), msg))

    def check_vars(path: Path_, value: str) -> None:
        for var in _VAR.findall(value):
            if var not in env:
                add(path, f"environment variable {var} is not set")

    if spec.provider.base_url:
        check_vars(("provider", "base_url"), spec.provider.base_url)
    for key, value in spec.provider.credentials.items():
        check_vars(("provider", "credentials", key), value)
    for key, value in spec.provider.options.items():
        if isinstance(value, str):
            check_vars(("provider", "options", key), value)

    cls = get_provider_class(spec.provider.name)
    base_url = spec.provider.base_url
    if not base_url and not cls.default_base_url:
        add(("provider", "base_url"), f"{spec.provider.name} has no public default URL: set provider.base_url to the "
                                      "API endpoint URL your account manager gave you (e.g. base_url: \"${SKYCORE_URL}\")")
    elif base_url and not any(var not in env for var in _VAR.findall(base_url)):
        if not re.match(r"https?://[^/\s]+", expand(base_url, env)):
            add(("provider", "base_url"), f"{_describe(base_url)} is not an http:// or https:// URL")
    for cred in cls.required_credentials:
        if cred not in spec.provider.credentials:
            add(("provider", "credentials"), f"{spec.provider.name} needs credential '{cred}' (e.g. {cred}: \"${{{spec.provider.name.upper()}_{cred.upper()}}}\")")
    for extra in set(spec.provider.credentials) - set(cls.required_credentials):
        add(("provider", "credentials", extra), f"unknown credential for {spec.provider.name}; expected {list(cls.required_credentials)}")
    from .channels import PROVIDER_OF, RVM, SMS

    channel = spec.channel
    if channel != SMS and PROVIDER_OF[channel] != spec.provider.name:
        add(("channel",), f"the {channel} channel is offered by {PROVIDER_OF[channel]}, not {spec.provider.name}")
        return out
    required_opts, optional_opts = cls.options_for(channel)
    known = set(required_opts) | set(optional_opts)
    for opt in spec.provider.options:
        if opt not in known:
            add(("provider", "options", opt), f"unknown option for {spec.provider.name}; known: {sorted(known)}")
    opts = {k: (expand(v, env) if isinstance(v, str) else v) for k, v in spec.provider.options.items()
            if not (isinstance(v, str) and any(var not in env for var in _VAR.findall(v)))}
    for msg in cls.validate_options(opts, channel=channel):
        # The adapters say "provider.options.caller_id must be ...": locate it on that option's line.
        m = re.match(r"provider\.options\.([\w-]+) (.*)$", msg, re.S)
        if m:
            add(("provider", "options", m.group(1)), m.group(2))
        else:
            add(("provider", "options"), msg.removeprefix("provider.options: "))
    uses_text = channel == SMS or (channel == RVM and "voice_id" in spec.provider.options)
    if uses_text and spec.message is None:
        add(("message",) if channel == SMS else ("provider", "options", "voice_id"),
            "required field is missing" if channel == SMS else "voice_id reads the campaign's message aloud: add message:")
    elif not uses_text and spec.message is not None:
        add(("message",), "not used by this campaign (email sends the Dripcel template_id; ringless voicemail with "
                          "recording_id or audio_url has no text): remove it")
    if spec.max_segments > 1 and channel == SMS and not cls.concatenates:
        add(("max_segments",), f"{spec.provider.name} sends one segment at most (no concatenation): max_segments must be 1")

    if _VAR.search(spec.contacts.path):
        add(("contacts", "path"), "${VAR} is not expanded here (only in provider.base_url, credentials and options): "
                                  "write the path out")

    try:
        template = MessageTemplate(spec.message or "")
    except TemplateError as exc:
        add(("message",), str(exc))
        return out

    if check_contacts:
        contacts = Path(spec.contacts.path)
        contacts = contacts if contacts.is_absolute() else source.parent / contacts
        try:
            header = check_header(contacts, required=required_columns(channel))
        except ContactsError as exc:
            add(("contacts", "path"), str(exc))
            return out
        missing = sorted(template.variables - set(header))
        if missing:
            add(("message",), f"template uses {', '.join(missing)}, which no column of {contacts.name} provides "
                              f"(columns: {', '.join(c for c in header if c)})")
    return out


# ---------------------------------------------------------------- contact files (shared with the loader)

REQUIRED_COLUMNS = ("phone", "opt_in")


def required_columns(channel: str) -> tuple[str, ...]:
    return ("email", "opt_in") if channel == "email" else REQUIRED_COLUMNS
_LONE_CR = re.compile(rb"(?<=\r)(?!\n)")
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def contact_lines(path: Path) -> Iterator[str]:
    """The file's lines, decoded one by one: UTF-8 (BOM stripped), else Windows-1252 for legacy exports.

    Lines end at LF, CRLF or a lone CR (old Mac exports), with their ending kept as the csv module expects.
    NUL characters become U+FFFD: they are never meant, and PostgreSQL text cannot hold them.
    Raises OSError when the file cannot be opened or read.
    """
    with open(path, "rb") as fh:
        first = True
        for raw in fh:
            if first:
                raw = raw.removeprefix(b"\xef\xbb\xbf")
                first = False
            for piece in _LONE_CR.split(raw) if b"\r" in raw else (raw,):
                if not piece:
                    continue
                try:
                    text = piece.decode("utf-8")
                except UnicodeDecodeError:
                    text = piece.decode("cp1252", errors="replace")
                yield text.replace("\x00", "\ufffd") if "\x00" in text else text


def read_header(path: Path) -> list[str] | None:
    """The contact file's column names, normalised (trimmed, lower-case); None when the first line is blank.

    Raises ``ContactsError`` naming the file when it cannot be opened or its first line cannot be read.
    """
    try:
        row = next(csv.reader(contact_lines(path), strict=True), [])
    except OSError as exc:
        raise ContactsError(f"cannot open {path}: {exc.strerror or exc}") from None
    except ValueError as exc:   # a NUL in the path
        raise ContactsError(f"cannot open {path}: {exc}") from None
    except csv.Error as exc:
        raise ContactsError(f"{path}:1: the header cannot be read: {exc}") from None
    header = [c.strip().lower() for c in row]
    return header if any(header) else None


def check_header(path: Path, *, required: tuple[str, ...] = REQUIRED_COLUMNS) -> list[str]:
    """The header of a contact file fit for loading (as ``read_header``).

    Raises ``ContactsError`` naming the file (and line 1) when it cannot be read, is empty, is UTF-16,
    lacks a required column or names a column twice.
    """
    try:
        with open(path, "rb") as fh:
            start = fh.read(1 << 16)
    except OSError as exc:
        raise ContactsError(f"cannot open {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ContactsError(f"cannot open {path}: {exc}") from None
    if not start.strip() and len(start) < 1 << 16:
        raise ContactsError(f"{path} is empty: the first line must name the columns (phone, opt_in, ...)")
    if start.startswith(_UTF16_BOMS):
        raise ContactsError(f"{path} is UTF-16 text: save it as \"CSV UTF-8\" (comma-separated)")
    header = read_header(path)
    if header is None:
        raise ContactsError(f"{path}:1: the first line is blank: it must name the columns (phone, opt_in, ...)")
    problems: list[str] = []
    missing = [col for col in required if col not in header]
    if missing:
        problems.append(f"column{'s' if len(missing) > 1 else ''} {' and '.join(repr(c) for c in missing)} "
                        f"{'are' if len(missing) > 1 else 'is'} missing (columns found: {', '.join(repr(c) for c in header if c)})")
    twice = sorted({c for c in header if c and header.count(c) > 1})
    if twice:
        problems.append(f"column(s) {', '.join(repr(c) for c in twice)} appear more than once")
    if problems:
        sep = next((s for s in (";", "\t", "|") if len(header) == 1 and s in header[0]), None)
        if sep is not None:
            problems.append(f"the columns look separated by {sep!r}: save the file comma-separated")
        raise ContactsError(f"{path}:1: " + "; ".join(problems))
    return header


def campaign_from_stored(raw: dict[str, Any], source: str) -> Campaign:
    """Rebuild a campaign from the spec stored at load time (the contacts file is not read again)."""
    return Campaign(CampaignSpec.model_validate(raw), raw, Path(source))
