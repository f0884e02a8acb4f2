"""Beyond SMS: Drop Cowboy ringless voicemail and Dripcel bulk email, end to end against the sandbox."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from zoneinfo import ZoneInfo

from tests.conftest import ROOT

DAYTIME_ZONES = ["Asia/Tokyo", "Europe/London", "America/New_York", "America/Los_Angeles", "Australia/Sydney",
                 "Asia/Kolkata", "Pacific/Honolulu"]


def _zone_in_daytime() -> str:
    """A zone where it is between 09:00 and 20:00 right now, so the example's calling hours allow a call."""
    return next(z for z in DAYTIME_ZONES if 9 <= datetime.now(ZoneInfo(z)).hour < 20)


def _copy_example(env, name: str):  # type: ignore[no-untyped-def]
    folder = env.tmp / name
    shutil.copytree(ROOT / "examples" / name, folder)
    return folder


def test_ringless_voicemail_campaign_reads_the_message_to_each_consenting_contact(env, sandbox):
    folder = _copy_example(env, "rvm")
    contacts = folder / "contacts.csv"
    contacts.write_text(contacts.read_text().replace("Asia/Tokyo", _zone_in_daytime()))
    assert env.cli("validate", str(folder / "campaign.yaml")).returncode == 0
    check = env.cli("providers", "check", str(folder / "campaign.yaml"))
    assert check.returncode == 0, check.stderr       # brand and account exist
    env.start_worker()
    env.cli("run", str(folder / "campaign.yaml"), "--wait", "--timeout", "60", check=True)
    drops = [r["json"] for r in sandbox.requests("dropcowboy") if r["path"].endswith("/rvm") and r["status"] == 200]
    assert sorted(d["phone_number"] for d in drops) == ["+12025550131", "+12025550132"]
    ada = next(d for d in drops if d["phone_number"] == "+12025550131")
    assert ada["tts_body"] == "Hi Ada, this is Acme Dental reminding you of your check-up on Monday."
    assert ada["voice_id"] == "mimic-ava" and ada["brand_id"] == "sandbox-brand" and ada["postal_code"] == "20001"
    assert "recording_id" not in ada and ada["foreign_id"].isdigit()
    report = json.loads(env.cli("report", "example-rvm", "--format", "json", check=True).stdout)
    assert report["campaign"]["channel"] == "rvm" and report["counts"]["sent"] == 2
    assert report["counts"]["skipped"] == 1


def test_bulk_email_goes_in_requests_of_many_destinations_to_valid_consenting_addresses(env, sandbox):
    folder = _copy_example(env, "email")
    assert env.cli("validate", str(folder / "campaign.yaml")).returncode == 0
    env.start_worker()
    env.cli("run", str(folder / "campaign.yaml"), "--wait", "--timeout", "60", check=True)
    sends = [r["json"] for r in sandbox.requests("dripcel") if r["path"] == "/send/email/bulk" and r["status"] == 200]
    assert sorted(len(s["destinations"]) for s in sends) == [1, 2]           # destinations_per_request: 2
    assert sorted(a for s in sends for a in s["destinations"]) == ["ada@example.com", "alan@example.net",
                                                                    "grace@example.org"]
    assert all(s["from"] == "news@acme.example" and s["template_id"] == "winter-newsletter" for s in sends)
    assert all("to_start_at" not in s for s in sends)                          # the schedule has passed
    report = json.loads(env.cli("report", "example-email", "--format", "json", check=True).stdout)
    by_line = {m["line"]: m for m in report["messages"]}
    assert by_line[5]["status"] == "rejected" and by_line[5]["reason"] == "duplicate of line 4"
    assert by_line[6]["status"] == "rejected" and "invalid email address" in by_line[6]["reason"]
    assert by_line[7]["status"] == "skipped" and by_line[7]["reason"] == "no recorded consent"
    assert report["counts"]["sent"] == 3


def test_channel_mistakes_are_located_errors(env):
    folder = _copy_example(env, "email")
    path = folder / "campaign.yaml"
    path.write_text(path.read_text().replace("name: dripcel", "name: skycore"))
    r = env.cli("validate", str(path))
    assert r.returncode == 1 and "channel: the email channel is offered by dripcel, not skycore" in r.stderr
    folder = _copy_example(env, "rvm")
    path = folder / "campaign.yaml"
    path.write_text(path.read_text().replace("voice_id: mimic-ava, ", ""))
    r = env.cli("validate", str(path))
    assert r.returncode == 1 and "one audio source" in r.stderr and "Traceback" not in r.stderr
