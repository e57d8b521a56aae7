"""Alembic environment: online only, one connection, batch mode on SQLite."""

from __future__ import annotations

import importlib

from alembic import context
from sqlalchemy import create_engine, pool

from core.db import Base

config = context.config
for module in config.attributes.get("model_modules", ()) or ():
    importlib.import_module(module)  # registers tables for autogenerate comparisons
target_metadata = Base.metadata


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


existing = config.attributes.get("connection")
if existing is not None:
    _run(existing)
else:
    engine = create_engine(config.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool)
    with engine.connect() as connection:
        _run(connection)
        connection.commit()
    engine.dispose()
