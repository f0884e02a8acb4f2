"""Fixtures for bad-input tests: campaign files written to tmp, the real CLI, real SQLite files."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dispatcher.campaign import Campaign, load_campaign
from dispatcher.store import Store, init_db, make_engine
from tests.conftest import ROOT

BIN = Path(sys.executable).parent
ENV = {"DC_TEAM_ID": "team-1", "DC_SECRET": "secret-1"}

# A valid campaign; tests change one thing in it. Line numbers below are part of the tests.
VALID = """\
name: spring-sale
provider:
  name: dropcowboy
  credentials:
    team_id: "${DC_TEAM_ID}"
    secret: "${DC_SECRET}"
  options:
    pool_id: text
    caller_id: "+15557778888"
contacts:
  path: contacts.csv
  default_region: US
message: "Hi {{ first_name }}, 20% off today. Reply STOP to opt out."
"""
CONTACTS = "phone,opt_in,first_name\n+12025550101,yes,Ada\n"

_names = itertools.count(1)


def unique_name(prefix: str = "c") -> str:
    return f"{prefix}-{next(_names)}"


def write_campaign(tmp: Path, text: str = VALID, contacts: str | bytes | None = CONTACTS,
                   name: str = "campaign.yaml") -> Path:
    """``text`` as the campaign file and ``contacts`` (unless None) as contacts.csv, both in ``tmp``."""
    if contacts is not None:
        data = contacts if isinstance(contacts, bytes) else contacts.encode()
        (tmp / "contacts.csv").write_bytes(data)
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    return path


def validate_cli(path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`dispatcher validate` as a user runs it, from the campaign file's folder."""
    return subprocess.run([str(BIN / "dispatcher"), "validate", path.name], cwd=path.parent, capture_output=True,
                          text=True, timeout=60, env={**os.environ, **ENV, **(env or {}), "PYTHONPATH": str(ROOT)})


def problems_at(stderr: str, line: int, field: str | None) -> list[str]:
    """The messages the CLI printed for ``campaign.yaml:<line>: <field>``."""
    where = f"campaign.yaml:{line}: " + (f"{field}: " if field else "")
    return [ln.removeprefix("error: ")[len(where):] for ln in stderr.splitlines()
            if ln.removeprefix("error: ").startswith(where)]


@pytest.fixture()
def store(tmp_path: Path) -> Store:
    s = Store(make_engine(f"sqlite:///{tmp_path / 'dispatcher.db'}"))
    init_db(s.engine)
    return s


def campaign_for(tmp: Path, contacts: str | bytes, *, name: str | None = None, extra: str = "",
                 message: str | None = None, region: str = "US") -> Campaign:
    """A validated campaign over ``contacts`` (written to tmp/contacts.csv)."""
    text = VALID.replace("name: spring-sale", f"name: {name or unique_name()}").replace("default_region: US", f"default_region: {region}")
    if message is not None:
        text = text.replace('"Hi {{ first_name }}, 20% off today. Reply STOP to opt out."', message)
    path = write_campaign(tmp, text + extra, contacts)
    return load_campaign(path, environ=ENV)
