"""``twinbill db``: schema migrations (Alembic revisions in core/dbschema/versions)."""

from __future__ import annotations

from typing import Any

import typer

from admin.cli.common import (
    EXIT_FOUND,
    JSON_HELP,
    UPGRADE_HINT,
    console,
    err_console,
    fail,
    group,
    print_json,
)
from admin.cli.guard import YES_HELP, banner, confirm
from core.settings import load_settings

app = group("Database schema (Alembic): upgrade, check, history, downgrade.")

MODEL_MODULES = (
    "core.audit",
    "multiplexer.models",
    "reconciler.models",
    "migration.models",
    "admin.models",
)
JSON = typer.Option(False, "--json", help=JSON_HELP)


def _safe(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _script() -> Any:
    from alembic.script import ScriptDirectory

    from core import dbschema

    return ScriptDirectory.from_config(dbschema.alembic_config("sqlite://"))


@app.command()
def upgrade(
    revision: str = typer.Argument("head", help="target revision (default: the newest)"),
    json: bool = JSON,
) -> None:
    """Bring the database schema up to date (safe to run repeatedly).

    \b
    Examples:
      twinbill db upgrade
      TWINBILL_DATABASE_URL=postgresql+psycopg://... twinbill db upgrade
    """
    from core import dbschema

    url = load_settings().database_url
    banner(with_legacy=False)
    dbschema.upgrade(url, revision, MODEL_MODULES)
    now = dbschema.current(url)
    if json:
        print_json({"database": _safe(url), "revision": now})
    else:
        console.print(f"schema at [bold]{now}[/] ({_safe(url)})")


@app.command()
def current(json: bool = JSON) -> None:
    """Print the schema revision of the configured database.

    \b
    Example:
      twinbill db current
    """
    from core import dbschema

    url = load_settings().database_url
    rev = dbschema.current(url)
    if json:
        print_json({"database": _safe(url), "revision": rev})
    else:
        console.print(rev or f"empty ({UPGRADE_HINT})")


@app.command()
def history(json: bool = JSON) -> None:
    """Every schema revision, oldest first, with the database's current one marked.

    \b
    Example:
      twinbill db history
    """
    from core import dbschema

    rev = dbschema.current(load_settings().database_url)
    rows = [
        {
            "revision": s.revision,
            "down_revision": s.down_revision,
            "doc": s.doc,
            "current": s.revision == rev,
        }
        for s in reversed(list(_script().walk_revisions()))
    ]
    if json:
        print_json(rows)
        return
    for r in rows:
        mark = "→" if r["current"] else " "
        console.print(f"{mark} {r['revision']}  {r['doc'] or ''}", highlight=False)
    if rev is None:
        console.print(f"(database is empty: {UPGRADE_HINT})")


@app.command()
def check(json: bool = JSON) -> None:
    """Exit 0 when the schema is at the newest revision and matches the code, else 1.

    \b
    Example (a deploy's pre-start check):
      twinbill db check || twinbill db upgrade
    """
    from core import dbschema

    url = load_settings().database_url
    rev, head = dbschema.current(url), _script().get_current_head()
    problem = None
    if rev != head:
        problem = f"schema at {rev or 'nothing'}, code expects {head}"
    elif diffs := _model_diffs(url):
        problem = f"schema differs from the code: {diffs[0]}"
    if json:
        print_json(
            {
                "database": _safe(url),
                "revision": rev,
                "head": head,
                "ok": problem is None,
                "problem": problem,
            }
        )
    elif problem:
        err_console.print(f"[bold red]schema not ready[/]: {problem} — {UPGRADE_HINT}")
    else:
        console.print(f"schema up to date at [bold]{head}[/] ({_safe(url)})")
    if problem:
        raise typer.Exit(EXIT_FOUND)


def _model_diffs(url: str) -> list[str]:
    """Alembic's autogenerate comparison of the live schema with the ORM models."""
    import importlib
    import warnings

    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine

    from core.db import Base

    for module in MODEL_MODULES:
        importlib.import_module(module)
    engine = create_engine(url)
    try:
        with warnings.catch_warnings(), engine.connect() as conn:
            warnings.simplefilter("ignore")  # expression indexes SQLite cannot reflect
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return [str(d)[:200] for d in compare_metadata(ctx, Base.metadata)]
    finally:
        engine.dispose()


@app.command(context_settings={"ignore_unknown_options": True})
def downgrade(
    revision: str = typer.Argument(..., help="target revision, e.g. 0004, or `previous` / -1"),
    yes: bool = typer.Option(False, "--yes", "-y", help=YES_HELP),
    json: bool = JSON,
) -> None:
    """Step the schema back to REVISION (drops tables and columns added since: data goes).

    \b
    Examples:
      twinbill db downgrade previous --yes
      twinbill db downgrade 0004
    """
    from alembic import command

    from core import dbschema

    url = load_settings().database_url
    revision = "-1" if revision == "previous" else revision
    if revision in ("base", ""):
        raise fail(
            "refusing to drop the whole schema", "name a revision, see `twinbill db history`"
        )
    banner(with_legacy=False)
    rev = dbschema.current(url)
    confirm(
        f"will downgrade {_safe(url)} from {rev} to {revision}: data in later tables is lost",
        yes=yes,
        nothing="nothing changed",
    )
    command.downgrade(dbschema.alembic_config(url, MODEL_MODULES), revision)
    now = dbschema.current(url)
    print_json({"database": _safe(url), "revision": now}) if json else console.print(
        f"schema at [bold]{now}[/]"
    )
