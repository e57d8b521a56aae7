"""``twinbill db``: schema migrations."""

from __future__ import annotations

import typer

from admin.cli.common import cli_errors, console
from core.settings import load_settings

app = typer.Typer(help="Database schema (Alembic).", no_args_is_help=True)

MODEL_MODULES = (
    "core.audit",
    "multiplexer.models",
    "reconciler.models",
    "migration.models",
    "admin.models",
)


@app.command()
def upgrade(revision: str = typer.Argument("head")) -> None:
    """Bring the database schema up to date (safe to run repeatedly)."""
    from core import dbschema

    with cli_errors():
        url = load_settings().database_url
        dbschema.upgrade(url, revision, MODEL_MODULES)
        console.print(f"schema at [bold]{dbschema.current(url)}[/] ({_safe(url)})")


@app.command()
def current() -> None:
    """Print the schema revision of the configured database."""
    from core import dbschema

    with cli_errors():
        url = load_settings().database_url
        console.print(dbschema.current(url) or "empty (run `twinbill db upgrade`)")


def _safe(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
