"""Storing reports and reading results back (what the admin UI and the saga call)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from reconciler.models import ReconciliationReport, ReconciliationResult
from reconciler.report import Report, UserResult


def start_report(session: Session, report: Report) -> ReconciliationReport:
    """Insert the report row first, so a long bulk run can add results as it goes."""
    row = ReconciliationReport(
        created_at=report.created_at,
        created_by=report.created_by,
        scope_kind=report.scope_kind,
        scope_value=report.scope_value,
        body={},
        users_checked=0,
        users_with_differences=0,
        differences=0,
        violations=0,
        counts_by_kind={},
        clean=True,
    )
    session.add(row)
    session.flush()
    report.id = row.id
    return row


def add_results(session: Session, report_id: int, results: Iterable[UserResult]) -> int:
    rows = [
        ReconciliationResult(
            report_id=report_id,
            user_id=r.user_id,
            cohort=r.cohort,
            clean=r.clean,
            differences=len(r.differences),
            violations=len(r.violations),
            counts_by_kind=r.counts_by_kind(),
            checked_at=r.checked_at,
        )
        for r in results
    ]
    session.add_all(rows)
    session.flush()
    return len(rows)


def finish_report(session: Session, row: ReconciliationReport, report: Report) -> None:
    summary = report.summary
    row.body = report.to_dict()
    row.users_checked = summary.users_checked
    row.users_with_differences = summary.users_with_differences
    row.differences = summary.differences
    row.violations = summary.violations + len(report.population_violations)
    row.counts_by_kind = {**dict(summary.by_kind), **dict(summary.by_invariant)}
    row.clean = report.clean
    session.flush()


def store_report(session: Session, report: Report) -> ReconciliationReport:
    """Store a finished in-memory report and its per-user results (caller commits)."""
    row = start_report(session, report)
    add_results(session, row.id, report.results)
    finish_report(session, row, report)
    return row


def _latest_ids(cohort: str, since: datetime) -> sa.Subquery:
    return (
        sa.select(sa.func.max(ReconciliationResult.id).label("id"))
        .where(ReconciliationResult.cohort == cohort, ReconciliationResult.checked_at >= since)
        .group_by(ReconciliationResult.user_id)
        .subquery()
    )


def latest_results(session: Session, cohort: str, since: datetime) -> list[ReconciliationResult]:
    """The most recent result per user of a cohort label, checked at or after ``since``."""
    latest = _latest_ids(cohort, since)
    stmt = (
        sa.select(ReconciliationResult)
        .join(latest, ReconciliationResult.id == latest.c.id)
        .order_by(ReconciliationResult.user_id)
    )
    return list(session.scalars(stmt))


def diff_rate(session: Session, cohort: str, since: datetime) -> tuple[int, int]:
    """(users checked, users whose latest result is not clean) for a cohort since T."""
    latest = _latest_ids(cohort, since)
    stmt = sa.select(
        sa.func.count(ReconciliationResult.id),
        sa.func.coalesce(
            sa.func.sum(sa.case((ReconciliationResult.clean.is_(False), 1), else_=0)), 0
        ),
    ).join(latest, ReconciliationResult.id == latest.c.id)
    checked, with_diffs = session.execute(stmt).one()
    return int(checked), int(with_diffs)


def get_report(session: Session, report_id: int) -> ReconciliationReport | None:
    return session.get(ReconciliationReport, report_id)


def latest_result_for_user(session: Session, user_id: str) -> ReconciliationResult | None:
    stmt = (
        sa.select(ReconciliationResult)
        .where(ReconciliationResult.user_id == user_id)
        .order_by(ReconciliationResult.id.desc())
        .limit(1)
    )
    return session.scalars(stmt).first()
