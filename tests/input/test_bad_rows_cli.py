"""Bad rows and bad numbers as a user meets them: `dispatcher plan` and `dispatcher run` then `dispatcher report`,
real processes over a real SQLite file and the test session's Redis. Every row of the file is accounted for."""

from __future__ import annotations

import base64
import csv
import json
import os
import subprocess
from pathlib import Path

import pytest

from dispatcher.campaign import load_campaign
from dispatcher.loader import load
from dispatcher.queue import QUEUE, TaskQueue
from dispatcher.settings import Settings
from dispatcher.store import Store

from .conftest import BIN, ENV, VALID, campaign_for, write_campaign
from .test_contacts_loading import contacts_with_repeats, failing_on_call

CONTACTS = (
    "phone,opt_in,first_name,timezone\n"            # 1
    "+12025550101,yes,Ada,\n"                        # 2  sent
    "\n"                                             # 3  blank: not a row
    ",yes,Nobody,\n"                                 # 4  empty number
    "1-800-FLOWERS,yes,Vanity,\n"                    # 5  letters
    "555-0199,yes,Shorty,\n"                         # 6  too short
    "+19005550123,yes,Premium,\n"                    # 7  premium rate
    "12345,yes,Shortcode,\n"                         # 8  short code
    "020 7183 8750,yes,Londoner,\n"                  # 9  a UK number written for the UK, read in the US
    "+442071838750,yes,Londoner,\n"                  # 10 the same written for the world: fine
    "(202) 555-0101,yes,Ada again,\n"                # 11 duplicate of line 2
    "+12025550102,maybe,Maybe,\n"                    # 12 bad opt_in
    "+12025550103,yes,Tz,Mars/Olympus\n"             # 13 bad time zone
    "+12025550104,yes,Extra,,surplus\n"              # 14 too many values
    "+12025550105,yes\n"                             # 15 too few values
    "+12025550106,yes,\"Quote\" after,\n"            # 16 text after a closing quote
    "+12025550107,no,Nope,\n"                        # 17 no consent: stored, skipped
)
EXPECTED = {
    2: ("queued", None),
    4: ("rejected", "invalid number: empty phone number"),
    5: ("rejected", "invalid number: contains letters"),
    6: ("rejected", "invalid number: too short"),
    7: ("rejected", "invalid number: premium-rate number"),
    8: ("rejected", "invalid number: short code"),
    9: ("rejected", "invalid number: too long (read as a US number: write numbers of other countries with + and their "
                    "country code)"),
    10: ("queued", None),
    11: ("rejected", "duplicate of line 2"),
    12: ("rejected", "opt_in must be one of true/false/yes/no/1/0, got 'maybe'"),
    13: ("rejected", "timezone: unknown time zone 'Mars/Olympus'"),
    14: ("rejected", "has 5 values but the header names 4 columns"),
    15: ("rejected", "has 2 values but the header names 4 columns"),
    16: ("rejected", 'row cannot be read: text follows the closing quote of a value (write "" for a quote inside a quoted value)'),
    17: ("skipped", "no recorded consent"),
}


def cli(tmp: Path, redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([str(BIN / "dispatcher"), *args], cwd=tmp, capture_output=True, text=True, timeout=120,
                       env={**os.environ, **ENV, "REDIS_URL": redis_url, "DATABASE_URL": f"sqlite:///{tmp / 'cli.db'}"})
    assert "Traceback" not in r.stdout + r.stderr
    return r


def test_plan_and_report_give_every_bad_row_its_reason(tmp_path: Path, redis_url: str, redis_client) -> None:  # type: ignore[no-untyped-def]
    write_campaign(tmp_path, VALID, CONTACTS)
    assert cli(tmp_path, redis_url, "validate", "campaign.yaml").returncode == 0

    r = cli(tmp_path, redis_url, "plan", "campaign.yaml", "--output", "plan.csv")
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "plan.csv", newline="") as fh:
        plan = {int(row["line"]): row for row in csv.DictReader(fh)}
    assert sorted(plan) == sorted(EXPECTED)
    for line, (status, reason) in EXPECTED.items():
        if status == "rejected":
            assert (plan[line]["decision"], plan[line]["reason"]) == ("rejected", reason), line

    r = cli(tmp_path, redis_url, "run", "campaign.yaml")
    assert r.returncode == 0, r.stderr
    assert "campaign 'spring-sale': 15 rows -> 3 messages, 12 rejected" in r.stdout
    report = json.loads(cli(tmp_path, redis_url, "report", "spring-sale", "--format", "json").stdout)
    got = {m["line"]: (m["status"], m["reason"]) for m in report["messages"]}
    assert got == EXPECTED
    assert report["counts"]["rejected"] == 12


def test_a_file_that_cannot_be_loaded_stops_run_with_a_message_and_stores_nothing(tmp_path: Path, redis_url: str,
                                                                                   redis_client) -> None:  # type: ignore[no-untyped-def]
    write_campaign(tmp_path, VALID, "mobile,opt_in,first_name\n+12025550101,yes,Ada\n")
    r = cli(tmp_path, redis_url, "run", "campaign.yaml")
    assert r.returncode == 1
    assert "error: campaign.yaml:11: contacts.path: contacts.csv:1: column 'phone' is missing" in r.stderr
    assert "spring-sale" not in cli(tmp_path, redis_url, "campaigns").stdout


def queued_batch_ids(redis_client) -> list[int]:  # type: ignore[no-untyped-def]
    """Batch ids of the send_batch tasks waiting in Redis, read from the Celery messages."""
    out = []
    for raw in redis_client.lrange(QUEUE, 0, -1):
        message = json.loads(raw)
        args, _, _ = json.loads(base64.b64decode(message["body"]))
        out.append(int(args[0]))
    return out


def test_a_resumed_load_enqueues_the_batches_stored_before_it_stopped(tmp_path: Path, store: Store, redis_url: str,
                                                                      redis_client, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    c = campaign_for(tmp_path, contacts_with_repeats(60))
    queue = TaskQueue(Settings(redis_url=redis_url))
    failing_on_call(monkeypatch, 3)
    with pytest.raises(OSError):
        load(c, store, queue, chunk_rows=10, batch_size=4)
    assert store.campaign(c.name).state == "stopped"
    redis_client.delete(QUEUE)           # say the broker lost what was enqueued before the failure
    monkeypatch.undo()
    r = load(c, store, queue, chunk_rows=10, batch_size=4)
    assert r.resumed and store.campaign(c.name).state == "running"
    open_batches = set(store.open_batches(r.campaign_id))
    assert open_batches and open_batches <= set(queued_batch_ids(redis_client))
    assert {m["line"] for m in store.messages(r.campaign_id)} | {x["line"] for x in store.rejected(r.campaign_id)} == \
        set(range(2, 62))
    assert load_campaign(c.source, environ=ENV).raw == store.campaign(c.name).spec
