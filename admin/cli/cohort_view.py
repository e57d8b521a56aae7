"""How ``twinbill cohort ...`` prints its answers: the create preview, a cohort's
progress (``status``, ``--wait``) and the ``list`` table.

Apart from the commands (``cohort.py``) so that file keeps to the commands, their
options and the run/confirm flow.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table

from admin.cli.common import console, iso, print_json


def print_preview(
    name: str, ids: list[str], facets: dict[str, dict[str, int]], *, dry_run: bool, json: bool
) -> None:
    """What `cohort create --preview` shows: the selection, counted by facet."""
    if json:
        print_json({"name": name, "users": ids, "count": len(ids), "by_facet": facets})
        return
    what = "dry-run cohort" if dry_run else "cohort"
    console.print(f"preview of {what} [bold]{name}[/]: {len(ids)} users (nothing was written)")
    for facet, counts in facets.items():
        console.print(f"  {facet}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if ids:
        console.print("  users: " + ", ".join(ids[:20]) + (" …" if len(ids) > 20 else ""))


def print_progress(p: Any) -> None:
    """`cohort status` in words: rates, counts by status/kind/reason, who needs a human."""
    marker = "[bold yellow]DRY RUN[/] " if p.dry_run else ""
    console.print(
        f"{marker}[bold]{p.name}[/] — {p.status}, {p.total} users, failure rate "
        f"{p.failure_rate:.1%} ({p.by_status.get('failed', 0)} of {p.finished} finished; "
        f"halts above {p.halt_at_bp / 100:.1f}%)"
    )
    checked, with_diffs = p.diffs
    rate = f"{p.diff_rate:.1%}" if p.diff_rate is not None else "n/a"
    console.print(f"  diff rate {rate} ({with_diffs} of {checked} reconciled users differ)")
    if p.started_at or p.finished_at:
        console.print(f"  started {iso(p.started_at) or '-'}, finished {iso(p.finished_at) or '-'}")
    if p.halt_reason:
        console.print(f"[red]halted:[/] {p.halt_reason}", highlight=False, soft_wrap=True)
    for title, data in (
        ("by status", p.by_status),
        ("failures by kind", p.failures_by_kind),
        ("deferred by reason", p.deferred_by_reason),
    ):
        if data:
            console.print(f"  {title}: " + ", ".join(f"{k} {v}" for k, v in sorted(data.items())))
    if p.deferred_with_problem:
        problems = ", ".join(f"{k} {v}" for k, v in sorted(p.deferred_with_problem.items()))
        console.print(f"  [yellow]deferred with a problem[/]: {problems}", highlight=False)
    for uid in p.failed_after_pivot:
        console.print(
            f"  [bold red]FAILED AFTER THE LEGACY CANCEL[/] {uid}: billed by nobody — "
            f"`twinbill migrate {uid} --resume` (docs/runbook.md)",
            highlight=False,
            soft_wrap=True,
        )
    for r in p.retrying_users[:10]:
        console.print(
            f"  [yellow]retrying after the pivot[/] {r['user_id']}: {r['reason']}",
            highlight=False,
            soft_wrap=True,
        )
    for f in [f for f in p.failed_users if not f.get("after_pivot")][:10]:
        console.print(
            f"  [red]failed[/] {f['user_id']} ({f['kind']}): {f['reason']}",
            highlight=False,
            soft_wrap=True,
        )


def print_cohorts(data: list[dict[str, Any]]) -> None:
    """The `cohort list` table: one row per cohort (``data`` as `--json` prints it)."""
    table = Table("cohort", "status", "created", "members", "diff rate")
    for d in data:
        status = f"{d['status']} (dry run)" if d["dry_run"] else d["status"]
        members = ", ".join(f"{k} {v}" for k, v in sorted(d["members"].items()))
        rate = f"{d['diff_rate']:.1%}" if d["diff_rate"] is not None else "n/a"
        table.add_row(d["name"], status, iso(d["created_at"]) or "", members, rate)
    console.print(table)
