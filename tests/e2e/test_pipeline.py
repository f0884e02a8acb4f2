"""The walking skeleton, as a user runs it: validate, run --wait with a real worker, report."""

from __future__ import annotations

import json
from collections import Counter

from .conftest import SECRET_ENV, write_campaign

CONTACTS = """phone,opt_in,first_name,timezone
+12025550101,yes,Ada,
(202) 555-0102,true,Grace,
2025550101,yes,Ada twice,
+12025550105,no,Barbara,
+12025550107,maybe,Dennis,
555-0199,yes,Shorty,
+442071838750,1,Tim,
+12025550110,yes,Someone with a name so very long that the whole text no longer fits in one single SMS segment at all - not even close - really,
"""


def test_campaign_sends_every_eligible_recipient_exactly_once_and_reports_the_rest(env, sandbox, database_url):
    path = write_campaign(env.tmp, "e2e-skeleton", CONTACTS)
    assert env.cli("validate", str(path)).returncode == 0
    env.start_worker()
    r = env.cli("run", str(path), "--wait", "--timeout", "60", check=True)
    assert "e2e-skeleton" in r.stdout

    got = sandbox.requests("dropcowboy")
    sent_to = Counter(req["json"]["phone_number"] for req in got if req["status"] == 200)
    assert sent_to == Counter({"+12025550101": 1, "+12025550102": 1, "+442071838750": 1})
    first = next(req["json"] for req in got if req["json"]["phone_number"] == "+12025550101")
    assert first["sms_body"] == "Hi Ada, 20% off today. Reply STOP to opt out."
    assert first["opt_in"] is True and first["pool_id"] == "text" and first["caller_id"] == "+15557778888"

    report = json.loads(env.cli("report", "e2e-skeleton", "--format", "json", check=True).stdout)
    by_line = {m["line"]: m for m in report["messages"]}
    assert report["counts"]["sent"] == 3
    assert by_line[4]["status"] == "rejected" and by_line[4]["reason"] == "duplicate of line 2"
    assert by_line[5]["status"] == "skipped" and "consent" in by_line[5]["reason"]
    assert by_line[6]["status"] == "rejected" and "opt_in" in by_line[6]["reason"]
    assert by_line[7]["status"] == "rejected" and "invalid number" in by_line[7]["reason"]
    assert by_line[9]["status"] == "skipped" and "too long" in by_line[9]["reason"]
    for line in (2, 3, 8):
        m = by_line[line]
        assert m["status"] == "sent" and m["provider_message_id"]
        assert len(m["attempts"]) == 1 and m["attempts"][0]["http_status"] == 200
    assert first["foreign_id"] == str(next(req["json"]["foreign_id"] for req in got
                                           if req["json"]["phone_number"] == "+12025550101"))
    assert report["campaign"]["state"] == "completed"

    # secrets never show up in anything the user or the logs see
    seen = r.stdout + r.stderr + json.dumps(report) + env.output()
    for value in SECRET_ENV.values():
        assert value not in seen


def test_running_the_same_campaign_again_sends_nothing_twice(env, sandbox):
    path = write_campaign(env.tmp, "e2e-rerun", "phone,opt_in,first_name\n+12025550101,yes,Ada\n+12025550102,yes,Bob\n")
    env.start_worker()
    env.cli("run", str(path), "--wait", "--timeout", "60", check=True)
    env.cli("run", str(path), "--wait", "--timeout", "30", check=True)
    assert len(sandbox.requests("dropcowboy")) == 2
