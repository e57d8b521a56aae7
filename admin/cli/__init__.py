"""The ``twinbill`` command line: one Typer app, one module per command group.

Exit codes (see ``admin/cli/common.py``): 0 all good; 1 something needs a human
(failed or halted users, differences; a crash, one line naming its traceback file);
2 usage or configuration error, one line naming the fix. ``--json`` prints one JSON
document and nothing else, errors too.
"""

from __future__ import annotations

import typer

from admin.cli import (
    cohort,
    db,
    inventory,
    legacy,
    migrate,
    reconcile,
    rollback,
    routes,
    sandbox,
    shadow,
    support,
    webhooks,
)
from admin.cli.common import TwinbillGroup


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"twinbill {version('twinbill')}")
        raise typer.Exit()


app = typer.Typer(
    cls=TwinbillGroup,
    name="twinbill",
    help="Move paying users from a legacy billing system to a new one, safely.",
    epilog=(
        "Exit codes: 0 all good, 1 something needs a human (a crash too), "
        "2 usage or configuration error. "
        "Start with `twinbill demo`, or `twinbill db upgrade` then `twinbill users sync`."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="print the version and exit"
    ),
) -> None:
    """Move paying users from a legacy billing system to a new one, safely."""


app.add_typer(db.app, name="db")
app.add_typer(sandbox.app, name="sandbox")
app.add_typer(legacy.app, name="legacy")
routes.users.command("find")(support.users_find)
routes.users.command("index-invoices")(support.users_index_invoices)
app.add_typer(routes.users, name="users")
app.add_typer(inventory.inventory, name="inventory")
app.add_typer(support.payments, name="payments")
app.add_typer(support.refunds, name="refunds")
app.add_typer(support.audit_app, name="audit")
app.add_typer(support.admin_app, name="admin")
app.add_typer(routes.rollout, name="rollout")
app.add_typer(routes.tokens, name="tokens")
app.add_typer(webhooks.app, name="webhooks")
app.command("serve")(routes.serve)
cohort.cohort.command("shadow")(shadow.cohort_shadow)
cohort.cohort.command("shadow-report")(shadow.cohort_shadow_report)
cohort.cohort.command("shadow-stop")(shadow.cohort_shadow_stop)
app.add_typer(cohort.cohort, name="cohort")
app.command("migrate")(migrate.migrate)
app.command("rollback")(rollback.rollback)
app.command("demo")(migrate.demo)
app.command("reconcile")(reconcile.reconcile)
app.command("worker")(migrate.worker)
app.command("beat")(migrate.beat)


def main() -> None:
    from core.observability import configure_logging

    configure_logging()
    app()
