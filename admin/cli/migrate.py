"""``twinbill migrate``, ``twinbill cohort ...``, ``twinbill demo``, ``twinbill worker``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from admin.cli.common import EXIT_ERROR, EXIT_FOUND, cli_errors, console, err_console, print_json

cohort = typer.Typer(help="Cohorts: users migrated together.", no_args_is_help=True)
ACTOR = "cli"


def _deps():  # type: ignore[no-untyped-def]
    from admin.cli.context import app_root

    return app_root().saga


def _print_steps(migration_id: str) -> None:
    from migration.records import steps_of

    deps = _deps()
    with deps.sessions() as session:
        rows = steps_of(session, migration_id)
    table = Table("step", "try", "outcome", "took", "detail / error", title=migration_id)
    for r in rows:
        took = f"{(r.finished_at - r.started_at).total_seconds():.2f}s" if r.finished_at else "…"
        colour = {"ok": "green", "error": "red", "deferred": "yellow"}.get(r.outcome, "white")
        text = r.error_message or (str(r.detail)[:90] if r.detail else "")
        table.add_row(r.step, str(r.attempt), f"[{colour}]{r.outcome}[/]", took, text)
    console.print(table)


def migrate(
    user_id: str,
    dry_run: bool = typer.Option(False, "--dry-run", help="fetch+transform+import, then discard"),
    resume: bool = typer.Option(False, "--resume", help="resume a failed post-pivot migration"),
    include_in_flight: bool = typer.Option(False, "--include-in-flight"),
    json: bool = typer.Option(False, "--json"),
) -> None:
    """Migrate one user synchronously and print every step."""
    from migration import services

    with cli_errors():
        deps = _deps()
        mig = (
            services.resume_user(deps, user_id)
            if resume
            else services.migrate_user(
                deps, user_id, dry_run=dry_run, include_in_flight=include_in_flight
            )
        )
    if json:
        print_json(
            {
                "migration_id": mig.id,
                "user_id": mig.user_id,
                "status": mig.status,
                "step": mig.step,
                "error_kind": mig.error_kind,
                "error": mig.error_message,
                "deferred": mig.defer_reason,
            }
        )
    else:
        _print_steps(mig.id)
        console.print(
            f"[bold]{user_id}[/]: {mig.status}"
            + (f" — {mig.error_kind}: {mig.error_message}" if mig.error_message else "")
            + (f" — deferred: {mig.defer_reason}" if mig.defer_reason else "")
        )
    if mig.status in ("failed", "compensated"):
        raise typer.Exit(EXIT_FOUND)


@cohort.command("create")
def cohort_create(
    name: str,
    users: str | None = typer.Option(None, "--users", help="comma-separated user ids"),
    from_file: Path | None = typer.Option(None, "--from-file", exists=True, dir_okay=False),
    where: list[str] = typer.Option(
        [], "--where", help="FACET=v1,v2 over `users sync` facets (trial=true, invoices=2+, ...)"
    ),
    min_complexity: int | None = typer.Option(None, "--min-complexity"),
    max_complexity: int | None = typer.Option(None, "--max-complexity"),
    size: int | None = typer.Option(None, "--size", min=1),
    stratify: str = typer.Option("", "--stratify", help="FIELD,... to cover every value of"),
    halt_at: float = typer.Option(5.0, "--halt-at", min=0, max=100, help="percent"),
    dry_run: bool = typer.Option(False, "--dry-run"),
    include_in_flight: bool = typer.Option(False, "--include-in-flight"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Create a cohort from ids, a file, or a filter over the inventory."""
    from migration import cohorts

    with cli_errors():
        deps = _deps()
        if users or from_file:
            ids = [u for u in (users or "").split(",") if u.strip()]
            if from_file:
                ids += [ln.strip() for ln in from_file.read_text().splitlines() if ln.strip()]
            if size:
                ids = ids[:size]
            definition = {"source": "explicit", "count": len(ids)}
        else:
            from multiplexer import facets

            filters = facets.parse_where(where)
            facets.check_fields([s for s in stratify.split(",") if s])
            with deps.sessions() as session:
                ids = cohorts.select_users(
                    cohorts.candidates(session),
                    where=filters,
                    min_complexity=min_complexity,
                    max_complexity=max_complexity,
                    size=size,
                    stratify=[s for s in stratify.split(",") if s],
                    seed=seed,
                )
            definition = {
                "source": "filter",
                "where": {k: sorted(v) for k, v in filters.items()},
                "size": size,
                "stratify": stratify,
            }
        n = cohorts.create(
            deps.sessions,
            name,
            ids,
            actor=ACTOR,
            definition=definition,
            halt_at_bp=round(halt_at * 100),
            dry_run=dry_run,
            include_in_flight=include_in_flight,
        )
    console.print(
        f"cohort [bold]{name}[/] created with {n} users (halts above {halt_at}% failures)"
    )


