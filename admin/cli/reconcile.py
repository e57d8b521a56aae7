"""``twinbill reconcile``: diff both systems for a user, a cohort or everyone migrated."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from admin.cli.common import EXIT_FOUND, EXIT_OK, err_console, fail, handle, mark_json
from core.errors import TwinbillError

FORMATS = ("table", "json", "csv", "html")


def reconcile(
    user: str | None = typer.Option(None, "--user", help="one app user id"),
    cohort: str | None = typer.Option(None, "--cohort", help="every migrated member of a cohort"),
    all_users: bool = typer.Option(False, "--all", help="everyone migrated"),
    refetch: bool = typer.Option(
        False, "--refetch", help="re-read legacy now (billed-by-exactly-one-system check)"
    ),
    fmt: str = typer.Option("table", "--format", help="table | json | csv | html"),
    json: bool = typer.Option(False, "--json", help="same as --format json"),
    out: Path | None = typer.Option(None, "--out", help="write the report here"),
) -> None:
    """Diff both systems field by field for a user, a cohort or everyone migrated.

    Exit 0 when clean, 1 when differences were found, 2 on error (nothing stored).

    \b
    Examples:
      twinbill reconcile --user u_42 --refetch
      twinbill reconcile --cohort pilot --json
      twinbill reconcile --all --format html --out report.html
    """
    from admin.cli.context import app_root
    from migration import verify
    from reconciler.render import render

    fmt = "json" if json else fmt
    if fmt == "json":  # errors as JSON too
        mark_json()
    if fmt not in FORMATS:
        raise fail(f"unknown format {fmt!r}", f"choose one of {', '.join(FORMATS)}")
    if sum([user is not None, cohort is not None, all_users]) != 1:
        raise fail("choose exactly one scope", "--user ID, --cohort NAME or --all")
    try:
        deps = app_root().saga
        scope = verify.resolve_scope(deps.sessions, user=user, cohort=cohort, all_users=all_users)
        report = verify.reconcile(
            deps.sessions, deps.legacy, deps.new, scope, created_by="cli", refetch=refetch
        )
    except TwinbillError as exc:
        raise handle(exc) from None
    text = render(report, fmt)
    if out is not None:
        out.write_text(text, encoding="utf-8")
        err_console.print(f"report {report.id} written to {out}")
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    raise typer.Exit(EXIT_OK if report.clean else EXIT_FOUND)
