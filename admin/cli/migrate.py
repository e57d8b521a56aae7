"""``twinbill migrate``, ``twinbill demo``, ``twinbill worker``, ``twinbill beat``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from admin.cli.common import (
    EXIT_ERROR,
    EXIT_FOUND,
    JSON_HELP,
    console,
    err_console,
    iso,
    print_json,
)
from admin.cli.guard import YES_HELP, banner, confirm, count_legacy_subscriptions, plan_sentence

ACTOR = "cli"


def _root():  # type: ignore[no-untyped-def]
    from admin.cli.context import app_root

    return app_root()


def _deps():  # type: ignore[no-untyped-def]
    return _root().saga


def detail_text(detail: Any, width: int = 120) -> str:
    """A step's detail as ``key=value`` pairs; nested values summarised, never a cut repr."""
    if not detail:
        return ""
    if not isinstance(detail, dict):
        return str(detail)
    parts = []
    for k, v in detail.items():
        if isinstance(v, dict):
            v = f"{{{len(v)} fields}}"
        elif isinstance(v, list | tuple):
            v = f"[{len(v)} items]"
        parts.append(f"{k}={v}")
    text = ", ".join(parts)
    return text if len(text) <= width else text[: width - 1].rsplit(", ", 1)[0] + ", …"


def _steps(migration_id: str) -> list[dict[str, Any]]:
    from migration.records import steps_of

    with _deps().sessions() as session:
        return [
            {
                "step": r.step,
                "attempt": r.attempt,
                "outcome": r.outcome,
                "started_at": iso(r.started_at),
                "finished_at": iso(r.finished_at),
                "seconds": (
                    round((r.finished_at - r.started_at).total_seconds(), 3)
                    if r.finished_at
                    else None
                ),
                "error_kind": r.error_kind,
                "error": r.error_message,
                "detail": r.detail,
            }
            for r in steps_of(session, migration_id)
        ]


def _print_steps(migration_id: str, rows: list[dict[str, Any]]) -> None:
    table = Table("step", "try", "outcome", "took", "detail / error", title=migration_id)
    for r in rows:
        took = f"{r['seconds']:.2f}s" if r["seconds"] is not None else "…"
        colour = {"ok": "green", "error": "red", "deferred": "yellow"}.get(r["outcome"], "white")
        text = r["error"] or detail_text(r["detail"])
        table.add_row(r["step"], str(r["attempt"]), f"[{colour}]{r['outcome']}[/]", took, text)
    console.print(table)


