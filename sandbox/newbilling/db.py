"""Engine and session wiring, built by the app factory from settings."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from .models import Base


def make_engine(url: str) -> Engine:
    """An engine for SQLite (file or memory) or PostgreSQL (``postgresql+psycopg://``).

    SQLite gets WAL, foreign keys and ``BEGIN IMMEDIATE``: with a deferred begin two
    concurrent writers can both read and then fail to upgrade their lock, which
    surfaces as a 500 instead of simply waiting for the other writer.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": 30}}
    if parsed.database in (None, "", ":memory:"):
        from sqlalchemy.pool import StaticPool

        kwargs["poolclass"] = StaticPool
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # let SQLAlchemy's begin hook below issue BEGIN
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def create_schema(engine: Engine) -> None:
    """``create_all`` on start: this is a sandbox, it has no schema migrations."""
    Base.metadata.create_all(engine)


def wipe(session: Session) -> None:
    """Delete every row (the test-only ``DELETE /_test/data``), children first."""
    for table in reversed(Base.metadata.sorted_tables):
        session.execute(table.delete())
