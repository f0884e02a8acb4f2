"""The baseline a hand-written Celery script would be: one task per recipient, enqueued one by one,
each posting with httpx and writing its own outcome row. Used only by bench/e2e_throughput.py."""

from __future__ import annotations

import os
import sqlite3
import threading
import time

import httpx
from celery import Celery

app = Celery("naive", broker=os.environ["REDIS_URL"])
app.conf.update(task_ignore_result=True, worker_prefetch_multiplier=4, task_default_queue="naive",
                worker_hijack_root_logger=False)
DB = os.environ.get("NAIVE_DB", "naive.db")
URL = os.environ.get("SANDBOX_URL", "http://127.0.0.1:8025")
_local = threading.local()
_client: httpx.Client | None = None


def _db() -> sqlite3.Connection:
    if not hasattr(_local, "db"):
        _local.db = sqlite3.connect(DB, timeout=60)
        _local.db.execute("PRAGMA journal_mode=WAL")
        _local.db.execute("PRAGMA busy_timeout=60000")
    return _local.db


def _http() -> httpx.Client:
    global _client
    if _client is None:
        _client = httpx.Client(base_url=URL, timeout=10, limits=httpx.Limits(max_connections=64))
    return _client


def setup(n: int) -> None:
    db = sqlite3.connect(DB)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS message (id INTEGER PRIMARY KEY, phone TEXT, body TEXT)")
    db.execute("CREATE TABLE IF NOT EXISTS outcome (id INTEGER PRIMARY KEY, message_id INT, status INT, at REAL)")
    db.executemany("INSERT INTO message (id, phone, body) VALUES (?, ?, ?)",
                   [(i, f"+1202{3000000 + i:07d}", f"Hi {i}, 20% off today") for i in range(1, n + 1)])
    db.commit()


@app.task(name="naive.send")
def send(message_id: int) -> None:
    db = _db()
    phone, body = db.execute("SELECT phone, body FROM message WHERE id = ?", (message_id,)).fetchone()
    r = _http().post("/v1/sms", headers={"x-team-id": "bench-team", "x-secret": "bench-secret"}, json={
        "team_id": "bench-team", "secret": "bench-secret", "phone_number": phone, "caller_id": "+15557778888",
        "pool_id": "text", "sms_body": body, "opt_in": True, "foreign_id": str(message_id)})
    db.execute("INSERT INTO outcome (message_id, status, at) VALUES (?, ?, ?)", (message_id, r.status_code, time.time()))
    db.commit()
