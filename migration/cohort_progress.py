"""Cohort progress and status: counts, failure/deferral classes, the halt and done
decisions, and what a watcher still waits for — all read from the database.

The cohort itself (selection, creation, status changes) is ``migration.cohorts``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from core import audit
from core.db import transaction, utcnow
from migration.cohorts import FINISHED, get
from migration.models import Cohort, CohortMember, Migration

MIN_SAMPLE_FOR_HALT = 1  # one failure in a 10-user pilot is 10%: that *should* stop it


@dataclass
class Progress:
    name: str
    status: str
    total: int
    by_status: dict[str, int]
    failures_by_kind: dict[str, int]
    deferred_by_reason: dict[str, int]
    halt_reason: str | None
    halt_at_bp: int
    started_at: Any = None
    finished_at: Any = None
    failed_users: list[dict[str, Any]] = field(default_factory=list)
    # "retrying after the pivot" (migration.recovery): forward recovery under way
    retrying_users: list[dict[str, Any]] = field(default_factory=list)
    dry_run: bool = False
    #: failed *after* the legacy cancel: billed by nobody until a human resumes them
    failed_after_pivot: list[str] = field(default_factory=list)
    #: (users reconciled, users with differences) since the cohort started
    diffs: tuple[int, int] = (0, 0)

    @property
    def diff_rate(self) -> float | None:
        checked, with_diffs = self.diffs
        return with_diffs / checked if checked else None

    @property
    def deferred_with_problem(self) -> dict[str, int]:
        """Deferrals that are not one of the expected waits the reaper retries on its own
        (legacy kept changing, the next charge could not be proved, an unknown reason)."""
        return {k: v for k, v in self.deferred_by_reason.items() if k not in EXPECTED_WAITS}

    @property
    def needs_human(self) -> bool:
        """Failed or halted members, differences, or a deferral with a problem."""
        return (
            self.status == "halted"
            or self.by_status.get("failed", 0) > 0
            or bool(self.failed_after_pivot)
            or self.diffs[1] > 0
            or bool(self.retrying_users)
            or bool(self.deferred_with_problem)
        )

    @property
    def finished(self) -> int:
        return sum(self.by_status.get(s, 0) for s in FINISHED)

    @property
    def failure_rate(self) -> float:
        done = self.finished
        return self.by_status.get("failed", 0) / done if done else 0.0

    @property
    def settled(self) -> bool:
        """Nothing left that a worker will still pick up on its own."""
        busy = ("pending", "queued", "running", "retrying")  # retrying: after the pivot
        return all(self.by_status.get(s, 0) == 0 for s in busy)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "total": self.total,
            "by_status": self.by_status,
            "failure_rate": round(self.failure_rate, 4),
            "failures_by_kind": self.failures_by_kind,
            "deferred_by_reason": self.deferred_by_reason,
            "halt_reason": self.halt_reason,
            "halt_at_percent": self.halt_at_bp / 100,
            "failed_users": self.failed_users,
            "retrying_after_pivot": self.retrying_users,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "dry_run": self.dry_run,
            "failed_after_pivot": self.failed_after_pivot,
            "reconciled": self.diffs[0],
            "with_differences": self.diffs[1],
            "diff_rate": None if self.diff_rate is None else round(self.diff_rate, 4),
            "deferred_with_problem": self.deferred_with_problem,
            "needs_human": self.needs_human,
        }


def progress(session: Session, name: str) -> Progress:
    cohort = get(session, name)
    members = list(session.scalars(sa.select(CohortMember).where(CohortMember.cohort == name)))
    by_status = Counter(m.status for m in members)
    failures = Counter(m.error_kind or "unknown" for m in members if m.status == "failed")
    deferred = Counter(_reason_class(m.reason) for m in members if m.status == "deferred")
    failed = [
        {
            "user_id": m.user_id,
            "migration_id": m.migration_id,
            "kind": m.error_kind,
            "reason": m.reason,
        }
        for m in members
        if m.status == "failed"
    ]
    pivoted = _failed_after_pivot(session, [f["migration_id"] for f in failed])
    for f in failed:
        f["after_pivot"] = f["migration_id"] in pivoted
    return Progress(
        name,
        cohort.status,
        len(members),
        dict(by_status),
        dict(failures),
        dict(deferred),
        cohort.halt_reason,
        cohort.halt_at_bp,
        cohort.started_at,
        cohort.finished_at,
        failed[:50],
        [
            {"user_id": m.user_id, "migration_id": m.migration_id, "reason": m.reason}
            for m in members
            if m.status == "retrying"
        ][:50],
        dry_run=bool(cohort.dry_run),
        failed_after_pivot=sorted(f["user_id"] for f in failed if f["after_pivot"]),
        diffs=diffs_of(session, name, cohort.started_at),
    )


def _failed_after_pivot(session: Session, migration_ids: list[str | None]) -> set[str]:
    ids = [m for m in migration_ids if m]
    if not ids:
        return set()
    return set(
        session.scalars(
            sa.select(Migration.id).where(Migration.id.in_(ids), Migration.pivoted.is_(True))
        )
    )


def diffs_of(session: Session, name: str, since: Any) -> tuple[int, int]:
    """(users reconciled, users with differences) of a cohort since it started."""
    from reconciler.services import diff_rate

    return diff_rate(session, name, since) if since is not None else (0, 0)


#: Deferral classes that resolve by waiting (docs/runbook.md "deferred users").
EXPECTED_WAITS = frozenset(
    {
        "open invoice",
        "pending invoice item",
        "renewal inside safety window",
        "pending scheduled change",
        "subscription past due",
        # Stripe features the new service cannot carry yet (docs/legacy-gaps.md, Part 3):
        # deliberate, documented deferrals that last until the subscription changes
        "collection paused",
        "scheduled cancellation",
        "items on different periods",
        "tiered or metered price",
    }
)

_FEATURES = (
    ("collection paused", "collection paused"),
    ("scheduled to cancel", "scheduled cancellation"),
    ("different billing periods", "items on different periods"),
    ("tiered or custom-amount", "tiered or metered price"),
    ("metered usage", "tiered or metered price"),
)


def _reason_class(reason: str | None) -> str:
    """Group deferral reasons ('open invoice in_123 ...' -> 'open invoice')."""
    if not reason:
        return "unknown"
    for prefix in ("open invoice", "pending invoice item", "subscription", "legacy keeps"):
        if reason.startswith(prefix):
            if prefix == "subscription":
                for marker, kind in _FEATURES:
                    if marker in reason:
                        return kind
                if "safety window" in reason:
                    return "renewal inside safety window"
                if "scheduled change" in reason:
                    return "pending scheduled change"
                return "subscription past due"
            return prefix
    return reason[:40]


def check_halt(sessions: sessionmaker[Session], name: str) -> str | None:
    """Halt the cohort if its failure rate or its reconciliation diff rate crossed the
    threshold; returns the reason.

    Every worker calls this after every member, so it reads aggregates only (not
    `progress`, which loads every member): measured on a 200-user cohort, the full
    progress read here was a fifth of a worker's time, and grows with the cohort."""
    from reconciler.services import diff_rate, latest_results

    with sessions() as session:
        cohort = get(session, name)
        if cohort.status != "running":
            return None
        since = cohort.started_at or utcnow()
        checked, with_diffs = diff_rate(session, name, since)
        if with_diffs and with_diffs * 10_000 > checked * cohort.halt_at_bp:
            reports = sorted(
                {r.report_id for r in latest_results(session, name, since) if not r.clean}
            )
            reason = (
                f"reconciliation found differences for {with_diffs} of {checked} migrated "
                f"users ({with_diffs / checked:.1%} > {cohort.halt_at_bp / 100:.1f}%); reports "
                f"{', '.join(f'#{r}' for r in reports)} (admin: Reconciliation reports), or "
                f"run `twinbill reconcile --cohort {name} --format html`"
            )
            return reason if halt_if_running(sessions, name, reason) else None
        rows = session.execute(
            sa.select(CohortMember.status, CohortMember.error_kind, sa.func.count())
            .where(CohortMember.cohort == name, CohortMember.status.in_(FINISHED))
            .group_by(CohortMember.status, CohortMember.error_kind)
        ).all()
    finished = sum(n for _, _, n in rows)
    kinds: Counter[str] = Counter()
    for status, kind, n in rows:
        if status == "failed":
            kinds[kind or "unknown"] += n
    failed = sum(kinds.values())
    if failed < MIN_SAMPLE_FOR_HALT or failed * 10_000 <= finished * cohort.halt_at_bp:
        return None
    reason = (
        f"failure rate {failed / finished:.1%} crossed the {cohort.halt_at_bp / 100:.1f}% "
        f"threshold ({failed} of {finished} finished users failed; "
        f"{', '.join(f'{k}: {v}' for k, v in sorted(kinds.items()))})"
    )
    return reason if halt_if_running(sessions, name, reason) else None


