"""A fresh PostgreSQL database per test (created and dropped over a real connection)."""

from __future__ import annotations

import contextlib
import uuid
from typing import Iterator

from sqlalchemy import create_engine, text

from tests.conftest import TEST_POSTGRES_URL


@contextlib.contextmanager
def fresh_postgres() -> Iterator[str]:
    admin = create_engine(TEST_POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"dispatcher_t_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    base = TEST_POSTGRES_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        from dispatcher.store import make_engine

        make_engine.cache_clear()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
