"""``twinbill webhooks tail|retry-dead``: events delivered to the application (the outbox)."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
import typer

from admin.cli.common import JSON_HELP, console, err_console, fail, group, iso, print_json
from admin.cli.context import mux_context
from admin.cli.guard import YES_HELP, banner, confirm

app = group("Billing events delivered to the application (outbox, dead letters).")


def _row(m: Any) -> dict[str, Any]:
    return {
        "id": m.id,
        "event_id": m.event_id,
        "user_id": m.user_id,
        "type": m.type,
        "status": m.status,
        "attempts": m.attempts,
        "created_at": iso(m.created_at),
        "delivered_at": iso(m.delivered_at),
        "next_attempt_at": iso(m.next_attempt_at),
        "last_error": m.last_error,
    }


def _line(r: dict[str, Any]) -> str:
    colour = {"delivered": "green", "dead": "red"}.get(r["status"], "yellow")
    error = f" — {r['last_error']}" if r["last_error"] and r["status"] != "delivered" else ""
    return (
        f"{r['created_at']} #{r['id']} [{colour}]{r['status']:<9}[/] {r['type']:<28} "
        f"{r['user_id']} (attempts {r['attempts']}){error}"
    )


@app.command("tail")
def tail(
    limit: int = typer.Option(20, "--limit", "-n", min=1, max=1000, help="last N messages"),
    status: str | None = typer.Option(
        None, "--status", help="only pending | delivered | dead messages"
    ),
    user: str | None = typer.Option(None, "--user", help="only this app user id"),
    follow: bool = typer.Option(False, "--follow", "-f", help="keep printing new messages"),
    interval: float = typer.Option(2.0, "--interval", min=0.1, help="seconds between polls"),
    json: bool = typer.Option(False, "--json", help=JSON_HELP + "; with --follow, one per line"),
) -> None:
    """The newest outbox messages (events for the application), oldest first.

    \b
    Examples:
      twinbill webhooks tail -n 50
      twinbill webhooks tail --status dead --json
      twinbill webhooks tail --user u_42 --follow
    """
    import json as jsonlib

    from multiplexer.models import OutboxMessage

    if status is not None and status not in ("pending", "delivered", "dead"):
        raise fail(f"--status {status!r} is not a message status", "use pending, delivered or dead")
    ctx = mux_context()

    def query(after: int | None) -> list[dict[str, Any]]:
        stmt = sa.select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(limit)
        if status:
            stmt = stmt.where(OutboxMessage.status == status)
        if user:
            stmt = stmt.where(OutboxMessage.user_id == user)
        if after is not None:
            stmt = stmt.where(OutboxMessage.id > after)
        with ctx.sessions() as session:
            return [_row(m) for m in reversed(list(session.scalars(stmt)))]

    rows = query(None)
    if json and not follow:
        print_json(rows)
        return
    last = None
    while True:
        for r in rows:
            if json:
                typer.echo(jsonlib.dumps(r, sort_keys=True))
            else:
                console.print(_line(r), highlight=False, soft_wrap=True)
            last = r["id"]
        if not follow:
            return
        try:
            time.sleep(interval)
        except KeyboardInterrupt:  # Ctrl-C ends a --follow: not an error
            return
        rows = query(last if last is not None else 0)


@app.command("retry-dead")
def retry_dead(
    message_ids: list[int] = typer.Argument(
        None, help="outbox message ids (see `tail --status dead`)"
    ),
    all_dead: bool = typer.Option(False, "--all", help="every dead message"),
    reason: str = typer.Option("retry dead webhook delivery", "--reason", help="for the audit log"),
    yes: bool = typer.Option(False, "--yes", "-y", help=YES_HELP),
    json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Put dead messages back at the head of their user's stream (audited).

    The next outbox sweep (`twinbill beat`) delivers them, in order, before the
    messages that waited behind them.

    \b
    Examples:
      twinbill webhooks retry-dead 812 813 --yes
      twinbill webhooks retry-dead --all --reason "app endpoint fixed" --yes
    """
    import getpass

    from core.db import transaction
    from multiplexer.webhooks import outbox

    ids = list(message_ids or [])
    if bool(ids) == all_dead:
        raise fail("choose message ids or --all", "e.g. `twinbill webhooks retry-dead 812 --yes`")
    ctx = mux_context()
    banner(with_legacy=False, settings=ctx.settings)
    if all_dead:
        with ctx.sessions() as session:
            ids = [m.id for m in outbox.dead_letters(session, limit=10_000)]
    if not ids:
        print_json({"retried": []}) if json else console.print("no dead messages")
        return
    shown = ", ".join(f"#{i}" for i in ids[:10]) + (" …" if len(ids) > 10 else "")
    confirm(f"will retry {len(ids)} dead message(s): {shown}", yes=yes, nothing="nothing retried")
    actor = f"cli:{getpass.getuser()}"
    with transaction(ctx.sessions) as session:
        retried = [outbox.retry_dead(session, i, actor=actor, reason=reason).id for i in ids]
    if json:
        print_json({"retried": retried})
    else:
        err_console.print("delivered by the next outbox sweep (twinbill beat)")
        console.print(f"retried {len(retried)} message(s): " + ", ".join(f"#{i}" for i in retried))