def _enqueue_and_maybe_wait(name: str, *, wait: bool, retry_failed: bool) -> None:
    from admin.cli.context import app_root
    from migration import services

    root = app_root()
    if not root.celery.embedded:  # real workers elsewhere pick the tasks up, over Redis
        n = services.start_cohort(
            root.saga, name, root.enqueue_migration, actor=ACTOR, retry_failed=retry_failed
        )
        console.print(f"enqueued {n} migrations for cohort {name}")
        if wait:
            _wait(name)
        return
    from core.queue import embedded_worker

    with embedded_worker(root.celery):
        n = services.start_cohort(
            root.saga, name, root.enqueue_migration, actor=ACTOR, retry_failed=retry_failed
        )
        console.print(f"running {n} migrations for cohort {name} (embedded worker)")
        _wait(name)


def _wait(name: str) -> None:
    from admin.progress import watch_cohort

    try:
        watch_cohort(_deps().sessions, name, console, poll=0.5)
    except KeyboardInterrupt:
        err_console.print(
            f"stopped watching cohort {name}; migrations already running finish their saga. "
            f"See where it stands: `twinbill cohort status {name}`; carry on: "
            f"`twinbill cohort resume {name} --wait`"
        )
        raise typer.Exit(130) from None
    _show(name, as_json=False)


@cohort.command("run")
def cohort_run(name: str, wait: bool = typer.Option(False, "--wait")) -> None:
    """Enqueue the cohort's users (embedded mode runs them here and waits)."""
    with cli_errors():
        _enqueue_and_maybe_wait(name, wait=wait, retry_failed=False)


@cohort.command("resume")
def cohort_resume(name: str, wait: bool = typer.Option(False, "--wait")) -> None:
    """Resume a paused or halted cohort."""
    with cli_errors():
        _enqueue_and_maybe_wait(name, wait=wait, retry_failed=False)


@cohort.command("retry-failed")
def cohort_retry(name: str, wait: bool = typer.Option(False, "--wait")) -> None:
    """Start fresh migrations for members that failed before the pivot."""
    with cli_errors():
        _enqueue_and_maybe_wait(name, wait=wait, retry_failed=True)


@cohort.command("pause")
def cohort_pause(name: str) -> None:
    """Start no new users; users already running finish their saga."""
    from migration import cohorts

    with cli_errors():
        cohorts.set_status(_deps().sessions, name, "paused", actor=ACTOR)
    console.print(f"cohort {name} paused")


def _show(name: str, *, as_json: bool) -> None:
    from migration import cohorts

    deps = _deps()
    with deps.sessions() as session:
        p = cohorts.progress(session, name)
    if as_json:
        print_json(p.as_dict())
        return
    console.print(
        f"[bold]{p.name}[/] — {p.status}, {p.total} users, failure rate "
        f"{p.failure_rate:.1%} (halts above {p.halt_at_bp / 100:.1f}%)"
    )
    if p.halt_reason:
        console.print(f"[red]halted:[/] {p.halt_reason}")
    for title, data in (
        ("by status", p.by_status),
        ("failures by kind", p.failures_by_kind),
        ("deferred by reason", p.deferred_by_reason),
    ):
        if data:
            console.print(f"  {title}: " + ", ".join(f"{k} {v}" for k, v in sorted(data.items())))
    for f in p.failed_users[:10]:
        console.print(f"  [red]failed[/] {f['user_id']} ({f['kind']}): {f['reason']}")
    for r in p.retrying_users[:10]:
        console.print(f"  [yellow]retrying after the pivot[/] {r['user_id']}: {r['reason']}")


