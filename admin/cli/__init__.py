"""The ``twinbill`` command line: one Typer app, one module per command group.

Exit codes: 0 success / clean, 1 "found something" (differences, failures), 2 error.
"""

from __future__ import annotations

import typer

from admin.cli import db, inventory, migrate, reconcile, routes, sandbox, support

app = typer.Typer(
    name="twinbill",
    help="Move paying users from a legacy billing system to a new one, safely.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(db.app, name="db")
app.add_typer(sandbox.app, name="sandbox")
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
app.command("serve")(routes.serve)
app.add_typer(migrate.cohort, name="cohort")
app.command("migrate")(migrate.migrate)
app.command("demo")(migrate.demo)
app.command("reconcile")(reconcile.reconcile)
app.command("worker")(migrate.worker)
app.command("beat")(migrate.beat)


def main() -> None:
    from core.observability import configure_logging

    configure_logging()
    app()
