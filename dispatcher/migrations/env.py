from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from dispatcher import models  # noqa: F401  (registers the tables)
from dispatcher.settings import get_settings
from dispatcher.store import make_engine

target_metadata = SQLModel.metadata
config = context.config
engine = config.attributes.get("engine") or make_engine(get_settings().database_url)

with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
