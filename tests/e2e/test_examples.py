"""Every example campaign in examples/ runs end to end against the sandbox with a real worker."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import pytest

from tests.conftest import ROOT

EXPECTED = {   # example -> (provider, recipients the provider must receive, field holding the number)
    "dropcowboy": ("dropcowboy", {"+12025550121", "+12125550122"}, "phone_number"),
    "dripcel": ("dripcel", {"0821234567", "0831234568"}, "cell"),
    "skycore": ("skycore", {"17743199144", "16175550142"}, "to"),
    "fonedynamics": ("fonedynamics", {"+61412345678", "+61488023555"}, "To"),
}


@pytest.mark.parametrize("example", sorted(EXPECTED))
def test_example_campaign_runs_end_to_end(env, sandbox, example):
    provider, recipients, field = EXPECTED[example]
    folder = env.tmp / example
    shutil.copytree(ROOT / "examples" / example, folder)
    assert env.cli("validate", str(folder / "campaign.yaml")).returncode == 0
    env.start_worker()
    env.cli("run", str(folder / "campaign.yaml"), "--wait", "--timeout", "60", check=True)
    got = Counter(r["json"][field] for r in sandbox.requests(provider) if r["status"] == 200)
    assert set(got) == recipients and set(got.values()) == {1}
    report = json.loads(env.cli("report", f"example-{example}", "--format", "json", check=True).stdout)
    assert report["counts"]["sent"] == len(recipients)
    assert all(m["provider_message_id"] for m in report["messages"] if m["status"] == "sent")
