"""Property tests of the campaign file reader: whatever a file holds, the answer is a Campaign or a
CampaignFileError whose every problem names the file and a line in it; never another exception."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dispatcher.campaign import Campaign, campaign_from_stored, load_campaign
from dispatcher.errors import CampaignFileError

from .conftest import CONTACTS, ENV, VALID

PROPERTY = settings(max_examples=int(os.environ.get("INPUT_EXAMPLES", "150")), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

KEYS = ["name", "provider", "contacts", "message", "quiet_hours", "schedule", "max_segments", "max_attempts", "test_mode",
        "cost_per_segment", "channel", "base_url", "credentials", "options", "rate_limit", "burst", "path", "default_region",
        "start", "end", "days", "blackout_dates", "default_timezone", "pool_id", "caller_id", "team_id", "secret", "x"]
# Plain scalars as a person might type them, YAML 1.1 traps first.
TOKENS = ["21:00", "08:00", "NO", "yes", "off", "on", "0123", "0x1F", "0b101", "1_000", "1e3", ".nan", "-.inf", "~", "null",
          "2026-12-01", "2026-12-01T09:00:00", "2026-12-01 09:00:00-05:00", "2026-13-45", "'quoted'", '"q"', "[a, b]",
          "{a: 1}", "&x 1", "*x", "!!binary aGk=", "!!python/object:os.system", "!!str 1", "!!int x", "<<", "?",
          "${DC_SECRET}", "${NOT_SET}", "{{ first_name }}", "{{ ''.__class__ }}", "{% for i in x %}", "|", ">", "-", ":",
          "#", "\t", "\x00", "\x07", "\ufeff", "\u2028", "9" * 5000, "+15557778888", "dropcowboy", "skycore", "US", "contacts.csv"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20),
                    st.sampled_from(TOKENS))
documents = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), inner, max_size=5)),
    max_leaves=25)


def mutate(text: str, ops: list[tuple[int, int, int, str]]) -> str:
    lines = text.splitlines(keepends=True)
    for op, i, j, piece in ops:
        if not lines:
            lines = [piece]
            continue
        i, j = i % len(lines), j % len(lines)
        if op == 0:
            del lines[i]
        elif op == 1:
            lines.insert(j, lines[i])
        elif op == 2:
            lines[i], lines[j] = lines[j], lines[i]
        elif op == 3:   # replace the value of a line
            key, sep, _ = lines[i].partition(":")
            lines[i] = f"{key}: {piece}\n" if sep else f"{piece}\n"
        elif op == 4:   # re-indent
            lines[i] = " " * (j % 7) + lines[i].lstrip(" ")
        elif op == 5:   # insert text inside a line
            k = j % (len(lines[i]) + 1)
            lines[i] = lines[i][:k] + piece + lines[i][k:]
        elif op == 6:   # cut the file
            lines = lines[:i]
        else:           # a new line
            lines.insert(i, f"{piece}\n")
    return "".join(lines)


mutations = st.lists(st.tuples(st.integers(0, 7), st.integers(0, 99), st.integers(0, 99),
                               st.one_of(st.sampled_from(TOKENS), st.text(max_size=12))), min_size=1, max_size=4)


def check(path: Path, data: bytes) -> Campaign | CampaignFileError:
    """The property itself, for the file ``path`` holding ``data``."""
    path.write_bytes(data)
    try:
        campaign = load_campaign(path, environ=ENV)
    except CampaignFileError as exc:
        assert exc.problems
        last_line = len(re.findall(rb"\r\n|[\r\n]|\xc2\x85|\xe2\x80[\xa8\xa9]", data)) + 1   # YAML's line breaks
        for loc, msg in exc.problems:
            assert loc.file == str(path)
            assert isinstance(loc.line, int) and 1 <= loc.line <= last_line, (loc.line, msg)
            assert msg and "Traceback" not in msg
        assert str(exc).startswith(str(path) + ":")
        return exc
    # A campaign that passes is stored as JSON and rebuilt from it by the workers.
    stored = json.loads(json.dumps(campaign.raw))
    assert campaign_from_stored(stored, str(path)).spec == campaign.spec
    return campaign


@PROPERTY
@given(mutations)
def test_a_mutated_campaign_file_is_either_valid_or_every_problem_is_located(tmp_path: Path, ops) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "contacts.csv").write_text(CONTACTS)
    check(tmp_path / "campaign.yaml", mutate(VALID, ops).encode("utf-8", errors="surrogatepass"))


@PROPERTY
@given(documents, st.booleans())
def test_any_yaml_document_is_either_a_campaign_or_located_problems(tmp_path: Path, doc, flow: bool) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "contacts.csv").write_text(CONTACTS)
    text = yaml.safe_dump(doc, default_flow_style=flow, allow_unicode=True)
    check(tmp_path / "campaign.yaml", text.encode("utf-8", errors="surrogatepass"))


@PROPERTY
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300).map(lambda t: t.encode("utf-8", errors="surrogatepass"))))
def test_arbitrary_bytes_never_raise_anything_but_a_located_campaign_file_error(tmp_path: Path, data: bytes) -> None:
    result = check(tmp_path / "campaign.yaml", data)
    assert isinstance(result, CampaignFileError)


def test_the_valid_campaign_passes_the_property_check(tmp_path: Path) -> None:
    (tmp_path / "contacts.csv").write_text(CONTACTS)
    assert isinstance(check(tmp_path / "campaign.yaml", VALID.encode()), Campaign)
