"""Support actions on the command line (parity with the admin UI); every read has ``--json``.

``twinbill users find|index-invoices``, ``twinbill payments record-offline|list-offline``,
``twinbill refunds record-offline``, ``twinbill audit show``,
``twinbill admin create-user``. Money-changing commands print what they will
write where and ask first (``--yes`` skips the question, for scripts).
"""

from __future__ import annotations

import getpass
import os
import sys
from datetime import date, timedelta
from typing import Any

import sqlalchemy as sa
import typer
from rich.table import Table

from admin.cli.common import EXIT_ERROR, EXIT_FOUND, cli_errors, console, err_console, print_json
from admin.cli.context import mux_context

payments = typer.Typer(help="Offline payments (bank transfers).", no_args_is_help=True)
refunds = typer.Typer(help="Offline refunds.", no_args_is_help=True)
audit_app = typer.Typer(help="The activity log.", no_args_is_help=True)
admin_app = typer.Typer(help="Admin UI accounts.", no_args_is_help=True)


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def users_find(
    query: str,
    json: bool = typer.Option(False, "--json"),
    after: str | None = typer.Option(None, "--after", help="next page cursor"),
    limit: int = typer.Option(25, "--limit", min=1, max=500),
) -> None:
    """Find users by email, name, app user id, legacy/new customer id or invoice number."""
    from admin.web.search import search

    with cli_errors():
        ctx = mux_context()
        with ctx.sessions() as session:
            result = search(session, query, after=after, limit=limit)
    rows = [_hit(h) for h in result.hits]
    if json:
        print_json({"query": result.query, "users": rows, "next_after": result.next_after})
        return
    table = Table("user", "email", "name", "system", "state", "legacy id", "new id")
    for r in rows:
        table.add_row(
            r["user_id"],
            r["email"] or "",
            r["name"] or "",
            r["system"],
            r["state"],
            r["legacy_customer_id"] or "",
            r["new_customer_id"] or "",
        )
    console.print(table)
    if result.next_after:
        console.print(f"more: --after {result.next_after}")


def users_index_invoices(
    user: str | None = typer.Option(None, "--user", help="one app user id"),
    all_users: bool = typer.Option(False, "--all", help="every user in the routing table"),
    json: bool = typer.Option(False, "--json"),
) -> None:
    """Backfill the invoice-number search index from both billing systems (idempotent).

    Legacy invoices are listed through the legacy backend under the shared rate limit;
    users on the new system are read from their bundle. Exit 1 if some user failed.
    """
    from multiplexer.search_index import backfill

    if (user is None) == (not all_users):
        err_console.print("[bold red]error[/]: choose --user ID or --all")
        raise typer.Exit(EXIT_ERROR)
    with cli_errors():
        ctx = mux_context()
        result = backfill(ctx.sessions, ctx.legacy, ctx.new, user_id=user)
    if json:
        print_json(result.as_dict())
    else:
        console.print(f"indexed {result.numbers} invoice numbers of {result.users} users")
        for uid, error in sorted(result.failed.items()):
            err_console.print(f"[bold red]failed[/] {uid}: {error}", highlight=False)
    if result.failed:
        raise typer.Exit(EXIT_FOUND)


def _hit(h: Any) -> dict[str, Any]:
    return {k: getattr(h, k) for k in h.__slots__}


def _record(
    kind: str,
    user_id: str,
    amount: str,
    currency: str | None,
    reference: str,
    on: str | None,
    reason: str | None,
    yes: bool,
    json: bool,
) -> None:
    from admin.web.offline import DraftErrors, build_draft, record, refusal

    with cli_errors():
        ctx = mux_context()
        try:
            draft = build_draft(
                ctx,
                kind,
                user_id,
                amount=amount,
                currency=currency,
                reference=reference,
                on=on,
                reason=reason,
            )
        except DraftErrors as exc:
            for field, message in exc.errors.items():
                err_console.print(f"[bold red]{field}[/]: {message}")
            err_console.print("nothing was written")
            raise typer.Exit(EXIT_ERROR) from None
        except Exception as exc:
            from core.errors import TwinbillError

            if isinstance(exc, TwinbillError):
                err_console.print(f"[bold red]refused[/]: {refusal(exc)}")
                raise typer.Exit(EXIT_ERROR) from None
            raise
        console.print(f"This {draft.sentence()}.", highlight=False)
        if not yes:
            if not sys.stdin.isatty():
                err_console.print("not a terminal: pass --yes to confirm; nothing was written")
                raise typer.Exit(EXIT_ERROR)
            if not typer.confirm("Record it?", default=False):
                err_console.print("aborted; nothing was written")
                raise typer.Exit(EXIT_ERROR)
        done = record(ctx, draft, actor=_actor())
    data = {**draft.as_dict(), "record_id": done.record_id, "duplicate": done.duplicate}
    if json:
        print_json(data)
    else:
        what = "already recorded earlier as" if done.duplicate else "recorded as"
        console.print(f"{what} {done.record_id} in the {done.system} system")


