"""``twinbill users sync`` (the bulk inventory read) and ``twinbill inventory report``."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from admin.cli.common import (
    EXIT_FOUND,
    JSON_HELP,
    cli_errors,
    console,
    err_console,
    group,
    print_json,
    require_schema,
)
from admin.cli.context import mux_context
from admin.cli.guard import banner
from core.errors import InvalidInput

inventory = group(
    "The legacy inventory: what users' billing looks like, and what is ready to move."
)
ACTOR = "cli"


class SyncProgress:
    """At a terminal a rich bar; elsewhere (a pipe, a Job log) a line per list read and
    one every ``every`` customers, so a log shows progress while it happens."""

    def __init__(self, out: Console, every: int) -> None:
        self.out, self.every = out, max(every, 1)
        self.bar: Progress | None = None
        self.task = None
        self.started = time.monotonic()
        self.last_line = 0
        self.total = 0

    def __enter__(self) -> SyncProgress:
        if self.out.is_terminal:
            self.bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TimeElapsedColumn(),
                console=self.out,
            )
            self.bar.__enter__()
            self.task = self.bar.add_task("reading legacy lists", total=None)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)

    def on_page(self, name: str, count: int) -> None:
        if self.bar is not None:
            self.bar.update(self.task, description=f"reading {name}: {count}")
        elif count and count % 10_000 == 0:
            self.out.print(f"read {count} {name} ...", highlight=False)

    def on_total(self, total: int) -> None:
        if self.bar is not None:
            self.bar.update(self.task, description="syncing customers", total=total, completed=0)
        else:
            took = time.monotonic() - self.started
            self.out.print(
                f"read the legacy lists in {took:.1f}s; syncing {total} customers",
                highlight=False,
            )
        self.total = total

    def on_customer(self, report) -> None:  # type: ignore[no-untyped-def]
        n = report.seen
        if self.bar is not None:
            self.bar.update(self.task, completed=n)
        elif n - self.last_line >= self.every or n == self.total:
            rate = n / max(time.monotonic() - self.started, 1e-6)
            self.out.print(
                f"synced {n}/{self.total} customers · created {report.created} "
                f"conflicts {len(report.conflicts)} · {rate:.0f} customers/s",
                highlight=False,
            )
            self.last_line = n


def users_sync(
    json: bool = typer.Option(False, "--json", help=JSON_HELP),
    every: int = typer.Option(
        1000, "--progress-every", min=1, help="without a terminal: a line every N customers"
    ),
) -> None:
    """Read every legacy customer with its billing shape and create/update routing rows.

    Account-wide list endpoints, 100 objects per page (not one set of lists per
    customer). Each route gets facets computed from the data (subscriptions, status,
    interval, trial, paused, scheduled cancel, dunning, discounts, tax, payment method,
    invoices, refunds, credit, renewal, complexity) and the preflight verdict.
    Idempotent. A customer that conflicts with the routing table is skipped and
    reported (exit code 1); the others are synced.

    Each legacy customer must carry the app's user id in its metadata under the key
    `app_user_id` (Stripe: customer.metadata["app_user_id"]); customers without it are
    skipped and counted — link those with `twinbill users import FILE.csv`.

    \b
    Examples:
      twinbill db upgrade && twinbill users sync
      twinbill users sync --json > sync.json
    """
    from migration.readiness import sync_legacy

    with cli_errors():
        ctx = mux_context()
        banner(settings=ctx.settings)
        require_schema(ctx.engine)
        with SyncProgress(err_console, every) as progress:
            report = sync_legacy(
                ctx,
                actor=ACTOR,
                on_page=progress.on_page,
                on_total=progress.on_total,
                on_customer=progress.on_customer,
            )
    if json:
        print_json(report.as_dict())
    else:
        console.print(
            f"created {report.created}, updated {report.updated}, refreshed "
            f"{report.refreshed}, unchanged {report.unchanged}, skipped "
            f"{len(report.skipped)} (no app_user_id), conflicts {len(report.conflicts)}, "
            f"unreadable {len(report.unreadable)}",
            highlight=False,
        )
        for c in report.conflicts:
            console.print(f"  [red]conflict[/] {c['customer_id']}: {c['reason']}", highlight=False)
        for u in report.unreadable:
            console.print(
                f"  [yellow]unreadable[/] {u['customer_id']} ({u['user_id']}): {u['problem']}",
                highlight=False,
            )
    if report.conflicts:
        raise typer.Exit(EXIT_FOUND)


@inventory.command("report")
def inventory_report(
    fmt: str = typer.Option("table", "--format", help="table | json | html"),
    output: Path | None = typer.Option(None, "--output", "-o", help="write to this file"),
) -> None:
    """What will go wrong if we start tomorrow: users per facet bucket, which migrate
    today, which preflight would defer and why, which carry unmapped features.

    Reads the routing table only (run `twinbill users sync` first); no legacy call.
    Exit code 1 when some users cannot migrate today.

    \b
    Examples:
      twinbill inventory report
      twinbill inventory report --format html -o readiness.html
    """
    from admin import inventory_render
    from core.db import utcnow
    from migration import readiness

    with cli_errors():
        if fmt not in inventory_render.FORMATS:
            raise InvalidInput(f"--format {fmt!r}: expected one of table, json, html")
        ctx = mux_context()
        require_schema(ctx.engine)
        with ctx.sessions() as session:
            report = readiness.build(readiness.legacy_rows(session), now=utcnow())
    if fmt == "table" and output is None:
        inventory_render.print_table(report, console)
    else:
        text = (
            inventory_render.render_html(report)
            if fmt == "html"
            else inventory_render.render_json(report)
            if fmt == "json"
            else _table_text(report)
        )
        if output is None:
            typer.echo(text, nl=False)
        else:
            output.write_text(text, encoding="utf-8")
            err_console.print(f"wrote {output}")
    if report.ready < report.users:
        raise typer.Exit(EXIT_FOUND)


def _table_text(report) -> str:  # type: ignore[no-untyped-def]
    import io

    from admin import inventory_render

    buffer = Console(record=True, width=140, file=io.StringIO())
    inventory_render.print_table(report, buffer)
    return buffer.export_text()
