"""``twinbill rollback USER_ID`` and ``twinbill cohort rollback NAME``: the reverse saga.

Before anything is written, every user is checked (``migration.rollback_plan``): a
refusal names the user and the reason and exits 2. Then, like ``migrate``: the
environment banner, what will happen ("will roll back N users: cancel M subscriptions
in the new system, re-create M in legacy"), a confirmation (``--yes`` for scripts).
``--dry-run`` prints the plan and writes nothing. Exit 0 rolled back (and verified),
1 something needs a human (compensated, failed after the pivot, verify not clean).
"""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from admin.cli.common import EXIT_FOUND, JSON_HELP, console, print_json
from admin.cli.guard import YES_HELP, banner, confirm
from admin.cli.migrate import _print_steps, _steps

DRY_RUN_HELP = "print what the rollback would do (both systems read, nothing written)"


def _root():  # type: ignore[no-untyped-def]
    from admin.cli.context import app_root

    return app_root()


def sentence(plans: list[dict[str, Any]], env: Any) -> str:
    users = f"{len(plans)} user{'s' if len(plans) != 1 else ''}"
    cancel = sum(len(p["cancel_in_new"]) for p in plans)
    create = sum(len(p["recreate"]) for p in plans)
    account = env.account or "(account id not available)"
    return (
        f"will roll back {users}: cancel {cancel} subscription{'s' if cancel != 1 else ''} in "
        f"the new system, re-create {create} in legacy on account {account} ({env.key}), "
        "trialing until each one's next charge"
    )


def _print_plan(plan: dict[str, Any]) -> None:
    table = Table(
        "new subscription", "legacy plan", "qty", "renews at", "taxes", title=plan["user_id"]
    )
    for spec in plan["recreate"]:
        table.add_row(
            spec["of"],
            spec["plan_code"],
            str(spec["quantity"]),
            spec["renews_at"],
            ", ".join(spec["tax_rate_ids"]) or "-",
        )
    console.print(table)
    _print_history(plan["history"])
    for note in plan["ignored"]:
        console.print(f"  left alone: {note}", highlight=False)


def _print_history(history: dict[str, list[str]]) -> None:
    kept = ", ".join(f"{len(v)} {k}" for k, v in history.items() if v) or "nothing"
    console.print(
        f"  created in the new system during the stay, kept there (readable): {kept}",
        highlight=False,
    )
    for kind, ids in history.items():
        if ids:
            console.print(f"    {kind}: {', '.join(ids)}", highlight=False)


def _result(mig: Any) -> dict[str, Any]:
    steps = _steps(mig.id)
    verify = next(
        (s["detail"] for s in steps if s["step"] == "rb_verify" and s["outcome"] == "ok"), None
    )
    return {
        "migration_id": mig.id,
        "user_id": mig.user_id,
        "status": mig.status,
        "step": mig.step,
        "error_kind": mig.error_kind,
        "error": mig.error_message,
        "clean": bool(verify and verify.get("clean")),
        "history_in_new": (verify or {}).get("history_in_new"),
        "steps": steps,
    }


def _needs_human(result: dict[str, Any]) -> bool:
    return result["status"] != "succeeded" or not result["clean"]


def run_rollbacks(
    user_ids: list[str], *, dry_run: bool, yes: bool, json: bool, cohort: str | None = None
) -> None:
    from migration import rollback

    root = _root()
    deps = root.saga
    plans = [rollback.plan_user(deps, uid) for uid in user_ids]  # every refusal before a write
    if dry_run:
        if json:
            print_json({"dry_run": True, "plans": plans})
        else:
            for plan in plans:
                _print_plan(plan)
            console.print(f"dry run: {len(plans)} user(s) can be rolled back; nothing written")
        return
    env = banner(deps.legacy, settings=root.settings)
    confirm(sentence(plans, env), yes=yes)
    results = []
    for uid in user_ids:
        mig = rollback.rollback_user(deps, uid)
        if cohort is not None:
            rollback.after_cohort_rollback(deps, cohort, mig)
        results.append(_result(mig))
        if not json:
            _print_steps(mig.id, results[-1]["steps"])
            verdict = "clean" if results[-1]["clean"] else "NOT verified clean"
            console.print(
                f"[bold]{uid}[/]: {mig.status} ({verdict})"
                + (f" — {mig.error_kind}: {mig.error_message}" if mig.error_message else ""),
                highlight=False,
            )
            if results[-1]["history_in_new"] is not None:
                _print_history(results[-1]["history_in_new"])
    if json:
        print_json(
            results[0]
            if cohort is None and len(results) == 1
            else {"cohort": cohort, "results": results}
        )
    if any(_needs_human(r) for r in results):
        raise typer.Exit(EXIT_FOUND)


def rollback(
    user_id: str = typer.Argument(..., help="app user id of a user living in the new system"),
    dry_run: bool = typer.Option(False, "--dry-run", help=DRY_RUN_HELP),
    resume: bool = typer.Option(
        False, "--resume", help="continue a rollback that failed after the new system's cancel"
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help=YES_HELP),
    json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Move one migrated user back to legacy (the reverse saga) and print every step.

    Re-creates the user's subscriptions in legacy (trialing until the new system's next
    charge, nothing invoiced now), proves both systems agree on the next charge, then
    cancels them in the new system (no proration, no refund). Asks first.
    Exit 0 rolled back and verified, 1 needs a human, 2 refused (nothing written).

    \b
    Examples:
      twinbill rollback u_42 --dry-run
      twinbill rollback u_42 --yes --json
      twinbill rollback u_42 --resume --yes    # after fixing a post-pivot failure
    """
    if resume:
        from migration import services

        root = _root()
        banner(root.saga.legacy, settings=root.settings)
        confirm(
            f"will resume the failed rollback of {user_id} after the new system's cancel", yes=yes
        )
        result = _result(services.resume_user(root.saga, user_id))
        print_json(result) if json else _print_steps(result["migration_id"], result["steps"])
        if _needs_human(result):
            raise typer.Exit(EXIT_FOUND)
        return
    run_rollbacks([user_id], dry_run=dry_run, yes=yes, json=json)


def cohort_rollback(
    name: str = typer.Argument(..., help="cohort name (see `twinbill cohort list`)"),
    dry_run: bool = typer.Option(False, "--dry-run", help=DRY_RUN_HELP),
    yes: bool = typer.Option(False, "--yes", "-y", help=YES_HELP),
    json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Roll back every member of a cohort that lives in the new system, one by one.

    Every member is checked first: one refusal stops it all, nothing written. A member
    rolled back is `pending` in the cohort again (`cohort run` would move it anew).

    \b
    Examples:
      twinbill cohort rollback pilot --dry-run
      twinbill cohort rollback pilot --yes
    """
    from migration import rollback as reverse

    users = reverse.cohort_users(_root().saga, name)
    if not users:
        console.print(f"cohort {name}: no member lives in the new system; nothing to roll back")
        return
    run_rollbacks(users, dry_run=dry_run, yes=yes, json=json, cohort=name)
