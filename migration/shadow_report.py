"""A cohort's shadow report: who was compared, what differed (by field), and whether the
rehearsal is clean and recent enough for `cohort run` to reuse its imports.

Counted from the stored ``ShadowCheck`` rows of the cohort's latest rehearsal, so every
process (CLI, admin, workers) reads the same report.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from core.db import utcnow
from migration import cohorts
from migration.models import ShadowCheck, ShadowImport
from migration.shadow import latest_run

#: a report older than this is not "recent": the daily comparison has not run since
RECENT = timedelta(hours=36)
EXAMPLES = 20


@dataclass
class ShadowReport:
    cohort: str
    run_id: str | None = None
    status: str | None = None  # the rehearsal's: active | handed_over | ended
    inject_bug: str | None = None
    started_at: datetime | None = None
    until: datetime | None = None
    ended_at: datetime | None = None
    end_reason: str | None = None
    members: int = 0
    by_import_status: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # user -> why not shadowed
    users_compared: int = 0  # users whose next charges were compared at least once
    users_with_mismatches: int = 0
    checks: int = 0
    checks_by_outcome: dict[str, int] = field(default_factory=dict)
    reads_compared: int = 0  # facade reads compared (clean or mismatch)
    mismatches_by_field: dict[str, int] = field(default_factory=dict)  # field -> users
    mismatches_by_kind: dict[str, int] = field(default_factory=dict)  # kind -> checks
    errors: int = 0  # checks that could not compare (error or timeout)
    last_check_at: datetime | None = None
    stale_users: list[str] = field(default_factory=list)  # imported, not compared recently
    examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return self.run_id is not None and self.users_compared > 0 and not self.mismatches_by_kind

    @property
    def reusable(self) -> bool:
        """`cohort run` may adopt the imports: clean, and every imported user compared lately."""
        return self.clean and self.status == "active" and not self.stale_users

    @property
    def verdict(self) -> str:
        if self.run_id is None:
            return "never shadowed"
        if not self.users_compared:
            return "nobody compared yet"
        if not self.clean:
            return f"{self.users_with_mismatches} users with mismatches"
        if self.stale_users:
            return f"{len(self.stale_users)} users not compared in the last {RECENT}"
        return "clean"

    def as_dict(self) -> dict[str, Any]:
        return {
            "cohort": self.cohort,
            "run_id": self.run_id,
            "status": self.status,
            "inject_bug": self.inject_bug,
            "started_at": self.started_at,
            "until": self.until,
            "ended_at": self.ended_at,
            "end_reason": self.end_reason,
            "members": self.members,
            "imports": self.by_import_status,
            "skipped": self.skipped,
            "users_compared": self.users_compared,
            "users_with_mismatches": self.users_with_mismatches,
            "checks": self.checks,
            "checks_by_outcome": self.checks_by_outcome,
            "reads_compared": self.reads_compared,
            "mismatches_by_field": self.mismatches_by_field,
            "mismatches_by_kind": self.mismatches_by_kind,
            "errors": self.errors,
            "last_check_at": self.last_check_at,
            "stale_users": self.stale_users,
            "clean": self.clean,
            "reusable": self.reusable,
            "verdict": self.verdict,
            "examples": self.examples,
        }


def build(session: Session, name: str, *, now: datetime | None = None) -> ShadowReport:
    cohorts.get(session, name)  # an unknown cohort is refused by name
    report = ShadowReport(name)
    run = latest_run(session, name)
    if run is None:
        return report
    report.run_id, report.status, report.inject_bug = run.id, run.status, run.inject_bug
    report.started_at, report.until = run.started_at, run.until
    report.ended_at, report.end_reason = run.ended_at, run.end_reason
    rows = list(session.scalars(sa.select(ShadowImport).where(ShadowImport.run_id == run.id)))
    report.members = len(rows)
    report.by_import_status = dict(Counter(r.status for r in rows))
    report.skipped = {r.user_id: r.reason or "" for r in rows if r.status == "skipped"}
    checks = list(
        session.scalars(
            sa.select(ShadowCheck)
            .where(ShadowCheck.run_id == run.id)
            .order_by(ShadowCheck.checked_at, ShadowCheck.id)
        )
    )
    report.checks = len(checks)
    report.checks_by_outcome = dict(Counter(c.outcome for c in checks))
    compared = {
        c.user_id for c in checks if c.kind == "next_charge" and c.outcome in ("clean", "mismatch")
    }
    report.users_compared = len(compared)
    report.reads_compared = sum(
        1 for c in checks if c.kind.startswith("read:") and c.outcome in ("clean", "mismatch")
    )
    report.errors = sum(1 for c in checks if c.outcome in ("error", "timeout"))
    users_by_field: dict[str, set[str]] = {}
    mismatched = [c for c in checks if c.outcome == "mismatch"]
    for c in mismatched:
        for f in c.fields or ["?"]:
            users_by_field.setdefault(f, set()).add(c.user_id)
    report.mismatches_by_field = {f: len(u) for f, u in sorted(users_by_field.items())}
    report.mismatches_by_kind = dict(Counter(c.kind for c in mismatched))
    report.users_with_mismatches = len({c.user_id for c in mismatched})
    report.last_check_at = checks[-1].checked_at if checks else None
    recent = (now or utcnow()) - RECENT
    report.stale_users = sorted(
        r.user_id
        for r in rows
        if r.status in ("pending", "active")
        and (r.last_checked_at is None or r.last_checked_at < recent)
    )
    report.examples = [
        {
            "user_id": c.user_id,
            "kind": c.kind,
            "trigger": c.trigger,
            "fields": c.fields,
            "checked_at": c.checked_at,
            "differences": (c.detail or {}).get("differences", [])[:5],
        }
        for c in reversed(mismatched[-EXAMPLES:])
    ]
    return report
