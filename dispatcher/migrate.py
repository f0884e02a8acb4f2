"""Schema migrations with Alembic, run from code (`dispatcher db upgrade`) or `alembic` itself."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

if TYPE_CHECKING:
    from alembic.config import Config

_HERE = Path(__file__).resolve().parent / "migrations"
_lock = threading.Lock()


def alembic_config(engine: Engine | None = None) -> "Config":
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE))
    if engine is not None:
        cfg.attributes["engine"] = engine
    return cfg


# The newest revision: each file in migrations/versions is named after its revision id, numbered in order (a test
# holds this to Alembic's own head). A database already there is not handed to Alembic, which is imported only when
# there is something to do: importing it and loading its scripts took about 150 ms of every command's and every
# worker's start-up.
HEAD = max(p.name.split("_", 1)[0] for p in (_HERE / "versions").glob("[0-9]*_*.py"))


def upgrade(engine: Engine, revision: str = "head") -> None:
    with _lock:
        if revision == "head" and current(engine) == HEAD:
            return
        from alembic import command

        command.upgrade(alembic_config(engine), revision)


def current(engine: Engine) -> str | None:
    """The database's revision; None before the first migration."""
    try:
        with engine.connect() as conn:
            return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()  # type: ignore[no-any-return]
    except DBAPIError:      # no version table yet
        return None
