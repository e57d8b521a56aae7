"""``twinbill users``, ``twinbill rollout``, ``twinbill tokens``, ``twinbill serve``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from admin.cli.common import (
    JSON_HELP,
    cli_errors,
    console,
    group,
    iso,
    print_json,
    require_schema,
)
from admin.cli.context import mux_context
from admin.cli.guard import banner
from admin.cli.inventory import users_sync
from core.db import transaction

users = group(
    "The routing table: who lives where (legacy or new), and how to find them.",
    epilog=(
        "A legacy customer belongs to the app user named in its metadata key `app_user_id` "
        "(or a CSV row of `users import`)."
    ),
)
rollout = group("Placement of brand-new users (which system a new sign-up lands on).")
tokens = group("Bearer tokens for the application's API calls (/api/v1).")
JSON = typer.Option(False, "--json", help=JSON_HELP)

ACTOR = "cli"


users.command("sync")(users_sync)


@users.command("import")
def users_import(
    path: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="CSV with a header row user_id,legacy_customer_id"
    ),
    json: bool = JSON,
) -> None:
    """Link users to legacy customers from a CSV of user_id,legacy_customer_id.

    For customers without `app_user_id` in their metadata.

    \b
    Example:
      printf 'user_id,legacy_customer_id\\nu_42,cus_Nq8...\\n' > map.csv
      twinbill users import map.csv
    """
    from multiplexer.inventory import import_mapping, read_mapping_csv

    with cli_errors():
        rows = read_mapping_csv(path)
        ctx = mux_context()
        banner(with_legacy=False, settings=ctx.settings)
        require_schema(ctx.engine)
        report = import_mapping(ctx.sessions, rows, actor=ACTOR, cache=ctx.cache)
    if json:
        print_json(report.as_dict())
    else:
        console.print(
            f"created {report.created}, updated {report.updated}, unchanged {report.unchanged}"
        )


@users.command("show")
def users_show(user_id: str = typer.Argument(..., help="app user id"), json: bool = JSON) -> None:
    """Where a user lives, and the route's history.

    \b
    Examples:
      twinbill users show u_42
      twinbill users show u_42 --json
    """
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
                        "at": iso(e.at),
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
        value = data[key]
        shown = "—" if value in (None, "") else value
        if key == "cohort" and value is None:
            shown = "— (in no cohort)"
        console.print(f"[bold]{key}[/]: {shown}", highlight=False)
    for h in data["history"]:
        console.print(f"  {h['at']}  {h['action']:<24} {h['actor']:<16} {h['reason'] or ''}")


@rollout.command("set")
def rollout_set(
    new_users_percent: str | None = typer.Option(
        None, "--new-users-percent", help="0-100, e.g. 12.5 (raising it never moves users back)"
    ),
    allow: str | None = typer.Option(
        None, "--allow", help="comma-separated user ids always placed on the new system"
    ),
    deny: str | None = typer.Option(
        None, "--deny", help="comma-separated user ids always placed on legacy"
    ),
    reason: str = typer.Option("", "--reason", help="why, for the activity log"),
) -> None:
    """Place this share of brand-new users on the new system (sticky per user id).

    \b
    Examples:
      twinbill rollout set --new-users-percent 5 --reason "week 1"
      twinbill rollout set --allow u_qa1,u_qa2
    """
    from multiplexer.placement import set_policy

    def split(v: str | None) -> list[str] | None:
        return None if v is None else [x.strip() for x in v.split(",") if x.strip()]

    with cli_errors():
        ctx = mux_context()
        banner(with_legacy=False, settings=ctx.settings)
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
def rollout_show(json: bool = JSON) -> None:
    """The current placement policy for brand-new users.

    \b
    Example:
      twinbill rollout show --json
    """
    from multiplexer.placement import load_policy

    with cli_errors():
        ctx = mux_context()
        with transaction(ctx.sessions) as session:
            p = load_policy(session)
            data = {"new_users_percent": p.new_users_bp / 100, "allow": p.allow, "deny": p.deny}
    if json:
        print_json(data)
        return
    console.print(f"new users on the new system: {data['new_users_percent']:.2f}%")
    console.print("always new (allow): " + (", ".join(data["allow"]) or "—"), highlight=False)
    console.print("always legacy (deny): " + (", ".join(data["deny"]) or "—"), highlight=False)


@tokens.command("create")
def tokens_create(name: str = typer.Argument(..., help="who uses it, e.g. app-prod")) -> None:
    """Create a bearer token for the application; the secret is printed once.

    \b
    Example:
      twinbill tokens create app-prod
    """
    from multiplexer.tokens import create_token

    with cli_errors():
        ctx = mux_context()
        banner(with_legacy=False, settings=ctx.settings)
        with transaction(ctx.sessions) as session:
            secret = create_token(session, name, actor=ACTOR)
    console.print(f"token [bold]{name}[/] created; store it now, it is not shown again:")
    typer.echo(secret)


@tokens.command("list")
def tokens_list(json: bool = JSON) -> None:
    """Tokens with their prefix, creation and last use (never the secret).

    \b
    Example:
      twinbill tokens list --json
    """
    from multiplexer.tokens import list_tokens

    with cli_errors():
        ctx = mux_context()
        with ctx.sessions() as session:
            rows = [
                {
                    "name": t.name,
                    "prefix": t.prefix,
                    "created_at": iso(t.created_at),
                    "last_used_at": iso(t.last_used_at),
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
            r["created_at"] or "",
            r["last_used_at"] or "",
            "yes" if r["revoked"] else "",
        )
    console.print(table)


@tokens.command("revoke")
def tokens_revoke(name: str = typer.Argument(..., help="token name (see `tokens list`)")) -> None:
    """Revoke a token: the application's calls with it are refused from now on.

    \b
    Example:
      twinbill tokens revoke app-old
    """
    from multiplexer.tokens import revoke_token

    with cli_errors():
        ctx = mux_context()
        banner(with_legacy=False, settings=ctx.settings)
        with transaction(ctx.sessions) as session:
            revoke_token(session, name, actor=ACTOR)
    console.print(f"token {name} revoked")


def serve(
    host: str = typer.Option("127.0.0.1", help="address to bind (0.0.0.0 in a container)"),
    port: int = typer.Option(8000, help="TCP port"),
) -> None:
    """Run the web app: admin UI, /api/v1 gateway, /webhooks/*, /metrics.

    Needs TWINBILL_SECRET_KEY.

    \b
    Example:
      TWINBILL_SECRET_KEY=... twinbill serve --host 0.0.0.0 --port 8000
    """
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
