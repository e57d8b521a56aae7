"""``twinbill reconcile``: diff both systems for a user, a cohort or everyone migrated."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from admin.cli.common import EXIT_ERROR, EXIT_FOUND, EXIT_OK, err_console
from core.errors import TwinbillError

FORMATS = ("table", "json", "csv", "html")


def reconcile(
    user: str | None = typer.Option(None, "--user"),
    cohort: str | None = typer.Option(None, "--cohort"),
    all_users: bool = typer.Option(False, "--all"),
    refetch: bool = typer.Option(
        False, "--refetch", help="re-read legacy now (billed-by-exactly-one-system check)"
    ),
    fmt: str = typer.Option("table", "--format", help="table | json | csv | html"),
    out: Path | None = typer.Option(None, "--out", help="write the report here"),
) -> None:
    """Exit 0 when clean, 1 when differences were found, 2 on error (nothing stored)."""
    from admin.cli.context import app_root
    from migration import verify
    from reconciler.render import render

    if fmt not in FORMATS:
        err_console.print(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
        raise typer.Exit(EXIT_ERROR)
    if sum([user is not None, cohort is not None, all_users]) != 1:
        err_console.print("choose exactly one scope: --user ID, --cohort NAME or --all")
        raise typer.Exit(EXIT_ERROR)
    try:
        deps = app_root().saga
        scope = verify.resolve_scope(deps.sessions, user=user, cohort=cohort, all_users=all_users)
        report = verify.reconcile(
            deps.sessions, deps.legacy, deps.new, scope, created_by="cli", refetch=refetch
        )
    except TwinbillError as exc:
        err_console.print(f"[bold red]error[/]: {exc}")
        raise typer.Exit(EXIT_ERROR) from None
    text = render(report, fmt)
    if out is not None:
        out.write_text(text, encoding="utf-8")
        err_console.print(f"report {report.id} written to {out}")
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    raise typer.Exit(EXIT_OK if report.clean else EXIT_FOUND)
