"""``twinbill users``, ``twinbill rollout``, ``twinbill tokens``, ``twinbill serve``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from admin.cli.common import cli_errors, console, print_json
from admin.cli.context import mux_context
from admin.cli.inventory import users_sync
from core.db import transaction

users = typer.Typer(help="The routing table: who lives where.", no_args_is_help=True)
rollout = typer.Typer(help="Placement of brand-new users.", no_args_is_help=True)
tokens = typer.Typer(help="Bearer tokens for the application's API calls.", no_args_is_help=True)

ACTOR = "cli"


users.command("sync")(users_sync)


@users.command("import")
def users_import(
    path: Path = typer.Argument(..., exists=True, dir_okay=False),
    json: bool = typer.Option(False, "--json"),
) -> None:
    """Link users to legacy customers from a CSV of user_id,legacy_customer_id."""
    from multiplexer.inventory import import_mapping, read_mapping_csv

    with cli_errors():
        rows = read_mapping_csv(path)
        ctx = mux_context()
        report = import_mapping(ctx.sessions, rows, actor=ACTOR, cache=ctx.cache)
    if json:
        print_json(report.as_dict())
    else:
        console.print(
            f"created {report.created}, updated {report.updated}, unchanged {report.unchanged}"
        )


@users.command("show")
def users_show(user_id: str, json: bool = typer.Option(False, "--json")) -> None:
    """Where a user lives, and the route's history."""
    from core.audit import history
    from core.errors import UnknownUser
    from multiplexer.models import Route

    with cli_errors():
        ctx = mux_context()
        with ctx.sessions() as session:
            route = session.get(Route, user_id)
            if route is None:
                raise UnknownUser(user_id)
            data = {
                "user_id": user_id,
                **route.snapshot(),
                "currency": route.currency,
                "history": [
                    {
                        "at": e.at.isoformat(),
                        "actor": e.actor,
                        "action": e.action,
                        "reason": e.reason,
                    }
                    for e in history(session, "route", user_id)
                ],
            }
    if json:
        print_json(data)
        return
    for key in (
        "user_id",
        "system",
        "state",
        "cohort",
        "legacy_customer_id",
        "new_customer_id",
        "currency",
        "version",
    ):
        console.print(f"[bold]{key}[/]: {data[key]}")
    for h in data["history"]:
        console.print(f"  {h['at']}  {h['action']:<24} {h['actor']:<16} {h['reason'] or ''}")


@rollout.command("set")
def rollout_set(
    new_users_percent: str | None = typer.Option(None, "--new-users-percent"),
    allow: str | None = typer.Option(None, "--allow", help="comma-separated user ids"),
    deny: str | None = typer.Option(None, "--deny", help="comma-separated user ids"),
    reason: str = typer.Option("", "--reason"),
) -> None:
    """Place this share of brand-new users on the new system (sticky per user id)."""
    from multiplexer.placement import set_policy

    def split(v: str | None) -> list[str] | None:
        return None if v is None else [x.strip() for x in v.split(",") if x.strip()]

    with cli_errors():
        ctx = mux_context()
        with transaction(ctx.sessions) as session:
            policy = set_policy(
                session,
                actor=ACTOR,
                new_users_percent=new_users_percent,
                allow=split(allow),
                deny=split(deny),
                reason=reason,
            )
            console.print(
                f"new users on the new system: {policy.new_users_bp / 100:.2f}% "
                f"(allow {len(policy.allow)}, deny {len(policy.deny)})"
            )


@rollout.command("show")
def rollout_show(json: bool = typer.Option(False, "--json")) -> None:
    from multiplexer.placement import load_policy

    with cli_errors():
        ctx = mux_context()
        with transaction(ctx.sessions) as session:
            p = load_policy(session)
            data = {"new_users_percent": p.new_users_bp / 100, "allow": p.allow, "deny": p.deny}
    print_json(data) if json else console.print(data)


@tokens.command("create")
def tokens_create(name: str) -> None:
    """Create a bearer token for the application; the secret is printed once."""
    from multiplexer.tokens import create_token

    with cli_errors():
        ctx = mux_context()
        with transaction(ctx.sessions) as session:
            secret = create_token(session, name, actor=ACTOR)
    console.print(f"token [bold]{name}[/] created; store it now, it is not shown again:")
    typer.echo(secret)


@tokens.command("list")
def tokens_list(json: bool = typer.Option(False, "--json")) -> None:
    from multiplexer.tokens import list_tokens

    with cli_errors():
        ctx = mux_context()
        with ctx.sessions() as session:
            rows = [
                {
                    "name": t.name,
                    "prefix": t.prefix,
                    "created_at": t.created_at,
                    "last_used_at": t.last_used_at,
                    "revoked": t.revoked_at is not None,
                }
                for t in list_tokens(session)
            ]
    if json:
        print_json(rows)
        return
    table = Table("name", "prefix", "created", "last used", "revoked")
    for r in rows:
        table.add_row(
            r["name"],
            r["prefix"],
            str(r["created_at"]),
            str(r["last_used_at"] or ""),
            "yes" if r["revoked"] else "",
        )
    console.print(table)


@tokens.command("revoke")
def tokens_revoke(name: str) -> None:
    from multiplexer.tokens import revoke_token

    with cli_errors():
        ctx = mux_context()
        with transaction(ctx.sessions) as session:
            revoke_token(session, name, actor=ACTOR)
    console.print(f"token {name} revoked")


def serve(host: str = typer.Option("127.0.0.1"), port: int = typer.Option(8000)) -> None:
    """Run the web app: admin UI, /api/v1 gateway, /webhooks/*."""
    import uvicorn

    from admin.app import create_app

    with cli_errors():
        root = mux_context()  # the process's one root: its Celery app publishes every task
        web = create_app(root)
    # log_config=None: uvicorn's loggers go through the process's JSON pipeline; its access
    # log is off (it logged query strings) — admin.access_log logs each request instead.
    # proxy_headers=False: uvicorn would believe X-Forwarded-For from any local peer;
    # the admin reads it only from TWINBILL_TRUSTED_PROXIES (admin/web/security.py).
    uvicorn.run(web, host=host, port=port, proxy_headers=False, log_config=None, access_log=False)
