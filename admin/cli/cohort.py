"""``twinbill cohort ...``: create (or preview), run, resume, retry, pause, status, list, delete.

Exit codes: ``status``/``run --wait``/``resume --wait``/``retry-failed --wait`` exit 1
when the cohort needs a human (halted, failed users — above all one failed after
the legacy cancel, whom nobody bills — or differences found), 0 otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from admin.cli.cohort_view import print_cohorts, print_preview, print_progress
from admin.cli.common import (
    EXIT_FOUND,
    JSON_HELP,
    console,
    err_console,
    fail,
    group,
    print_json,
)
from admin.cli.guard import YES_HELP, banner, confirm, count_legacy_subscriptions, plan_sentence
from core.errors import InvalidInput

cohort = group(
    "Cohorts: users migrated together, halted automatically when too many fail.",
    epilog="Typical flow: create --preview, create, run --wait, status, retry-failed.",
)
ACTOR = "cli"
NAME = typer.Argument(..., help="cohort name (see `twinbill cohort list`)")
WAIT = typer.Option(False, "--wait", help="watch until every member settled (exit 1 if any failed)")
JSON = typer.Option(False, "--json", help=JSON_HELP)
YES = typer.Option(False, "--yes", "-y", help=YES_HELP)


def _root():  # type: ignore[no-untyped-def]
    from admin.cli.context import app_root

    return app_root()


def _deps():  # type: ignore[no-untyped-def]
    return _root().saga


def _read():  # type: ignore[no-untyped-def]
    """Sessions for the commands that only read the database (no legacy key needed)."""
    from admin.cli.context import database

    return database()


def _filters(where: list[str]) -> dict[str, set[str]]:
    filters: dict[str, set[str]] = {}
    for clause in where:
        key, sep, values = clause.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise InvalidInput(f"--where {clause!r}: expected FACET=v1,v2 (e.g. currency=eur,usd)")
        filters[key.strip()] = {v.strip() for v in values.split(",") if v.strip()}
    return filters


@cohort.command("create")
def cohort_create(
    name: str = typer.Argument(..., help="a new cohort name, 1-80 characters"),
    users: str | None = typer.Option(None, "--users", help="comma-separated user ids"),
    from_file: Path | None = typer.Option(
        None, "--from-file", exists=True, dir_okay=False, help="one user id per line"
    ),
    where: list[str] = typer.Option(
        [],
        "--where",
        help="FACET=v1,v2 over the `users sync` facets (trial=true, invoices=2+); repeatable",
    ),
    min_complexity: int | None = typer.Option(None, "--min-complexity", help="lowest complexity"),
    max_complexity: int | None = typer.Option(None, "--max-complexity", help="highest complexity"),
    size: int | None = typer.Option(None, "--size", min=1, help="take at most N users"),
    stratify: str = typer.Option(
        "", "--stratify", help="FACET,... : the sample covers every value of these facets"
    ),
    halt_at: float = typer.Option(
        5.0, "--halt-at", min=0, max=100, help="halt when this percent of users fail or differ"
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="a rehearsal: fetch, transform, import, discard; cancels nothing"
    ),
    include_in_flight: bool = typer.Option(
        False, "--include-in-flight", help="also move users with open invoices (see runbook)"
    ),
    seed: int = typer.Option(0, "--seed", help="sampling seed (same seed, same users)"),
    preview: bool = typer.Option(
        False, "--preview", help="show who the filter selects, by facet; writes nothing"
    ),
    json: bool = JSON,
) -> None:
    """Create a cohort from ids, a file, or a filter over the inventory.

    \b
    Examples:
      twinbill cohort create pilot --max-complexity 0 --size 10 --preview
      twinbill cohort create pilot --where currency=eur,usd --size 10 --stratify interval,trial
      twinbill cohort create vip --users u_1,u_2 --halt-at 0
      twinbill cohort create rehearsal --from-file ids.txt --dry-run
    """
    from migration import cohorts, selection
    from multiplexer import facets

    deps = _deps()
    with deps.sessions() as session:
        pool = cohorts.candidates(session)
    if users or from_file:
        ids = [u.strip() for u in (users or "").split(",") if u.strip()]
        if from_file:
            ids += [ln.strip() for ln in from_file.read_text().splitlines() if ln.strip()]
        ids = ids[:size] if size else ids
        definition: dict[str, Any] = {"source": "explicit", "count": len(ids)}
    else:
        filters = _filters(where)
        fields = [s for s in stratify.split(",") if s.strip()]
        selection.check_fields(pool, filters, option="--where")
        selection.check_fields(pool, fields, option="--stratify")
        filters = facets.parse_where(where)  # values by the facet's kind: trial=true, invoices=2+
        ids = cohorts.select_users(
            pool,
            where=filters,
            min_complexity=min_complexity,
            max_complexity=max_complexity,
            size=size,
            stratify=fields,
            seed=seed,
        )
        definition = {
            "source": "filter",
            "where": {k: sorted(v) for k, v in filters.items()},
            "size": size,
            "stratify": stratify,
        }
    if preview:
        print_preview(name, ids, selection.by_facet(pool, ids), dry_run=dry_run, json=json)
        return
    banner(settings=_root().settings)
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
    if json:
        print_json({"name": name, "users": n, "dry_run": dry_run, "halt_at_percent": halt_at})
        return
    kind = "DRY-RUN cohort" if dry_run else "cohort"
    console.print(f"{kind} [bold]{name}[/] created with {n} users (halts above {halt_at}%)")


def _start(name: str, *, wait: bool, yes: bool, json: bool, mode: str) -> None:
    """``mode``: run | resume | retry-failed."""
    from migration import cohort_progress, cohorts
    from multiplexer.models import Route

    deps = _deps()
    statuses = ["pending", "queued", "deferred"] + (["failed"] if mode == "retry-failed" else [])
    with deps.sessions() as session:
        c = cohorts.get(session, name)
        if mode == "resume" and c.status == "created":
            raise fail(f"cohort {name!r} never ran", f"start it with `twinbill cohort run {name}`")
        skip = set(cohort_progress.progress(session, name).failed_after_pivot)
        users = [u for u in cohorts.members_to_start(session, name, statuses) if u not in skip]
        routes = [r for u in users if (r := session.get(Route, u)) is not None]
        dry_run = bool(c.dry_run)
    env = banner(deps.legacy, settings=_root().settings)
    if users and dry_run:  # a rehearsal cancels nothing: say so, no question
        err_console.print(plan_sentence(len(users), 0, env, dry_run=True), highlight=False)
    elif users:
        n_subs = count_legacy_subscriptions(deps.legacy, routes)
        confirm(plan_sentence(len(users), n_subs, env, dry_run=False), yes=yes)
    _enqueue_and_maybe_wait(name, wait=wait, retry_failed=mode == "retry-failed", json=json)


def _enqueue_and_maybe_wait(name: str, *, wait: bool, retry_failed: bool, json: bool) -> None:
    from admin.cli.context import app_root

    root = app_root()
    if not root.celery.embedded:  # real workers elsewhere pick the tasks up, over Redis
        n = root.start_cohort(name, actor=ACTOR, retry_failed=retry_failed)
        err_console.print(f"enqueued {n} migrations for cohort {name}")
        if wait:
            _wait(name, json=json)
        elif json:
            print_json({"name": name, "enqueued": n})
        return
    from core.queue import embedded_worker

    with embedded_worker(root.celery):
        n = root.start_cohort(name, actor=ACTOR, retry_failed=retry_failed)
        err_console.print(f"running {n} migrations for cohort {name} (embedded worker)")
        _wait(name, json=json)


def _wait(name: str, *, json: bool) -> None:
    from admin.progress import watch_cohort

    try:
        watch_cohort(_deps().sessions, name, err_console, poll=0.5)
    except KeyboardInterrupt:
        err_console.print(
            f"stopped watching cohort {name}; migrations already running finish their saga. "
            f"See where it stands: `twinbill cohort status {name}`; carry on: "
            f"`twinbill cohort resume {name} --wait`"
        )
        raise typer.Exit(130) from None
    _show(name, as_json=json)


@cohort.command("run")
def cohort_run(name: str = NAME, wait: bool = WAIT, yes: bool = YES, json: bool = JSON) -> None:
    """Start the cohort: its users' legacy subscriptions are cancelled as they move.

    Asks first (what will be cancelled, on which account); `--yes` for scripts.
    Embedded mode (no TWINBILL_REDIS_URL) runs the users here and waits.

    \b
    Examples:
      twinbill cohort run pilot            # asks, then runs
      twinbill cohort run pilot --yes --wait --json
    """
    _start(name, wait=wait, yes=yes, json=json, mode="run")


@cohort.command("resume")
def cohort_resume(name: str = NAME, wait: bool = WAIT, yes: bool = YES, json: bool = JSON) -> None:
    """Resume a paused or halted cohort (refuses one that never ran: use `run`).

    \b
    Example:
      twinbill cohort resume pilot --yes --wait
    """
    _start(name, wait=wait, yes=yes, json=json, mode="resume")


@cohort.command("retry-failed")
def cohort_retry(name: str = NAME, wait: bool = WAIT, yes: bool = YES, json: bool = JSON) -> None:
    """Start fresh migrations for members that failed before the legacy cancel.

    Users that failed after it are left to a human (`twinbill migrate USER --resume`).

    \b
    Example:
      twinbill cohort retry-failed pilot --yes --wait
    """
    _start(name, wait=wait, yes=yes, json=json, mode="retry-failed")


@cohort.command("pause")
def cohort_pause(name: str = NAME, json: bool = JSON) -> None:
    """Start no new users; users already running finish their saga.

    \b
    Example:
      twinbill cohort pause pilot
    """
    from migration import cohorts

    banner(settings=_root().settings)
    cohorts.set_status(_deps().sessions, name, "paused", actor=ACTOR)
    print_json({"name": name, "status": "paused"}) if json else console.print(
        f"cohort {name} paused"
    )


@cohort.command("delete")
def cohort_delete(name: str = NAME, yes: bool = YES, json: bool = JSON) -> None:
    """Delete a cohort that never ran (its users become free for another cohort).

    \b
    Example:
      twinbill cohort delete pilot --yes
    """
    from migration import cohort_ops, cohort_progress

    deps = _deps()
    banner(settings=_root().settings)
    with deps.sessions() as session:
        size = cohort_progress.progress(session, name).total
    confirm(f"will delete cohort {name} ({size} users, never ran)", yes=yes, nothing="nothing done")
    n = cohort_ops.delete(deps.sessions, name, actor=ACTOR)
    print_json({"name": name, "deleted": True, "users": n}) if json else console.print(
        f"cohort {name} deleted ({n} users freed)"
    )


def _show(name: str, *, as_json: bool) -> None:
    from migration import cohort_progress

    with _read()() as session:
        p = cohort_progress.progress(session, name)
    if as_json:
        print_json(p.as_dict())
    else:
        print_progress(p)
    if p.needs_human:
        raise typer.Exit(EXIT_FOUND)


@cohort.command("status")
def cohort_status(name: str = NAME, json: bool = JSON) -> None:
    """Progress, failures by error class, deferred users by reason, halt reason, diff rate.

    Exit 1 when the cohort needs a human: halted, failed users, or differences.

    \b
    Examples:
      twinbill cohort status pilot
      twinbill cohort status pilot --json | jq .failed_after_pivot
    """
    _show(name, as_json=json)


@cohort.command("list")
def cohort_list(json: bool = JSON) -> None:
    """Every cohort with its status (dry runs marked) and member counts.

    \b
    Example:
      twinbill cohort list --json
    """
    import sqlalchemy as sa

    from migration.cohort_progress import diffs_of, stats_by_cohort
    from migration.models import Cohort

    with _read()() as session:
        rows = list(session.scalars(sa.select(Cohort).order_by(Cohort.created_at)))
        stats = stats_by_cohort(session)
        data = []
        for c in rows:
            checked, with_diffs = diffs_of(session, c.name, c.started_at)
            data.append(
                {
                    "name": c.name,
                    "status": c.status,
                    "dry_run": bool(c.dry_run),
                    "created_at": c.created_at,
                    "members": stats.get(c.name, {}),
                    "reconciled": checked,
                    "with_differences": with_diffs,
                    "diff_rate": round(with_diffs / checked, 4) if checked else None,
                }
            )
    if json:
        print_json(data)
        return
    print_cohorts(data)


def _register_rollback() -> None:
    from admin.cli.rollback import cohort_rollback

    cohort.command("rollback")(cohort_rollback)


_register_rollback()
