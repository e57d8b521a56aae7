"""Helpers shared by CLI modules: console, JSON output, ISO dates, errors -> exit codes.

Exit codes (every command):

* ``0`` all good;
* ``1`` something needs a human: failed or halted users, differences, a deferral
  with a problem;
  and an unexpected error (a bug): one line naming the file that holds its traceback
  (``crash_file``), never the traceback itself on the terminal;
* ``2`` usage or configuration error, printed as one line that names the fix
  (``--json``: one JSON object ``{"error": {...}}`` on stdout, nothing else).

``TwinbillGroup`` is the click group class of every ``typer.Typer`` here: it turns
exceptions raised anywhere below it into those codes, so no command prints a raw
traceback for a missing setting, an empty database or a bug.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any

import typer
from rich.console import Console
from typer import _click as click  # typer vendors click: use its classes, not click's
from typer._click.exceptions import ClickException, UsageError
from typer._click.globals import get_current_context
from typer.core import TyperGroup

from core.errors import ConfigurationError, TwinbillError

console = Console()
err_console = Console(stderr=True)

EXIT_OK, EXIT_FOUND, EXIT_ERROR = 0, 1, 2
UPGRADE_HINT = "run `twinbill db upgrade`"

JSON_HELP = "print one JSON document on stdout and nothing else (errors too)"


def iso(value: datetime | date | None) -> str | None:
    """ISO 8601 in UTC with a ``Z`` (dates as ``YYYY-MM-DD``); the one date format we print."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return value.isoformat()


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return iso(value)
    if isinstance(value, set | frozenset):
        return sorted(value)
    return str(value)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=_default) + "\n")


def json_requested() -> bool:
    """True when the command line asked for ``--json`` (also inside the error handler)."""
    ctx = get_current_context(silent=True)
    while ctx is not None:
        if ctx.meta.get("twinbill.json"):
            return True
        ctx = ctx.parent
    return "--json" in sys.argv[1:]


def mark_json() -> None:
    """A command whose machine output is not spelled ``--json`` (``--format json``)."""
    ctx = get_current_context(silent=True)
    if ctx is not None:
        ctx.meta["twinbill.json"] = True


def fail(message: str, fix: str | None = None) -> typer.Exit:
    """Print a usage/config error (text or JSON) and return the exit to raise."""
    _report("usage", message, fix)
    return typer.Exit(EXIT_ERROR)


def _report(kind: str, message: str, fix: str | None, **extra: Any) -> None:
    if json_requested():
        print_json({"error": {"kind": kind, "message": message, "fix": fix, **extra}})
        return
    line = f"[bold red]error[/]: {message}"
    err_console.print(line + (f" — {fix}" if fix else ""), highlight=False, soft_wrap=True)


def _classify(exc: BaseException) -> tuple[str, str, str | None] | None:
    """(kind, message, fix) for exceptions that are an operator's to fix; None for bugs."""
    import sqlalchemy.exc as sa_exc

    if isinstance(exc, SchemaMissing):
        return "schema", exc.message, UPGRADE_HINT
    if isinstance(exc, ConfigurationError):
        return "config", exc.message or str(exc), "set it in the environment (deploy/.env.example)"
    if isinstance(exc, TwinbillError):
        return exc.kind, exc.message or str(exc), None
    if isinstance(exc, sa_exc.OperationalError | sa_exc.ProgrammingError):
        text = str(exc.orig if exc.orig is not None else exc).lower()
        missing = ("no such table", "no such column", "does not exist", "undefined")
        if any(m in text for m in missing):
            first = str(exc.orig).splitlines()[0] if exc.orig else "missing table"
            return "schema", f"database schema is missing or out of date ({first})", UPGRADE_HINT
        if isinstance(exc, sa_exc.OperationalError):
            first = str(exc.orig).splitlines()[0] if exc.orig else str(exc)
            return "database", f"cannot use the database: {first}", "check TWINBILL_DATABASE_URL"
    if isinstance(exc, OSError) and exc.filename:  # a path given on the command line
        return "usage", f"{exc.strerror or exc}: {exc.filename}", "check the path"
    return None


def crash_file(exc: BaseException) -> str | None:
    """Write the traceback (redacted: no full email or card number) to a new file only the
    user can read, in the system's temporary directory; its path, or None if that failed."""
    from core.observability import redact

    text = "".join(traceback.format_exception(exc))
    try:
        fd, path = tempfile.mkstemp(prefix="twinbill-crash-", suffix=".log")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(redact(f"twinbill {' '.join(sys.argv[1:])}\n{text}"))
    except OSError:
        return None
    return path


def handle(exc: BaseException) -> typer.Exit:
    """Report an exception raised by a command and return the exit to raise: 2 for what
    the operator can fix, 1 for a bug (its traceback goes to ``crash_file``)."""
    found = _classify(exc)
    if found is not None:
        _report(*found)
        return typer.Exit(EXIT_ERROR)
    from core.observability import redact

    trace = crash_file(exc)
    message = redact(f"unexpected {type(exc).__name__}: {exc}".splitlines()[0])[:300]
    if trace is None:  # keep the traceback somewhere a human can find it
        traceback.print_exception(exc, file=sys.stderr)
        fix = "a bug: the traceback is above (it could not be written to a file)"
    else:
        fix = f"a bug, not your input: the traceback is in {trace}"
    _report("bug", message, fix, trace=trace)
    return typer.Exit(EXIT_FOUND)


class TwinbillGroup(TyperGroup):
    """Every command's errors become an exit code and one line (or one JSON object)."""

    def invoke(self, ctx: click.Context) -> Any:
        if "--json" in (*getattr(ctx, "_protected_args", ()), *ctx.args):
            ctx.meta["twinbill.json"] = True
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort):
            raise
        except UsageError as exc:
            if not json_requested():
                raise
            print_json({"error": {"kind": "usage", "message": exc.format_message()}})
            raise typer.Exit(EXIT_ERROR) from None
        except ClickException:
            raise
        except Exception as exc:
            raise handle(exc) from None


def group(help: str, *, epilog: str | None = None) -> typer.Typer:
    """A command group with twinbill's error handling and help conventions."""
    return typer.Typer(
        cls=TwinbillGroup,
        help=help,
        epilog=epilog,
        no_args_is_help=True,
    )


def require_schema(engine: Any) -> None:
    """Refuse early (before paging a legacy API) when the database has no schema yet."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        revision = MigrationContext.configure(conn).get_current_revision()
    if revision is None:
        url = engine.url.render_as_string(hide_password=True)
        raise SchemaMissing(f"the database {url} has no twinbill schema yet")


class SchemaMissing(TwinbillError):
    kind = "schema"


@contextmanager
def cli_errors() -> Iterator[None]:
    """Turn twinbill errors into a one-line message and exit code 2 (no traceback)."""
    try:
        yield
    except TwinbillError as exc:
        raise handle(exc) from None
