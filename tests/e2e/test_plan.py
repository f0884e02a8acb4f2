"""`dispatcher plan`: the dry run shows every decision with samples, segments, cost and duration; sends nothing."""

from __future__ import annotations

import csv

from .conftest import write_campaign


def test_plan_shows_decisions_deferral_times_segments_cost_and_duration_without_sending(env, sandbox):
    contacts = ("phone,opt_in,first_name,timezone\n"
                "+12025550401,yes,Ada,Asia/Tokyo\n"
                "+12025550402,yes,Bob,America/New_York\n"
                "+12025550403,no,Cy,Asia/Tokyo\n"
                "+12025550401,yes,Ada again,Asia/Tokyo\n")
    # Quiet hours cover all but the last minute of the day, so (but for that minute) recipients are deferred.
    path = write_campaign(env.tmp, "e2e-plan", contacts,
                          extra='quiet_hours: {start: "00:00", end: "23:59", default_timezone: America/New_York}\n'
                                "cost_per_segment: 0.01\n", rate_limit="1/s")
    r = env.cli("plan", str(path), "--output", str(env.tmp / "plan.csv"), check=True)
    out = r.stdout
    assert "skipped" in out and "no recorded consent" in out
    assert "rejected" in out and "duplicate of line 2" in out
    assert "UTC" in out and "local" in out                       # deferrals say when, in both clocks
    assert "estimated cost: 0.02" in out and "at 1/s" in out
    rows = {int(row["line"]): row for row in csv.DictReader(open(env.tmp / "plan.csv", newline=""))}
    assert rows[4]["decision"] == "skip" and rows[5]["decision"] == "rejected"
    deferred = [row for row in rows.values() if row["decision"] == "defer"]
    assert deferred and all(row["not_before_utc"] and row["not_before_local"] for row in deferred)
    assert sandbox.requests() == []                              # nothing left the machine
    assert "no campaign" in env.cli("report", "e2e-plan").stderr  # and nothing was stored
