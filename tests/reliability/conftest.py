"""Fault-injection fixtures: real worker and beat processes, the sandbox, a campaign audit, a private PostgreSQL.

Every test here runs real processes and is bounded: waits have timeouts, fault loops have counts.
The figures each test measures are collected in ``FIGURES`` and printed at the end of the run.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

from dispatcher.store import Store, make_engine
from tests.conftest import Sandbox
from tests.e2e.conftest import Env, wait_until, write_campaign

from .pg import PrivatePostgres, find_bindir

FIGURES: dict[str, dict[str, Any]] = {}

__all__ = ["Audit", "FIGURES", "audit", "campaign_state", "contacts", "counts", "elapsed", "in_flight",
           "record_figures", "requests_seen", "statuses", "wait_until", "write_campaign"]


def contacts(n: int) -> str:
    """``n`` distinct US numbers with consent (+12025551000 upwards)."""
    return "phone,opt_in,first_name\n" + "".join(f"+1202555{1000 + i:04d},yes,P{i}\n" for i in range(n))


@dataclass
class Audit:
    """What the database says happened to every recipient, set against what the sandbox received."""

    recipients: int
    by_status: dict[str, int]
    requests: int                       # provider requests the sandbox received
    duplicates: int                     # the sandbox's own count: accepted twice for the same recipient+text
    sent_twice: list[str]               # recipients the sandbox accepted more than once
    requested_twice_unknown: list[str]  # `unknown` recipients the sandbox received more than once
    sent_not_accepted: list[str]        # `sent` in the database, never accepted by the sandbox
    accepted_not_sent: list[str]        # accepted by the sandbox, neither `sent` nor `unknown` in the database
    lost: list[str]                     # recipients in no final, explained state
    unknown_reasons: dict[str, int] = field(default_factory=dict)
    unknown_received: int = 0           # `unknown` messages the sandbox did receive (the send went out)

    def assert_nothing_lost_nothing_twice(self, final: tuple[str, ...] = ("sent", "unknown")) -> None:
        assert self.duplicates == 0, f"sandbox counted {self.duplicates} duplicate sends"
        assert not self.sent_twice, f"sent twice: {self.sent_twice[:10]}"
        assert not self.requested_twice_unknown, f"unknown yet requested twice: {self.requested_twice_unknown[:10]}"
        assert not self.sent_not_accepted, f"recorded sent but never accepted: {self.sent_not_accepted[:10]}"
        assert not self.accepted_not_sent, f"accepted by the provider but not recorded: {self.accepted_not_sent[:10]}"
        assert not self.lost, f"{len(self.lost)} recipients lost: {self.lost[:10]} ({self.by_status})"
        assert sum(self.by_status.get(s, 0) for s in final) == self.recipients, self.by_status


def audit(sandbox: Sandbox, database_url: str, campaign: str, provider: str = "dropcowboy") -> Audit:
    store = Store(make_engine(database_url))
    cid = int(store.campaign(campaign).id)  # type: ignore[arg-type]
    msgs = list(store.messages(cid))
    status = {m["phone"]: m["status"] for m in msgs}
    reqs = sandbox.requests(provider)
    requested = Counter(r["json"]["phone_number"] for r in reqs if isinstance(r["json"], dict))
    accepted = Counter(r["json"]["phone_number"] for r in reqs if r["status"] == 200)
    stats = sandbox.http.get("/_sandbox/stats").json()
    unknown = [m for m in msgs if m["status"] == "unknown"]
    return Audit(
        recipients=len(msgs),
        by_status=dict(Counter(status.values())),
        requests=len(reqs),
        duplicates=int(stats["duplicates"]),
        sent_twice=sorted(p for p, n in accepted.items() if n > 1),
        requested_twice_unknown=sorted(p for p, s in status.items() if s == "unknown" and requested[p] > 1),
        sent_not_accepted=sorted(p for p, s in status.items() if s == "sent" and accepted[p] != 1),
        accepted_not_sent=sorted(p for p in accepted if status.get(p) not in ("sent", "unknown")),
        lost=sorted(p for p, s in status.items() if s in ("queued", "sending", "deferred")),
        unknown_reasons=dict(Counter((m["reason"] or "")[:60] for m in unknown)),
        unknown_received=sum(1 for m in unknown if requested[m["phone"]]),
    )


def requests_seen(sandbox: Sandbox, provider: str = "dropcowboy") -> int:
    """Provider requests the sandbox has answered (its stats: cheap to poll, unlike the full request log)."""
    return int(sandbox.http.get("/_sandbox/stats").json()["by_provider"][provider]["requests"])


def campaign_state(database_url: str, campaign: str) -> tuple[str, str | None]:
    c = Store(make_engine(database_url)).campaign(campaign)
    return c.state, c.state_reason


def counts(database_url: str, campaign: str) -> dict[str, int]:
    store = Store(make_engine(database_url))
    return store.counts(int(store.campaign(campaign).id))  # type: ignore[arg-type]


def in_flight(database_url: str, campaign: str) -> set[str]:
    """Phones of the messages claimed (``sending``) and not yet recorded."""
    store = Store(make_engine(database_url))
    cid = int(store.campaign(campaign).id)  # type: ignore[arg-type]
    return {m["phone"] for m in store.messages(cid) if m["status"] == "sending"}


def statuses(database_url: str, campaign: str) -> dict[str, str]:
    store = Store(make_engine(database_url))
    cid = int(store.campaign(campaign).id)  # type: ignore[arg-type]
    return {m["phone"]: m["status"] for m in store.messages(cid)}


def record_figures(test: str, **figures: Any) -> None:
    FIGURES[test] = figures


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # type: ignore[no-untyped-def]
    if FIGURES:
        terminalreporter.section("reliability figures")
        for test, figures in FIGURES.items():
            terminalreporter.write_line(f"{test}: {json.dumps(figures, default=str)}")


@pytest.fixture()
def renv(tmp_path: Path, redis_client: Any, redis_url: str, sandbox: Sandbox) -> Iterator[Env]:
    """An ``Env`` on a SQLite file; tests set SEND_CONCURRENCY etc. in ``renv.vars`` before starting workers."""
    e = Env(tmp_path, redis_url, f"sqlite:///{tmp_path / 'dispatcher.db'}", sandbox.url)
    yield e
    e.stop_all()


@pytest.fixture(scope="session")
def private_pg() -> Iterator[PrivatePostgres | None]:
    """A private PostgreSQL server for the session, or None when its binaries are not installed."""
    bindir = find_bindir()
    if bindir is None:
        yield None
        return
    pg = PrivatePostgres(bindir)
    try:
        yield pg
    finally:
        pg.destroy()


def _pg_env(tmp_path: Path, redis_url: str, sandbox_url: str, pg: PrivatePostgres) -> Env:
    return Env(tmp_path, redis_url, pg.create_database(f"rel_{uuid.uuid4().hex[:10]}"), sandbox_url)


@pytest.fixture()
def pg_env(tmp_path: Path, redis_client: Any, redis_url: str, sandbox: Sandbox,
           private_pg: PrivatePostgres | None) -> Iterator[Env]:
    """An ``Env`` on a fresh database of the private PostgreSQL server (skips without PostgreSQL binaries)."""
    if private_pg is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin or on PATH")
    e = _pg_env(tmp_path, redis_url, sandbox.url, private_pg)
    yield e
    e.stop_all()
    make_engine.cache_clear()


@pytest.fixture()
def multi_env(tmp_path: Path, redis_client: Any, redis_url: str, sandbox: Sandbox,
              private_pg: PrivatePostgres | None) -> Iterator[Env]:
    """The database several worker processes share in production: the private PostgreSQL, else a SQLite file
    (RELIABILITY_DB=sqlite forces SQLite)."""
    if private_pg is None or os.environ.get("RELIABILITY_DB") == "sqlite":
        e = Env(tmp_path, redis_url, f"sqlite:///{tmp_path / 'dispatcher.db'}", sandbox.url)
    else:
        e = _pg_env(tmp_path, redis_url, sandbox.url, private_pg)
    yield e
    e.stop_all()
    make_engine.cache_clear()


def elapsed(since: float) -> float:
    return round(time.monotonic() - since, 1)