@cohort.command("status")
def cohort_status(name: str, json: bool = typer.Option(False, "--json")) -> None:
    """Progress, failures by error class, deferred users by reason, halt reason."""
    with cli_errors():
        _show(name, as_json=json)


@cohort.command("list")
def cohort_list(json: bool = typer.Option(False, "--json")) -> None:
    import sqlalchemy as sa

    from migration.cohorts import stats_by_cohort
    from migration.models import Cohort

    deps = _deps()
    with deps.sessions() as session:
        rows = list(session.scalars(sa.select(Cohort).order_by(Cohort.created_at)))
        stats = stats_by_cohort(session)
        data = [
            {"name": c.name, "status": c.status, "members": stats.get(c.name, {})} for c in rows
        ]
    if json:
        print_json(data)
        return
    table = Table("cohort", "status", "members")
    for d in data:
        table.add_row(
            d["name"], d["status"], ", ".join(f"{k} {v}" for k, v in sorted(d["members"].items()))
        )
    console.print(table)


def demo(
    users: int = typer.Option(60, "--users", min=13, max=2000),
    seed: int = typer.Option(7, "--seed"),
    inject_bug: str | None = typer.Option(
        None,
        "--inject-bug",
        help="timestamp | zero-decimal | drop-refund | cancel-flag | credit-sign | trial-state"
        " | tax-rate (the last three are stopped at prove, before the legacy cancel)",
    ),
    include_in_flight: bool = typer.Option(False, "--include-in-flight"),
    workdir: Path = typer.Option(Path(".twinbill-demo"), "--workdir"),
) -> None:
    """Seed a sandbox, migrate it in growing cohorts, reconcile; exit 0 when nothing is lost."""
    from admin.demo import run_demo
    from migration.transform import BUGS

    if inject_bug is not None and inject_bug not in BUGS:
        err_console.print(f"unknown bug {inject_bug!r}; choose one of {', '.join(BUGS)}")
        raise typer.Exit(EXIT_ERROR)
    with cli_errors():
        result = run_demo(
            users=users,
            seed=seed,
            workdir=workdir.resolve(),
            inject_bug=inject_bug,
            include_in_flight=include_in_flight,
            console=console,
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
    if not result.ok:
        raise typer.Exit(EXIT_FOUND)
    console.print(
        "[green]every user is on the new system or deferred with a reason; nothing lost[/]"
    )


def worker(
    concurrency: int = typer.Option(4, "--concurrency"),
    pool: str = typer.Option("threads", "--pool", help="threads | prefork | solo"),
    loglevel: str = typer.Option("INFO", "--loglevel"),
    metrics_port: int | None = typer.Option(
        None, "--metrics-port", help="serve this process's /metrics (TWINBILL_METRICS_PORT)"
    ),
) -> None:
    """Run a Celery worker (needs TWINBILL_REDIS_URL)."""
    from admin.cli.context import app_root
    from admin.worker import run_worker

    with cli_errors():
        root = app_root()
        run_worker(
            root, concurrency=concurrency, pool=pool, loglevel=loglevel, metrics_port=metrics_port
        )


def beat(
    loglevel: str = typer.Option("INFO", "--loglevel"),
    metrics_port: int | None = typer.Option(None, "--metrics-port"),
) -> None:
    """Run Celery beat: reaper, outbox sweep, continuous reconciliation."""
    from admin.cli.context import app_root
    from admin.worker import run_beat

    with cli_errors():
        run_beat(app_root(), loglevel=loglevel, metrics_port=metrics_port)