def migrate(
    user_id: str = typer.Argument(..., help="app user id (see `twinbill users find`)"),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="fetch, transform, import, then discard; cancels nothing"
    ),
    resume: bool = typer.Option(
        False, "--resume", help="continue a migration that failed after the legacy cancel"
    ),
    include_in_flight: bool = typer.Option(
        False, "--include-in-flight", help="move the user even with open invoices"
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help=YES_HELP),
    json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Migrate one user synchronously and print every saga step.

    Cancels the user's legacy subscriptions (asks first; `--yes` for scripts).
    Exit 0 migrated, 1 failed/compensated/deferred (see the steps), 2 bad input.

    \b
    Examples:
      twinbill migrate u_42 --dry-run
      twinbill migrate u_42 --yes --json
      twinbill migrate u_42 --resume --yes     # after fixing a post-pivot failure
    """
    from core.errors import UnknownUser
    from migration import services
    from multiplexer.models import Route

    deps = _deps()
    with deps.sessions() as session:
        route = session.get(Route, user_id)
        if route is None:
            raise UnknownUser(user_id)  # before anything is written
        session.expunge(route)
    env = banner(deps.legacy, settings=_root().settings)
    if not dry_run:
        n_subs = None if resume else count_legacy_subscriptions(deps.legacy, [route])
        sentence = plan_sentence(1, n_subs, env, dry_run=False)
        if resume:
            sentence = f"will resume the failed migration of {user_id} after the legacy cancel"
        confirm(sentence, yes=yes)
    mig = (
        services.resume_user(deps, user_id)
        if resume
        else services.migrate_user(
            deps, user_id, dry_run=dry_run, include_in_flight=include_in_flight
        )
    )
    steps = _steps(mig.id)
    if json:
        print_json(
            {
                "migration_id": mig.id,
                "user_id": mig.user_id,
                "status": mig.status,
                "dry_run": mig.dry_run,
                "step": mig.step,
                "error_kind": mig.error_kind,
                "error": mig.error_message,
                "deferred": mig.defer_reason,
                "steps": steps,
            }
        )
    else:
        _print_steps(mig.id, steps)
        console.print(
            f"[bold]{user_id}[/]: {mig.status}"
            + (f" — {mig.error_kind}: {mig.error_message}" if mig.error_message else "")
            + (f" — deferred: {mig.defer_reason}" if mig.defer_reason else ""),
            highlight=False,
        )
    if mig.status in ("failed", "compensated", "deferred", "running"):
        raise typer.Exit(EXIT_FOUND)


def demo(
    users: int = typer.Option(60, "--users", min=13, max=2000, help="population to seed"),
    seed: int = typer.Option(7, "--seed", help="population seed (same seed, same users)"),
    inject_bug: str | None = typer.Option(
        None,
        "--inject-bug",
        help="timestamp | zero-decimal | drop-refund | cancel-flag | credit-sign | trial-state"
        " | tax-rate (the last three are stopped at prove, before the legacy cancel)",
    ),
    include_in_flight: bool = typer.Option(
        False, "--include-in-flight", help="also move users with open invoices"
    ),
    workdir: Path = typer.Option(
        Path(".twinbill-demo"), "--workdir", help="scratch folder (wiped first)"
    ),
    rollback: bool = typer.Option(
        False, "--rollback", help="end by rolling the last cohort back to legacy, verified"
    ),
) -> None:
    """Seed a sandbox, migrate it in growing cohorts, reconcile; exit 0 when nothing is lost.

    Runs on SQLite with an in-process worker; needs nothing installed.

    \b
    Examples:
      twinbill demo
      twinbill demo --users 200 --inject-bug zero-decimal   # watch the reconciler catch it
      twinbill demo --rollback                              # ... and roll the last cohort back
    """
    from admin.demo import run_demo
    from migration.transform import BUGS

    if inject_bug is not None and inject_bug not in BUGS:
        err_console.print(f"unknown bug {inject_bug!r}; choose one of {', '.join(BUGS)}")
        raise typer.Exit(EXIT_ERROR)
    result = run_demo(
        users=users,
        seed=seed,
        workdir=workdir.resolve(),
        inject_bug=inject_bug,
        include_in_flight=include_in_flight,
        console=console,
        rollback=rollback,
    )
    table = Table(
        "cohort",
        "users",
        "migrated",
        "failed (why)",
        "deferred (why)",
        "legacy calls",
        "users/s",
        title="migration summary",
    )
    for c in result.cohorts:
        table.add_row(
            c.name,
            str(c.size),
            str(c.migrated),
            f"{c.failed} " + ", ".join(f"{k}: {v}" for k, v in c.failures.items()),
            f"{c.deferred} " + "; ".join(f"{k}: {v}" for k, v in c.deferrals.items()),
            str(c.legacy_calls),
            f"{c.users_per_second:.2f}",
        )
    console.print(table)
    if result.lost:
        console.print(f"[red]users neither on legacy nor on new:[/] {', '.join(result.lost)}")
    for path in result.report_paths:
        console.print(f"report: {path}")
    if result.reconciliation is not None:
        s = result.reconciliation["summary"]
        kinds = ", ".join(f"{k}: {v}" for k, v in sorted(s.get("by_kind", {}).items()))
        invariants = ", ".join(f"{k}: {v}" for k, v in sorted(s.get("by_invariant", {}).items()))
        verdict = (
            "[green]clean[/]"
            if result.reconciliation.get("clean")
            else f"[red]{s['users_with_differences']} with differences[/] ({kinds}) {invariants}"
        )
        console.print(f"reconciliation of {s['users_checked']} migrated users: {verdict}")
    if result.rolled_back:
        clean = sum(1 for _, ok in result.rolled_back.values() if ok)
        console.print(
            f"rollback of the last cohort: {clean}/{len(result.rolled_back)} users back on "
            "legacy, verified from both systems (exactly one billing system, same next charge)"
        )
    if not result.ok:
        raise typer.Exit(EXIT_FOUND)
    console.print(
        "[green]every user is on the new system or deferred with a reason; nothing lost[/]"
    )


def worker(
    concurrency: int = typer.Option(4, "--concurrency", help="worker processes/threads"),
    pool: str = typer.Option("threads", "--pool", help="threads | prefork | solo"),
    loglevel: str = typer.Option("INFO", "--loglevel", help="DEBUG | INFO | WARNING"),
    metrics_port: int | None = typer.Option(
        None, "--metrics-port", help="serve this process's /metrics (TWINBILL_METRICS_PORT)"
    ),
) -> None:
    """Run a Celery worker (needs TWINBILL_REDIS_URL).

    \b
    Example:
      TWINBILL_REDIS_URL=redis://127.0.0.1:6379/0 twinbill worker --concurrency 8
    """
    from admin.cli.context import app_root
    from admin.worker import run_worker

    root = app_root()
    run_worker(
        root, concurrency=concurrency, pool=pool, loglevel=loglevel, metrics_port=metrics_port
    )


def beat(
    loglevel: str = typer.Option("INFO", "--loglevel", help="DEBUG | INFO | WARNING"),
    metrics_port: int | None = typer.Option(
        None, "--metrics-port", help="serve this process's /metrics (TWINBILL_METRICS_PORT)"
    ),
) -> None:
    """Run Celery beat: reaper, outbox sweep, continuous reconciliation.

    \b
    Example:
      TWINBILL_REDIS_URL=redis://127.0.0.1:6379/0 twinbill beat
    """
    from admin.cli.context import app_root
    from admin.worker import run_beat

    run_beat(app_root(), loglevel=loglevel, metrics_port=metrics_port)
