"""Fixtures for the webhook receiver: a real uvicorn server on a free port, real SQLite and PostgreSQL."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest
import uvicorn
from sqlalchemy import insert, select, update

from dispatcher.models import CampaignState, utcnow
from dispatcher.store import B, M, S, W, Store, init_db, make_engine
from dispatcher.webhooks import create_app
from tests.conftest import free_port
from tests.e2e.conftest import env, wait_until  # noqa: F401  (fixture re-exported for the e2e test)

TOKEN = "wh-test-token-3f9a1c7e5b"


class Receiver:
    """``create_app`` served by uvicorn in a thread, and a client for it."""

    def __init__(self, store: Store, **options: Any) -> None:
        self.store = store
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(store, TOKEN, **options), host="127.0.0.1", port=self.port,
                                log_level="warning", access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="webhooks", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the webhook receiver did not start")
            time.sleep(0.02)
        self.http = httpx.Client(base_url=self.url, timeout=10.0)

    def post(self, path: str, payload: Any = None, *, token: str | None = TOKEN, **kw: Any) -> httpx.Response:
        params = {"token": token} if token is not None else {}
        return self.http.post(path, params=params, json=payload, **kw)

    def url_for(self, path: str) -> str:
        return f"{self.url}{path}?token={TOKEN}"

    def stop(self) -> None:
        self.http.close()
        self.server.should_exit = True
        self.thread.join(10)


def _sqlite_store(tmp_path: Path) -> Store:
    store = Store(make_engine(f"sqlite:///{tmp_path / 'webhooks.db'}"))
    init_db(store.engine)
    return store


@pytest.fixture()
def sqlite_store(tmp_path: Path) -> Store:
    return _sqlite_store(tmp_path)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh, migrated database on each backend."""
    if request.param == "sqlite":
        yield _sqlite_store(tmp_path)
        return
    if os.environ.get("DISPATCHER_SKIP_POSTGRES") == "1":
        pytest.skip("DISPATCHER_SKIP_POSTGRES=1")
    from tests.store_utils import fresh_postgres

    with fresh_postgres() as url:
        s = Store(make_engine(url))
        init_db(s.engine)
        yield s
        s.engine.dispose()


@pytest.fixture()
def receiver_factory() -> Iterator[Callable[..., Receiver]]:
    started: list[Receiver] = []

    def start(store: Store, **options: Any) -> Receiver:
        r = Receiver(store, **options)
        started.append(r)
        return r

    yield start
    for r in started:
        r.stop()


@pytest.fixture()
def receiver(store: Store, receiver_factory: Callable[..., Receiver]) -> Receiver:
    """The receiver over ``store`` (both backends), processing in the background after each event."""
    return receiver_factory(store)


def make_messages(store: Store, provider: str, phones: list[str], *, status: str = "sent",
                  provider_ids: list[str | None] | None = None, name: str | None = None) -> list[int]:
    """A running campaign of ``provider`` with one message per phone, as a worker would have left them."""
    c = store.create_campaign(name=name or f"{provider}-{time.monotonic_ns()}", provider=provider,
                              source_path="campaign.yaml", spec={}, state=CampaignState.RUNNING.value,
                              load_complete=True, batch_count=1)
    ids = []
    with store.tx() as conn:
        bid = conn.execute(insert(B).values(campaign_id=c.id, seq=1, size=len(phones)).returning(B.c.id)).scalar_one()
        for i, phone in enumerate(phones):
            pid = provider_ids[i] if provider_ids else f"{provider}-pid-{i}-{time.monotonic_ns()}"
            ids.append(conn.execute(insert(M).values(
                campaign_id=c.id, batch_id=bid, line=i + 2, phone=phone, region="US", body="Hi, 20% off today.", fields={}, consent={},
                status=status, provider_message_id=pid, attempts=1, updated_at=utcnow()).returning(M.c.id)).scalar_one())
    return [int(i) for i in ids]


def message(store: Store, message_id: int) -> dict[str, Any]:
    with store.tx() as conn:
        return dict(conn.execute(select(M).where(M.c.id == message_id)).mappings().one())


def set_status(store: Store, message_id: int, status: str) -> None:
    with store.tx() as conn:
        conn.execute(update(M).where(M.c.id == message_id).values(status=status))


def events(store: Store) -> list[dict[str, Any]]:
    with store.tx() as conn:
        return [dict(r) for r in conn.execute(select(W).order_by(W.c.id)).mappings()]


def suppressions(store: Store) -> dict[str, dict[str, Any]]:
    with store.tx() as conn:
        return {r["phone"]: dict(r) for r in conn.execute(select(S)).mappings()}


def wait_status(store: Store, message_id: int, status: str, timeout: float = 15.0) -> dict[str, Any]:
    return wait_until(lambda: (m := message(store, message_id))["status"] == status and m,
                      timeout=timeout, interval=0.05, what=f"message {message_id} to become {status}")


def wait_processed(store: Store, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
    return wait_until(lambda: (e := events(store)) and sum(1 for x in e if x["processed_at"]) >= count and e,
                      timeout=timeout, interval=0.05, what=f"{count} processed events")
