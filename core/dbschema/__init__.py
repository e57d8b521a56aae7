"""Alembic schema migrations (named ``dbschema`` so nobody confuses it with ``migration/``).

Revisions are hand-written and chained in layer order: 0001 core, 0002
multiplexer, 0003 reconciler, 0004 migration, 0005 admin. A test upgrades an
empty database to head and compares the result with the ORM metadata, so the
two cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

HERE = Path(__file__).resolve().parent


def alembic_config(url: str, model_modules: tuple[str, ...] = ()) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["model_modules"] = model_modules
    return cfg


def upgrade(url: str, revision: str = "head", model_modules: tuple[str, ...] = ()) -> None:
    command.upgrade(alembic_config(url, model_modules), revision)


def upgrade_engine(engine: Engine, revision: str = "head") -> None:
    """Upgrade through an existing engine (keeps in-memory SQLite databases alive)."""
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def current(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine

    eng = create_engine(url)
    try:
        with eng.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        eng.dispose()
