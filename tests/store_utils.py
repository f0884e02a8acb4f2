"""A fresh PostgreSQL database per test (created and dropped over a real connection), and a migrated Store on
either backend."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from sqlalchemy import create_engine, text

from tests.conftest import TEST_POSTGRES_URL

if TYPE_CHECKING:
    from dispatcher.store import Store


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


@contextlib.contextmanager
def store_on(backend: str, tmp_path: Path) -> Iterator["Store"]:
    """A migrated Store on a new SQLite file in ``tmp_path`` ("sqlite") or a fresh PostgreSQL database
    ("postgres"; the test is skipped when DISPATCHER_SKIP_POSTGRES=1)."""
    import pytest

    from dispatcher.store import Store, init_db, make_engine

    if backend == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
        init_db(engine)
        yield Store(engine)
        engine.dispose()
        return
    if os.environ.get("DISPATCHER_SKIP_POSTGRES") == "1":
        pytest.skip("DISPATCHER_SKIP_POSTGRES=1")
    with fresh_postgres() as url:
        engine = make_engine(url)
        init_db(engine)
        yield Store(engine)
        engine.dispose()
