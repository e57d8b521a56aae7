"""What the cohort dashboard draws: progress over time, users/s, failure and diff rates,
legacy budget use; and one page of the cohort's members.

Time series are bucketed from the first migration start to the last finish (or now
while running) into at most ``BUCKETS`` buckets, from the migrations' own
timestamps and the reconciler's per-user results, so a restart of the web process
loses nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from core.db import utcnow
from migration.models import CohortMember, Migration, ShadowCheck
from multiplexer.models import Route
from reconciler.models import ReconciliationResult

BUCKETS = 40
MEMBERS_PAGE = 50


@dataclass
class CohortSeries:
    start: datetime | None
    done: list[tuple[float, float]] = field(default_factory=list)  # cumulative succeeded
    failed: list[tuple[float, float]] = field(default_factory=list)  # cumulative failed
    rate: list[tuple[float, float]] = field(default_factory=list)  # users/s per bucket
    failure_rate: list[tuple[float, float]] = field(default_factory=list)  # % of finished
    diff_rate: list[tuple[float, float]] = field(default_factory=list)  # % of checked
    peak_rate: float = 0.0
    mean_rate: float = 0.0


def _buckets(start: datetime, end: datetime) -> tuple[float, int]:
    span = max((end - start).total_seconds(), 1.0)
    n = max(1, min(BUCKETS, int(span)))
    return span / n, n


def _index(at: datetime, start: datetime, width: float, n: int) -> int:
    return min(n - 1, max(0, int((at - start).total_seconds() // width)))


def series(session: Session, name: str, *, now: datetime | None = None) -> CohortSeries:
    rows = session.execute(
        sa.select(Migration.started_at, Migration.finished_at, Migration.status).where(
            Migration.cohort == name, Migration.finished_at.is_not(None)
        )
    ).all()
    checks = session.execute(
        sa.select(ReconciliationResult.checked_at, ReconciliationResult.clean).where(
            ReconciliationResult.cohort == name
        )
    ).all()
    if not rows:
        return CohortSeries(None)
    starts = [r.started_at or r.finished_at for r in rows]
    start = min(starts)
    end = max(r.finished_at for r in rows)
    if checks:
        end = max(end, max(c.checked_at for c in checks))
    if now is not None and now > end:
        end = now
    width, n = _buckets(start, end)
    ok, bad = [0] * n, [0] * n
    for r in rows:
        i = _index(r.finished_at, start, width, n)
        (bad if r.status == "failed" else ok)[i] += 1
    checked, dirty = [0] * n, [0] * n
    for c in checks:
        i = _index(c.checked_at, start, width, n)
        checked[i] += 1
        dirty[i] += 0 if c.clean else 1
    out = CohortSeries(start)
    cum_ok = cum_bad = cum_checked = cum_dirty = 0
    out.done.append((0.0, 0.0))
    out.failed.append((0.0, 0.0))
    for i in range(n):
        x = (i + 1) * width
        cum_ok, cum_bad = cum_ok + ok[i], cum_bad + bad[i]
        cum_checked, cum_dirty = cum_checked + checked[i], cum_dirty + dirty[i]
        out.done.append((x, float(cum_ok)))
        out.failed.append((x, float(cum_bad)))
        per_second = (ok[i] + bad[i]) / width
        out.rate.append((x, per_second))
        out.peak_rate = max(out.peak_rate, per_second)
        finished = cum_ok + cum_bad
        if finished:
            out.failure_rate.append((x, 100.0 * cum_bad / finished))
        if cum_checked:
            out.diff_rate.append((x, 100.0 * cum_dirty / cum_checked))
    out.mean_rate = len(rows) / max((end - start).total_seconds(), 1.0)
    return out


def budget_bars(limits: list[dict[str, Any]]) -> list[tuple[str, float, float, str]]:
    """(label, effective rate, configured rate, tone) per limiter: how much budget is left
    after 429 penalties (a throttled legacy account shows a short bar)."""
    out = []
    for s in limits:
        if s.get("error"):
            continue
        configured = float(s.get("configured_rate") or 0.0)
        effective = float(s.get("effective_rate") or 0.0)
        tone = "good" if effective >= configured * 0.9 else "warn"
        out.append((str(s.get("name")), effective, configured, tone))
    return out


@dataclass(frozen=True, slots=True)
class MemberRow:
    user_id: str
    status: str
    migration_id: str | None
    reason: str | None
    route_state: str | None
    system: str | None


def members(
    session: Session, name: str, *, status: str = "", after: str | None = None
) -> tuple[list[MemberRow], str | None]:
    """One page of the cohort's members (keyset on user id) with their route state."""
    stmt = (
        sa.select(CohortMember, Route.state, Route.system)
        .outerjoin(Route, Route.user_id == CohortMember.user_id)
        .where(CohortMember.cohort == name)
        .order_by(CohortMember.user_id)
        .limit(MEMBERS_PAGE + 1)
    )
    if status:
        stmt = stmt.where(CohortMember.status == status)
    if after:
        stmt = stmt.where(CohortMember.user_id > after)
    rows = [
        MemberRow(m.user_id, m.status, m.migration_id, m.reason, state, system)
        for m, state, system in session.execute(stmt)
    ]
    more = len(rows) > MEMBERS_PAGE
    rows = rows[:MEMBERS_PAGE]
    return rows, (rows[-1].user_id if more and rows else None)


def now_if_running(status: str) -> datetime | None:
    return utcnow() if status == "running" else None


@dataclass
class ShadowSeries:
    start: datetime | None
    compared: list[tuple[float, float]] = field(default_factory=list)  # checks per bucket
    mismatched: list[tuple[float, float]] = field(default_factory=list)  # of which mismatched
    failed: list[tuple[float, float]] = field(default_factory=list)  # error or timeout


def shadow_series(session: Session, run_id: str | None, *, now: datetime | None) -> ShadowSeries:
    """A shadow rehearsal's comparisons over time, bucketed like the cohort's progress."""
    if run_id is None:
        return ShadowSeries(None)
    rows = session.execute(
        sa.select(ShadowCheck.checked_at, ShadowCheck.outcome).where(ShadowCheck.run_id == run_id)
    ).all()
    if not rows:
        return ShadowSeries(None)
    start = min(r.checked_at for r in rows)
    end = max([r.checked_at for r in rows] + ([now] if now is not None else []))
    width, n = _buckets(start, end)
    counts = {k: [0] * n for k in ("compared", "mismatched", "failed")}
    for r in rows:
        i = _index(r.checked_at, start, width, n)
        if r.outcome in ("clean", "mismatch"):
            counts["compared"][i] += 1
        if r.outcome == "mismatch":
            counts["mismatched"][i] += 1
        if r.outcome in ("error", "timeout"):
            counts["failed"][i] += 1
    out = ShadowSeries(start)
    for i in range(n):
        x = (i + 1) * width
        out.compared.append((x, float(counts["compared"][i])))
        out.mismatched.append((x, float(counts["mismatched"][i])))
        out.failed.append((x, float(counts["failed"][i])))
    return out
