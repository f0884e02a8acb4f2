"""Flower shows the campaign's tasks, named for what they do, with progress labels and never a phone number."""

from __future__ import annotations

import os
import subprocess

import httpx

from tests.conftest import ROOT, free_port

from .conftest import BIN, wait_until, write_campaign


def test_flower_lists_the_campaigns_tasks_with_readable_arguments_from_when_they_were_sent(env, sandbox):
    contacts = "phone,opt_in,first_name\n" + "".join(f"+1202555{2000 + i:04d},yes,P{i}\n" for i in range(30))
    path = write_campaign(env.tmp, "e2e-flower", contacts)
    env.vars["BATCH_SIZE"] = "10"
    port = free_port()
    env.vars["FLOWER_PASSWORD"] = "flower-pw-e2e"
    flower_log = env.tmp / "flower.log"
    flower = subprocess.Popen(
        [str(BIN / "celery"), "-A", "workers.app", "flower", f"--port={port}", "--address=127.0.0.1",
         "--basic-auth=ops:flower-pw-e2e"],
        cwd=ROOT, env=env.vars, stdout=open(flower_log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    env.workers.append(flower)
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: _answers(base), timeout=30, what="flower")
    assert httpx.get(base + "/api/tasks", timeout=5).status_code == 401   # basic auth required
    env.start_worker()
    env.cli("run", str(path), "--wait", "--timeout", "60", check=True)

    def tasks():
        r = httpx.get(base + "/api/tasks", auth=("ops", "flower-pw-e2e"), timeout=5)
        got = [t for t in r.json().values() if t.get("name") == "dispatcher.send_batch" and t.get("state") == "SUCCESS"
               and str(t.get("args", "")).startswith("e2e-flower")]
        return got if len(got) >= 3 else None

    got = wait_until(tasks, timeout=30, what="tasks in flower")
    labels = sorted(t["args"] for t in got)
    assert labels == ["e2e-flower batch 1 of 3", "e2e-flower batch 2 of 3", "e2e-flower batch 3 of 3"]
    for t in got:
        assert "+1202" not in str(t)   # no phone number anywhere in what Flower shows
        assert t.get("sent")           # the task-sent event, sent in the loader's pipeline beside the task


def _answers(base: str) -> bool:
    try:
        return httpx.get(base + "/healthcheck", timeout=1).status_code in (200, 401)
    except httpx.HTTPError:
        return False