@payments.command("record-offline")
def payments_record(
    user_id: str,
    amount: str = typer.Option(..., "--amount", help='as typed, e.g. "12.50"'),
    currency: str | None = typer.Option(None, "--currency"),
    reference: str = typer.Option("", "--reference", help="bank transaction id"),
    on: str | None = typer.Option(None, "--date", help="YYYY-MM-DD (default today)"),
    reason: str | None = typer.Option(None, "--reason"),
    yes: bool = typer.Option(False, "--yes", help="do not ask for confirmation"),
    json: bool = typer.Option(False, "--json"),
) -> None:
    """Record a payment made outside the billing system (idempotent per user + reference)."""
    _record("payment", user_id, amount, currency, reference, on, reason, yes, json)


@refunds.command("record-offline")
def refunds_record(
    user_id: str,
    amount: str = typer.Option(..., "--amount"),
    currency: str | None = typer.Option(None, "--currency"),
    reference: str = typer.Option("", "--reference"),
    on: str | None = typer.Option(None, "--date"),
    reason: str | None = typer.Option(None, "--reason"),
    yes: bool = typer.Option(False, "--yes"),
    json: bool = typer.Option(False, "--json"),
) -> None:
    """Record a refund paid outside the billing system (idempotent per user + reference)."""
    _record("refund", user_id, amount, currency, reference, on, reason, yes, json)


@payments.command("list-offline")
def payments_list(
    start: str | None = typer.Option(None, "--from", help="YYYY-MM-DD (default 30 days ago)"),
    end: str | None = typer.Option(None, "--to", help="YYYY-MM-DD (default today)"),
    csv_out: bool = typer.Option(False, "--csv"),
    json: bool = typer.Option(False, "--json"),
) -> None:
    """Offline payments and refunds recorded in a date range."""
    import csv

    from admin.web.offline import list_offline
    from admin.web.views_finance import CSV_FIELDS

    with cli_errors():
        try:
            lo = date.fromisoformat(start) if start else date.today() - timedelta(days=30)
            hi = date.fromisoformat(end) if end else date.today()
        except ValueError:
            err_console.print("[bold red]error[/]: dates must look like 2026-11-20")
            raise typer.Exit(EXIT_ERROR) from None
        ctx = mux_context()
        with ctx.sessions() as session:
            rows = [r.as_dict() for r in list_offline(session, lo, hi)]
    if csv_out:
        writer = csv.DictWriter(sys.stdout, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    elif json:
        print_json(rows)
    else:
        table = Table(*CSV_FIELDS[:8])
        for r in rows:
            table.add_row(*(str(r[k]) for k in CSV_FIELDS[:8]))
        console.print(table)


@audit_app.command("show")
def audit_show(
    resource: str | None = typer.Option(None, "--resource", help="TYPE:ID, e.g. route:u_1"),
    limit: int = typer.Option(50, "--limit", min=1, max=10_000),
    json: bool = typer.Option(False, "--json"),
) -> None:
    """The activity log (newest first), optionally for one resource, with before/after."""
    from admin.web.filters import version_diff
    from core.audit import AuditEntry

    with cli_errors():
        ctx = mux_context()
        stmt = sa.select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
        if resource:
            kind, _, rid = resource.partition(":")
            stmt = stmt.where(AuditEntry.resource_type == kind, AuditEntry.resource_id == rid)
        with ctx.sessions() as session:
            entries = list(session.scalars(stmt))
    if json:
        print_json(
            [
                {
                    "id": e.id,
                    "at": e.at,
                    "actor": e.actor,
                    "action": e.action,
                    "resource": f"{e.resource_type}:{e.resource_id}",
                    "reason": e.reason,
                    "before": e.before,
                    "after": e.after,
                }
                for e in entries
            ]
        )
        return
    for e in entries:
        console.print(
            f"[bold]{e.at:%Y-%m-%d %H:%M:%S}[/] {e.action} {e.resource_type}:"
            f"{e.resource_id} by {e.actor}" + (f" — {e.reason}" if e.reason else ""),
            highlight=False,
        )
        for sign, text in version_diff(e.before, e.after):
            if sign != " ":
                console.print(
                    f"    [{'red' if sign == '-' else 'green'}]{sign} {text}[/]", highlight=False
                )


@admin_app.command("create-user")
def create_user_cmd(
    email: str,
    role: str = typer.Option(..., "--role", help="support | finance | developer | admin"),
) -> None:
    """Create an admin UI account. The password comes from TWINBILL_ADMIN_PASSWORD or a prompt."""
    from admin.web.auth import create_user, mask_email

    password = os.environ.get("TWINBILL_ADMIN_PASSWORD") or ""
    if not password:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    with cli_errors():
        ctx = mux_context()
        create_user(ctx.sessions, email, role, password, actor=_actor())
    console.print(f"admin user {mask_email(email.strip().lower())} created with role {role}")
