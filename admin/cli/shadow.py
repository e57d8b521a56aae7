"""``twinbill cohort shadow|shadow-report|shadow-stop``: rehearse a cohort in shadow.

Exit codes: ``shadow`` and ``shadow-report`` exit 1 when the rehearsal found a
mismatch (a human reads the report before the cohort runs), 0 otherwise.
"""

from __future__ import annotations

from typing import Any

import typer

from admin.cli.common import EXIT_FOUND, JSON_HELP, console, err_console, iso, print_json
from admin.cli.guard import YES_HELP, banner, confirm

ACTOR = "cli"
NAME = typer.Argument(..., help="cohort name (see `twinbill cohort list`)")
JSON = typer.Option(False, "--json", help=JSON_HELP)
YES = typer.Option(False, "--yes", "-y", help=YES_HELP)


def _root():  # type: ignore[no-untyped-def]
    from admin.cli.context import app_root

    return app_root()


def cohort_shadow(
    name: str = NAME,
    days: int = typer.Option(7, "--days", min=1, help="how long the shadow period lasts"),
    inject_bug: str | None = typer.Option(
        None,
        "--inject-bug",
        help="rehearse with a deliberately broken mapping (credit-sign, trial-state, tax-rate...)",
    ),
    yes: bool = YES,
    json: bool = JSON,
) -> None:
    """Import a cohort still on legacy into the new system as shadow imports, and compare.

    Each user gets a pending import in the new system that never bills; users stay on
    legacy and no route changes. For the shadow period their imports follow legacy
    (daily and on every legacy webhook) and both systems' next charges and the app's
    reads are compared. `cohort run` reuses the imports of a recent clean rehearsal.

    \b
    Examples:
      twinbill cohort shadow pilot --days 7 --yes
      twinbill cohort shadow pilot --yes --json | jq .mismatches_by_field
    """
    from migration import shadow, shadow_sync

    root = _root()
    deps = root.saga
    with deps.sessions() as session:
        _, users = shadow.check_can_start(session, name, days=days, inject_bug=inject_bug)
    banner(deps.legacy, settings=root.settings)
    confirm(
        f"will import {len(users)} users of cohort {name} into the new system as shadow imports "
        f"(pending, never billing) for {days} days; legacy and routes stay untouched",
        yes=yes,
        nothing="nothing was written",
    )
    _, rows = shadow.start(deps.sessions, name, days=days, actor=ACTOR, inject_bug=inject_bug)
    if not root.celery.embedded:  # workers elsewhere import them, one task per user
        for row_id in rows:
            root.enqueue_shadow_sync(row_id, "start")
        err_console.print(f"enqueued {len(rows)} shadow imports for cohort {name}")
        if json:
            print_json({"name": name, "enqueued": len(rows)})
        return
    for i, row_id in enumerate(rows, 1):
        outcome = shadow_sync.sync(deps, row_id, trigger="start")
        err_console.print(f"  [{i}/{len(rows)}] {outcome}", highlight=False)
    _show(name, as_json=json)


def cohort_shadow_report(name: str = NAME, json: bool = JSON) -> None:
    """The cohort's shadow report: users compared, mismatches by field, reusable by `run`?

    Exit 1 when a mismatch was found.

    \b
    Examples:
      twinbill cohort shadow-report pilot
      twinbill cohort shadow-report pilot --json | jq .examples
    """
    _show(name, as_json=json)


def cohort_shadow_stop(name: str = NAME, yes: bool = YES, json: bool = JSON) -> None:
    """End the shadow period now: every shadow import left in the new system is discarded.

    \b
    Example:
      twinbill cohort shadow-stop pilot --yes
    """
    from migration import shadow

    deps = _root().saga
    banner(settings=_root().settings)
    confirm(
        f"will end the shadow rehearsal of cohort {name}: discard its shadow imports",
        yes=yes,
        nothing="nothing was discarded",
    )
    n = shadow.end(deps, name, actor=ACTOR, reason="stopped by an operator")
    if json:
        print_json({"name": name, "discarded": n})
    else:
        console.print(f"shadow rehearsal of cohort {name} ended; {n} shadow imports discarded")


def _show(name: str, *, as_json: bool) -> None:
    from migration.shadow_report import build

    with _root().saga.sessions() as session:
        report = build(session, name)
    if as_json:
        print_json(report.as_dict())
    else:
        _print(report)
    if not report.clean and report.mismatches_by_kind:
        raise typer.Exit(EXIT_FOUND)


def _print(r: Any) -> None:
    if r.run_id is None:
        console.print(f"cohort [bold]{r.cohort}[/] was never shadowed (`twinbill cohort shadow`)")
        return
    bug = f", injected bug {r.inject_bug}" if r.inject_bug else ""
    console.print(
        f"[bold]{r.cohort}[/] shadow {r.status} ({r.run_id}{bug}), "
        f"{iso(r.started_at)} until {iso(r.until)}: [bold]{r.verdict}[/]",
        highlight=False,
    )
    console.print(
        f"  {r.users_compared} of {r.members} users compared, {r.users_with_mismatches} with "
        f"mismatches; {r.checks} checks ({r.reads_compared} app reads), {r.errors} could not "
        "compare (error or timeout)",
        highlight=False,
    )
    if r.mismatches_by_field:
        fields = ", ".join(f"{f} {n}" for f, n in r.mismatches_by_field.items())
        console.print(f"  [red]mismatches by field[/] (users): {fields}", highlight=False)
    for user, why in list(r.skipped.items())[:10]:
        console.print(f"  not shadowed {user}: {why}", highlight=False, soft_wrap=True)
    for e in r.examples[:10]:
        console.print(
            f"  [red]{e['user_id']}[/] {e['kind']} ({e['trigger']}): {', '.join(e['fields'])}",
            highlight=False,
        )
    if r.ended_at:
        console.print(f"  ended {iso(r.ended_at)}: {r.end_reason}", highlight=False)
    elif r.reusable:
        console.print(f"  `twinbill cohort run {r.cohort}` will reuse these shadow imports")
