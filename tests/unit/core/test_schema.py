"""The Alembic revisions and the ORM models describe the same schema."""

from __future__ import annotations

import importlib

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from core import dbschema
from core.db import Base

MODEL_MODULES = (
    "core.audit",
    "multiplexer.models",
    "reconciler.models",
    "migration.models",
    "admin.models",
)


def _load_models() -> None:
    for module in MODEL_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def _upgraded(url: str) -> sa.Engine:
    dbschema.upgrade(url)
    return sa.create_engine(url)


def _assert_no_drift(engine: sa.Engine) -> None:
    _load_models()
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": False})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == [], f"ORM models and Alembic revisions disagree: {diff}"


def test_sqlite_schema_matches_models(tmp_path):
    _assert_no_drift(_upgraded(f"sqlite:///{tmp_path / 'schema.db'}"))


@pytest.mark.postgres
def test_postgres_schema_matches_models(postgres_url):
    engine = _upgraded(postgres_url)
    _assert_no_drift(engine)
    engine.dispose()


def test_audit_log_is_append_only(tmp_path):
    engine = _upgraded(f"sqlite:///{tmp_path / 'audit.db'}")
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "insert into audit_log (at, actor, action, resource_type, resource_id) "
                "values ('2026-01-01T00:00:00+00:00', 'test', 'x', 'route', 'u1')"
            )
        )
    with pytest.raises(sa.exc.DatabaseError, match="append-only"), engine.begin() as conn:
        conn.execute(sa.text("update audit_log set actor = 'mallory'"))
    with pytest.raises(sa.exc.DatabaseError, match="append-only"), engine.begin() as conn:
        conn.execute(sa.text("delete from audit_log"))