UNSETTLED = ("pending", "queued", "running")


def finish_if_settled(sessions: sessionmaker[Session], name: str) -> bool:
    """Mark a running cohort done once no member is left for a worker to move — decided by
    one conditional UPDATE, so of any number of racing callers (every worker finishing a
    member, the watcher, `cohort run` on an empty cohort) exactly one wins and none fails.
    Returns whether this call did it."""
    unsettled = (
        sa.select(CohortMember.user_id)
        .where(CohortMember.cohort == name, CohortMember.status.in_(UNSETTLED))
        .exists()
    )
    return _leave_running(sessions, name, "done", ~unsettled, finished_at=utcnow())


def halt_if_running(sessions: sessionmaker[Session], name: str, reason: str) -> bool:
    """Halt a cohort that is still running (conditional UPDATE: a cohort that just became
    done, or was paused by a human, is left alone instead of raising)."""
    return _leave_running(sessions, name, "halted", reason=reason, halt_reason=reason)


def _leave_running(
    sessions: sessionmaker[Session],
    name: str,
    status: str,
    *where: Any,
    reason: str | None = None,
    **values: Any,
) -> bool:
    """``running`` -> ``status`` in one conditional UPDATE (plus ``where``), audited by the
    system; False when the cohort was not running (or ``where`` did not hold)."""
    with transaction(sessions) as session:
        moved = session.execute(
            sa.update(Cohort)
            .where(Cohort.name == name, Cohort.status == "running", *where)
            .values(status=status, **values)
            .execution_options(synchronize_session=False)
        )
        if moved.rowcount != 1:
            return False
        audit.record(
            session,
            actor="system:cohort",
            action=f"cohort.{status}",
            resource_type="cohort",
            resource_id=name,
            before={"status": "running"},
            after={"status": status},
            reason=reason,
        )
        return True


@dataclass
class Waiting:
    """What a watcher of the cohort still waits for: members a task will still move, and
    members that look unfinished but that no task will move (not waited for; shown)."""

    movable: list[str]
    stranded: list[str]


def waiting_on(session: Session, name: str) -> Waiting:
    rows = session.execute(
        sa.select(CohortMember.user_id, CohortMember.status, Migration.status)
        .outerjoin(Migration, Migration.id == CohortMember.migration_id)
        .where(CohortMember.cohort == name, CohortMember.status.in_(UNSETTLED))
        .order_by(CohortMember.user_id)
    )
    movable, stranded = [], []
    for user_id, member_status, mig_status in rows:
        # a running member is a saga under way (the reaper moves it if its worker died);
        # a pending/queued one moves only if its migration is still pending or running
        moves = member_status == "running" or mig_status in ("pending", "running")
        (movable if moves else stranded).append(user_id)
    return Waiting(movable, stranded)


def stats_by_cohort(session: Session) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for cohort, status, n in session.execute(
        sa.select(CohortMember.cohort, CohortMember.status, sa.func.count()).group_by(
            CohortMember.cohort, CohortMember.status
        )
    ):
        out[cohort][status] = n
    return dict(out)
