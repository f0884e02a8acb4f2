"""Compliance end to end: only the right messages reach the provider, and the report explains the rest."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import redis

from dispatcher.campaign import load_campaign
from dispatcher.engine import Dispatcher
from dispatcher.loader import load
from dispatcher.queue import TaskQueue
from dispatcher.ratelimit import RateLimiter
from dispatcher.runtime import http_client
from dispatcher.settings import Settings
from dispatcher.store import Store, init_db, make_engine

from .conftest import SECRET_ENV, wait_until, write_campaign


def _window_around_now_in(zone: str) -> tuple[str, str]:
    now = datetime.now(ZoneInfo(zone))
    return (now - timedelta(hours=1)).strftime("%H:%M"), (now + timedelta(hours=1)).strftime("%H:%M")


def test_mixed_list_sends_exactly_the_eligible_and_explains_every_other(env, sandbox):
    start, end = _window_around_now_in("America/New_York")   # it is quiet hours in New York right now
    contacts = (
        "phone,opt_in,first_name,timezone\n"
        "+12025550201,yes,Ada,Asia/Tokyo\n"            # 13-14 h ahead of New York: outside the window -> sent
        "+12025550202,yes,Bob,America/New_York\n"      # inside quiet hours -> deferred until the window opens
        "+12025550203,no,Cy,Asia/Tokyo\n"              # no consent -> skipped
        "+12025550204,yes,Di,Asia/Tokyo\n"             # suppressed by hand -> skipped
        "+12025550205,yes,Ed,Asia/Tokyo\n"             # suppressed by an imported list -> skipped
        "+12025550206,yes,Flo,Asia/Tokyo\n"            # blacklisted at the provider -> failed, then suppressed
        "+12025550207,yes,Gus \U0001F600 with a very long name that pushes the text past seventy units,Asia/Tokyo\n"
    )
    path = write_campaign(env.tmp, "e2e-mixed", contacts,
                          extra=f'quiet_hours: {{start: "{start}", end: "{end}", default_timezone: America/New_York}}\n')
    (env.tmp / "suppress.csv").write_text("phone,reason\n+12025550205,complaint\n")
    env.cli("suppress", "add", "+12025550204", "--reason", "asked by phone", check=True)
    env.cli("suppress", "import", str(env.tmp / "suppress.csv"), check=True)
    sandbox.configure(numbers={"+12025550206": "blacklisted"})
    env.start_worker()
    env.cli("run", str(path), "--wait", "--timeout", "60", check=True)

    accepted = [r["json"]["phone_number"] for r in sandbox.requests("dropcowboy") if r["status"] == 200]
    assert accepted == ["+12025550201"]
    report = json.loads(env.cli("report", "e2e-mixed", "--format", "json", check=True).stdout)
    by_phone = {m["phone"]: m for m in report["messages"]}
    assert by_phone["+12025550201"]["status"] == "sent"
    assert by_phone["+12025550202"]["status"] == "deferred"
    assert "quiet hours in America/New_York" in by_phone["+12025550202"]["reason"]
    assert by_phone["+12025550202"]["not_before"]
    assert by_phone["+12025550203"]["reason"] == "no recorded consent"
    assert "manual" in by_phone["+12025550204"]["reason"] and "suppressed" in by_phone["+12025550204"]["reason"]
    assert "import" in by_phone["+12025550205"]["reason"]
    assert by_phone["+12025550206"]["status"] == "failed" and "suppression list" in by_phone["+12025550206"]["reason"]
    assert by_phone["+12025550207"]["status"] == "skipped" and "UCS-2" in by_phone["+12025550207"]["reason"]
    listed = env.cli("suppress", "list", check=True).stdout
    assert "+12025550206" in listed and "dropcowboy" in listed


def test_deferred_message_is_sent_when_its_window_opens(env, sandbox, redis_url, tmp_path):
    # New York, 23:30 on 2026-11-02 (EST): inside 21:00-08:00, so the message waits for 08:00 local = 13:00 UTC.
    clock = {"now": datetime(2026, 11, 3, 4, 30, tzinfo=timezone.utc)}
    path = write_campaign(env.tmp, "e2e-window", "phone,opt_in,first_name\n+12025550301,yes,Ada\n",
                          extra='quiet_hours: {start: "21:00", end: "08:00", default_timezone: America/New_York}\n')
    environ = {**SECRET_ENV, "SANDBOX_URL": sandbox.url}
    settings = Settings(redis_url=redis_url, database_url=f"sqlite:///{tmp_path / 'window.db'}")
    engine = make_engine(settings.database_url)
    init_db(engine)
    store = Store(engine)
    queue = TaskQueue(settings)
    d = Dispatcher(settings, store, queue, RateLimiter(redis.Redis.from_url(redis_url)), lambda: http_client(settings),
                   clock=lambda: clock["now"], environ=environ)
    load(load_campaign(path, environ=environ), store, queue, now=clock["now"])
    (m,) = list(store.messages(1))
    assert m["status"] == "deferred" and m["not_before"] == datetime(2026, 11, 3, 13, 0, tzinfo=timezone.utc)

    clock["now"] = datetime(2026, 11, 3, 12, 59, 59, tzinfo=timezone.utc)
    assert d.release_due() == 0                                   # a second early: nothing moves
    clock["now"] = datetime(2026, 11, 3, 13, 0, 0, tzinfo=timezone.utc)
    assert d.release_due() == 1                                   # the window opened: its batch is enqueued
    result = d.send_batch(m["batch_id"])
    assert result.sent == 1
    assert [r["json"]["phone_number"] for r in sandbox.requests("dropcowboy")] == ["+12025550301"]
    assert store.campaign(1).state == "completed"
