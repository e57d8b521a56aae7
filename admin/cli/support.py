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

from admin.cli.common import (
    EXIT_ERROR,
    EXIT_FOUND,
    JSON_HELP,
    cli_errors,
    console,
    err_console,
    fail,
    group,
    iso,
    json_requested,
    print_json,
)
from admin.cli.context import mux_context
from admin.cli.guard import YES_HELP, banner, confirm
from core.db import utcnow
from core.errors import TwinbillError

payments = group("Offline payments (bank transfers): record, list.")
refunds = group("Offline refunds: record.")
audit_app = group("The activity log: who changed what, with before/after.")
admin_app = group("Admin UI accounts.")


USER = typer.Argument(..., help="app user id (see `twinbill users find`)")
AMOUNT = typer.Option(..., "--amount", help='major units as typed, e.g. "12.50" or "1200" (JPY)')
CURRENCY = typer.Option(None, "--currency", help="ISO 4217, default the user's currency")
REFERENCE = typer.Option("", "--reference", help="bank transaction id (required; the dedup key)")
ON = typer.Option(None, "--date", help="YYYY-MM-DD the money moved (default today, UTC)")
REASON = typer.Option(None, "--reason", help="why, for the activity log")


def _iso_row(row: dict[str, Any]) -> dict[str, Any]:
    from datetime import datetime

    if row.get("recorded_at"):
        row["recorded_at"] = iso(datetime.fromisoformat(str(row["recorded_at"])))
    return row


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def users_find(
    query: str = typer.Argument(..., help="email, name, user id, customer id or invoice number"),
    json: bool = typer.Option(False, "--json", help=JSON_HELP),
    after: str | None = typer.Option(None, "--after", help="next page cursor"),
    limit: int = typer.Option(25, "--limit", min=1, max=500, help="users per page"),
) -> None:
    """Find users by email, name, app user id, legacy/new customer id or invoice number.

    \b
    Examples:
      twinbill users find alice@example.com
      twinbill users find in_1Nq... --json
    """
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
    json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Backfill the invoice-number search index from both billing systems (idempotent).

    Legacy invoices are listed through the legacy backend under the shared rate limit;
    users on the new system are read from their bundle. Exit 1 if some user failed.

    \b
    Examples:
      twinbill users index-invoices --all
      twinbill users index-invoices --user u_42 --json
    """
    from multiplexer.search_index import backfill

    if (user is None) == (not all_users):
        raise fail("choose --user ID or --all", "e.g. `twinbill users index-invoices --all`")
    with cli_errors():
        ctx = mux_context()
        banner(settings=ctx.settings)
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
            if json_requested():
                print_json({"error": {"kind": "input", "fields": exc.errors, "written": False}})
            else:
                for field, message in exc.errors.items():
                    err_console.print(f"[bold red]{field}[/]: {message}")
                err_console.print("nothing was written")
            raise typer.Exit(EXIT_ERROR) from None
        except TwinbillError as exc:
            raise fail(f"refused: {refusal(exc)}", "nothing was written") from None
        banner(with_legacy=draft.system == "legacy", settings=ctx.settings)
        confirm(f"This {draft.sentence()}.", yes=yes, nothing="nothing was written")
        done = record(ctx, draft, actor=_actor())
    data = {**draft.as_dict(), "record_id": done.record_id, "duplicate": done.duplicate}
    if json:
        print_json(data)
    else:
        what = "already recorded earlier as" if done.duplicate else "recorded as"
        console.print(f"{what} {done.record_id} in the {done.system} system")


@payments.command("record-offline")
def payments_record(
    user_id: str = USER,
    amount: str = AMOUNT,
    currency: str | None = CURRENCY,
    reference: str = REFERENCE,
    on: str | None = ON,
    reason: str | None = REASON,
    yes: bool = typer.Option(False, "--yes", "-y", help=YES_HELP),
    json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Record a payment made outside the billing system (idempotent per user + reference).

    Shows what will be written in which system and asks; `--yes` for scripts.

    \b
    Examples:
      twinbill payments record-offline u_42 --amount 12.50 --currency EUR --reference BANK-123
      twinbill payments record-offline u_42 --amount 1200 --reference TX9 --yes --json
    """
    _record("payment", user_id, amount, currency, reference, on, reason, yes, json)


@refunds.command("record-offline")
def refunds_record(
    user_id: str = USER,
    amount: str = AMOUNT,
    currency: str | None = CURRENCY,
    reference: str = REFERENCE,
    on: str | None = ON,
    reason: str | None = REASON,
    yes: bool = typer.Option(False, "--yes", "-y", help=YES_HELP),
    json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Record a refund paid outside the billing system (idempotent per user + reference).

    \b
    Example:
      twinbill refunds record-offline u_42 --amount 5 --currency EUR --reference BANK-124 \\
          --reason "double transfer"
    """
    _record("refund", user_id, amount, currency, reference, on, reason, yes, json)


@payments.command("list-offline")
def payments_list(
    start: str | None = typer.Option(None, "--from", help="YYYY-MM-DD (default 30 days ago)"),
    end: str | None = typer.Option(None, "--to", help="YYYY-MM-DD (default today, UTC)"),
    csv_out: bool = typer.Option(False, "--csv", help="CSV for a spreadsheet (finance export)"),
    json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Offline payments and refunds recorded in a date range.

    \b
    Examples:
      twinbill payments list-offline --from 2026-11-01 --to 2026-11-30 --csv > nov.csv
      twinbill payments list-offline --json
    """
    import csv

    from admin.web.offline import list_offline
    from admin.web.views_finance import CSV_FIELDS

    with cli_errors():
        try:
            today = utcnow().date()
            lo = date.fromisoformat(start) if start else today - timedelta(days=30)
            hi = date.fromisoformat(end) if end else today
        except ValueError:
            raise fail("--from/--to must be dates", "write them like 2026-11-20") from None
        ctx = mux_context()
        with ctx.sessions() as session:
            rows = [_iso_row(r.as_dict()) for r in list_offline(session, lo, hi)]
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
    limit: int = typer.Option(50, "--limit", min=1, max=10_000, help="newest N entries"),
    json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """The activity log (newest first), optionally for one resource, with before/after.

    \b
    Examples:
      twinbill audit show --resource route:u_42
      twinbill audit show --limit 200 --json
    """
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
                    "at": iso(e.at),
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
            f"[bold]{iso(e.at)}[/] {e.action} {e.resource_type}:"
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
    email: str = typer.Argument(..., help="the person's email (their login)"),
    role: str = typer.Option(..., "--role", help="support | finance | developer | admin"),
) -> None:
    """Create an admin UI account. The password comes from TWINBILL_ADMIN_PASSWORD or a prompt.

    \b
    Example:
      twinbill admin create-user ops@example.com --role admin
    """
    from admin.web.auth import create_user, mask_email

    password = os.environ.get("TWINBILL_ADMIN_PASSWORD") or ""
    if not password:
        from admin.cli.guard import stdin_is_tty

        if not stdin_is_tty():
            raise fail("no password: not a terminal", "set TWINBILL_ADMIN_PASSWORD")
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    with cli_errors():
        ctx = mux_context()
        banner(with_legacy=False, settings=ctx.settings)
        create_user(ctx.sessions, email, role, password, actor=_actor())
    console.print(f"admin user {mask_email(email.strip().lower())} created with role {role}")
