"""What a user sees from `dispatcher validate` for a wrong campaign file: exit 1, `error: file:line: field: what`,
never a traceback. Every case changes one thing in the valid campaign of ``conftest.VALID``."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from .conftest import CONTACTS, VALID, problems_at, validate_cli, write_campaign

MESSAGE_LINE = 'message: "Hi {{ first_name }}, 20% off today. Reply STOP to opt out."\n'
QUIET = 'quiet_hours:\n  start: "21:00"\n  end: "08:00"\n'
SKYCORE = VALID.replace("  name: dropcowboy\n", "  name: skycore\n").replace(
    '    team_id: "${DC_TEAM_ID}"\n    secret: "${DC_SECRET}"\n', "    api_key: \"${DC_SECRET}\"\n").replace(
    '    pool_id: text\n    caller_id: "+15557778888"\n', '    from: "12345"\n')


def with_message(template: str) -> str:
    return VALID.replace(MESSAGE_LINE, f"message: {template}\n")


# (id, campaign text, contacts text, line, field, what the message says)
CASES = [
    ("unknown-top-level-key", VALID + "colour: blue\n", CONTACTS, 14, "colour", "unknown key"),
    ("unknown-nested-key", VALID.replace("  default_region: US\n", "  default_region: US\n  encoding: utf-8\n"),
     CONTACTS, 13, "contacts.encoding", "unknown key"),
    ("unknown-provider-key", VALID.replace("  name: dropcowboy\n", "  name: dropcowboy\n  region: us-east\n"),
     CONTACTS, 4, "provider.region", "unknown key"),
    ("unquoted-time-in-quiet-hours", VALID + 'quiet_hours:\n  start: 21:00\n  end: "08:00"\n', CONTACTS,
     15, "quiet_hours.start", '21:00 must be quoted ("21:00"): unquoted, YAML reads it as the number 1260'),
    ("missing-environment-variable", VALID.replace("${DC_SECRET}", "${DC_SECRET_NOT_SET_ANYWHERE}"), CONTACTS,
     6, "provider.credentials.secret", "environment variable DC_SECRET_NOT_SET_ANYWHERE is not set"),
    ("template-variable-without-column", VALID.replace("{{ first_name }}", "{{ last_name }}"), CONTACTS,
     13, "message", "template uses last_name, which no column of contacts.csv provides (columns: phone, opt_in, first_name)"),
    ("missing-required-name", VALID.replace("name: spring-sale\n", ""), CONTACTS, 1, "name", "required field is missing"),
    ("missing-required-message", VALID.replace(MESSAGE_LINE, ""), CONTACTS, 1, "message", "required field is missing"),
    ("missing-contacts-path", VALID.replace("  path: contacts.csv\n", ""), CONTACTS, 10, "contacts.path",
     "required field is missing"),
    ("text-where-number-expected", VALID + "max_segments: many\n", CONTACTS, 14, "max_segments",
     "must be a whole number, got 'many'"),
    ("number-where-boolean-expected", VALID + "test_mode: 3\n", CONTACTS, 14, "test_mode", "must be true or false, got the number 3"),
    ("list-where-mapping-expected", VALID + "quiet_hours: [21, 8]\n", CONTACTS, 14, "quiet_hours",
     "must be a mapping (key: value lines), not a list"),
    ("text-where-mapping-expected", VALID.replace('    team_id: "${DC_TEAM_ID}"\n    secret: "${DC_SECRET}"\n', "").replace(
        "  credentials:\n", "  credentials: team-1\n"), CONTACTS, 4, "provider.credentials", "must be a mapping"),
    ("number-where-text-expected", VALID.replace('secret: "${DC_SECRET}"', "secret: 12345"), CONTACTS,
     6, "provider.credentials.secret", 'must be text: quote it ("12345")'),
    ("number-out-of-range", VALID + "max_segments: 0\n", CONTACTS, 14, "max_segments", "must be at least 1, got the number 0"),
    ("duplicate-key", VALID + "name: autumn-sale\n", CONTACTS, 14, "name", "duplicate key (first at line 1)"),
    ("duplicate-nested-key", VALID.replace("    pool_id: text\n", "    pool_id: text\n    pool_id: voice\n"),
     CONTACTS, 9, "provider.options.pool_id", "duplicate key (first at line 8)"),
    ("yaml-1.1-NO-is-false", VALID.replace("default_region: US", "default_region: NO"), CONTACTS, 12,
     "contacts.default_region", 'NO must be quoted ("NO"): unquoted, YAML reads it as false'),
    ("yaml-1.1-yes-is-true", with_message("yes"), CONTACTS, 13, "message", 'yes must be quoted ("yes"): unquoted, YAML reads it as true'),
    ("yaml-1.1-leading-zero-is-octal", VALID.replace("pool_id: text", "pool_id: 0123"), CONTACTS, 8,
     "provider.options.pool_id", '0123 must be quoted ("0123"): unquoted, YAML reads it as the number 83'),
    ("schedule-without-offset", VALID + "schedule: 2026-12-01T09:00:00\n", CONTACTS, 14, "schedule",
     'the schedule needs a UTC offset, e.g. "2026-12-01T09:00:00-05:00"'),
    ("schedule-not-a-time", VALID + "schedule: next tuesday\n", CONTACTS, 14, "schedule", "is not an ISO 8601 time"),
    ("unknown-time-zone", VALID + QUIET + "  default_timezone: Mars/Olympus_Mons\n", CONTACTS, 17,
     "quiet_hours.default_timezone", "unknown time zone 'Mars/Olympus_Mons'"),
    ("time-not-hh-mm", VALID + 'quiet_hours:\n  start: "9pm"\n  end: "08:00"\n', CONTACTS, 15, "quiet_hours.start",
     "'9pm' is not a time"),
    ("unknown-provider", VALID.replace("  name: dropcowboy", "  name: twilio"), CONTACTS, 3, "provider.name",
     "must be one of 'dropcowboy', 'dripcel', 'skycore' or 'fonedynamics', got 'twilio'"),
    ("dropcowboy-without-pool-id", VALID.replace("    pool_id: text\n", ""), CONTACTS, 7, "provider.options.pool_id",
     "is required for dropcowboy"),
    ("dropcowboy-without-caller-id", VALID.replace('    caller_id: "+15557778888"\n', ""), CONTACTS, 7,
     "provider.options.caller_id", "is required for dropcowboy"),
    ("dropcowboy-bad-caller-id", VALID.replace('caller_id: "+15557778888"', 'caller_id: "555-1234"'), CONTACTS, 9,
     "provider.options.caller_id", "must be an E.164 number like +15557778888, got '555-1234'"),
    ("unknown-provider-option", VALID.replace("    pool_id: text\n", "    pool_id: text\n    pool: text\n"), CONTACTS, 9,
     "provider.options.pool", "unknown option for dropcowboy"),
    ("missing-credential", VALID.replace('    secret: "${DC_SECRET}"\n', ""), CONTACTS, 4, "provider.credentials",
     "dropcowboy needs credential 'secret'"),
    ("skycore-without-base-url", SKYCORE, CONTACTS, 2, "provider.base_url", "skycore has no public default URL"),
    ("base-url-not-http", VALID.replace("  name: dropcowboy\n", "  name: dropcowboy\n  base_url: ftp://example.com\n"),
     CONTACTS, 4, "provider.base_url", "is not an http:// or https:// URL"),
    ("dropcowboy-one-segment-only", VALID + "max_segments: 3\n", CONTACTS, 14, "max_segments",
     "dropcowboy sends one segment at most"),
    ("contacts-file-missing", VALID.replace("path: contacts.csv", "path: people.csv"), CONTACTS, 11, "contacts.path",
     "people.csv: No such file or directory"),
    ("contacts-file-empty", VALID, "", 11, "contacts.path", "contacts.csv is empty: the first line must name the columns"),
    ("contacts-without-phone-column", VALID, "mobile,opt_in,first_name\n+12025550101,yes,Ada\n", 11, "contacts.path",
     "contacts.csv:1: column 'phone' is missing (columns found: 'mobile', 'opt_in', 'first_name')"),
    ("contacts-without-opt-in-column", VALID, "phone,first_name\n+12025550101,Ada\n", 11, "contacts.path",
     "contacts.csv:1: column 'opt_in' is missing"),
    ("contacts-separated-by-semicolons", VALID, "phone;opt_in;first_name\n+12025550101;yes;Ada\n", 11, "contacts.path",
     "the columns look separated by ';'"),
    ("contacts-utf16", VALID, "phone,opt_in,first_name\n".encode("utf-16"), 11, "contacts.path", "is UTF-16 text"),
    ("unknown-region", VALID.replace("default_region: US", "default_region: XX"), CONTACTS, 12,
     "contacts.default_region", "unknown region 'XX'"),
    ("empty-message", with_message('"  "'), CONTACTS, 13, "message", "the message is empty"),
    ("alias", VALID + "extra: &x 1\nagain: *x\n", CONTACTS, 15, "again", "aliases (*name) are not supported"),
    # Template abuse is refused on the message line, before any row is read.
    ("template-dunder-attribute", with_message("\"{{ ''.__class__ }}\""), CONTACTS, 13, "message",
     "attribute access ('.__class__') is not allowed"),
    ("template-method-call", with_message('"{{ first_name.upper() }}"'), CONTACTS, 13, "message",
     "function and method calls are not allowed"),
    ("template-loop", with_message('"{% for i in range(100000000) %}x{% endfor %}"'), CONTACTS, 13, "message",
     "'for' blocks are not allowed"),
    ("template-huge-repeat", with_message("\"{{ 'x' * 1000000000 }}\""), CONTACTS, 13, "message",
     "longer than 2000 characters"),
    ("template-power", with_message('"{{ 9 ** 9 ** 9 }}"'), CONTACTS, 13, "message", "the ** operator is not allowed"),
    ("template-attr-filter", with_message("\"{{ first_name|attr('__class__') }}\""), CONTACTS, 13, "message",
     "filter 'attr' is not allowed"),
    ("template-syntax", with_message('"Hi {{ first_name "'), CONTACTS, 13, "message", "template syntax error"),
]


@pytest.fixture(scope="module")
def validated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess[str]]:
    """`dispatcher validate` run on every case at once (a process each, a few at a time: start-up dominates)."""
    paths = {c[0]: write_campaign(tmp_path_factory.mktemp(c[0]), c[1], c[2]) for c in CASES}
    with ThreadPoolExecutor(4) as pool:
        return dict(zip(paths, pool.map(validate_cli, paths.values())))


@pytest.mark.parametrize(("case", "line", "field", "what"), [pytest.param(c[0], *c[3:], id=c[0]) for c in CASES])
def test_validate_reports_the_file_line_and_field_of_a_bad_campaign(validated: dict[str, subprocess.CompletedProcess[str]],
                                                                     case: str, line: int, field: str, what: str) -> None:
    r = validated[case]
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    assert r.stderr.startswith("error: campaign.yaml:"), r.stderr
    messages = problems_at(r.stderr, line, field)
    assert any(what in m for m in messages), f"expected {line}: {field}: ...{what}... in\n{r.stderr}"


# Problems with the file as a whole: (id, bytes of the file, line, what)
SYNTAX_CASES = [
    ("empty-file", b"", 1, "the file is empty"),
    ("only-comments", b"# a campaign, one day\n\n", 1, "the file has no content (only comments)"),
    ("a-list-not-a-mapping", b"- name: spring-sale\n- message: hi\n", 1, "a campaign file is a YAML mapping"),
    ("a-single-value", b"spring-sale\n", 1, "not a single value"),
    ("tab-indentation", VALID.replace("  path: contacts.csv", "\tpath: contacts.csv").encode(), 11,
     "YAML indentation must use spaces, not tabs"),
    ("unclosed-quote", VALID.replace(MESSAGE_LINE, 'message: "Hi {{ first_name }}\n').encode(), 14,
     "while scanning a quoted scalar that starts on line 13"),
    ("bad-indentation", VALID.replace("  default_region: US", "   default_region: US").encode(), 12, "not valid YAML"),
    ("unclosed-flow-mapping", (VALID + "quiet_hours: {start: \"21:00\"\n").encode(), 15, "not valid YAML"),
    ("not-utf8", VALID.replace("Hi", "H\xe9").encode("latin-1"), 13, "not UTF-8 text (byte 0xe9)"),
    ("control-character", (VALID + 'extra: "\x07"\n').encode(), 14, "the control character U+0007 is not allowed"),
    ("deep-nesting", (VALID + "x: " + "[" * 3000 + "]" * 3000 + "\n").encode(), 14, "nested more than 64 levels deep"),
]


@pytest.fixture(scope="module")
def validated_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess[str]]:
    paths = {}
    for case, data, _, _ in SYNTAX_CASES:
        folder = tmp_path_factory.mktemp(case)
        (folder / "contacts.csv").write_text(CONTACTS)
        (folder / "campaign.yaml").write_bytes(data)
        paths[case] = folder / "campaign.yaml"
    with ThreadPoolExecutor(4) as pool:
        return dict(zip(paths, pool.map(validate_cli, paths.values())))


@pytest.mark.parametrize(("case", "line", "what"), [pytest.param(c[0], *c[2:], id=c[0]) for c in SYNTAX_CASES])
def test_validate_reports_the_line_of_an_unreadable_campaign_file(validated_files: dict[str, subprocess.CompletedProcess[str]],
                                                                  case: str, line: int, what: str) -> None:
    r = validated_files[case]
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    assert any(what in m for m in problems_at(r.stderr, line, None)), f"expected {line}: ...{what}... in\n{r.stderr}"


def test_validate_reports_every_problem_of_a_file_in_line_order(tmp_path: Path) -> None:
    text = VALID.replace("  name: dropcowboy", "  name: dropcowboy\n  colour: red").replace(
        "${DC_SECRET}", "${DC_SECRET_NOT_SET_ANYWHERE}") + "max_segments: many\n"
    r = validate_cli(write_campaign(tmp_path, text))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    lines = [ln.removeprefix("error: ") for ln in r.stderr.splitlines()]
    assert [ln.split(":")[1] for ln in lines] == ["4", "15"], r.stderr   # unknown key, wrong type: the structure first
    assert problems_at(r.stderr, 4, "provider.colour") and problems_at(r.stderr, 15, "max_segments")


def test_validate_accepts_the_valid_campaign_and_yaml_booleans_where_booleans_belong(tmp_path: Path) -> None:
    r = validate_cli(write_campaign(tmp_path, VALID + "test_mode: yes\n" + QUIET + "  blackout_dates: [2026-12-25]\n"
                                    "schedule: 2026-12-01T09:00:00-05:00\n"))
    assert r.returncode == 0, r.stderr
    assert "ok campaign.yaml: campaign 'spring-sale'" in r.stdout


def test_validate_of_a_missing_file_names_it(tmp_path: Path) -> None:
    r = validate_cli(tmp_path / "campaign.yaml")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip() == "error: campaign.yaml: file not found"
