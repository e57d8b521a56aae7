"""Stored reconciliation reports and per-user results (read by the admin UI and the saga).

The reconciler knows nothing of cohort runs: a result carries the user's cohort
*label* as a plain string, and the migration engine reads results by label to
decide whether a cohort's diff rate crossed its threshold.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UtcDateTime, utcnow

_BigId = sa.BigInteger().with_variant(sa.Integer, "sqlite")


class ReconciliationReport(Base):
    __tablename__ = "reconciliation_reports"

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    created_by: Mapped[str] = mapped_column(sa.String(120))
    scope_kind: Mapped[str] = mapped_column(sa.String(20))  # user | users | cohort | all
    scope_value: Mapped[str | None] = mapped_column(sa.String(200), default=None)
    body: Mapped[dict[str, Any]] = mapped_column(sa.JSON)  # Report.to_dict(), schema_version 1
    users_checked: Mapped[int] = mapped_column(sa.Integer, default=0)
    users_with_differences: Mapped[int] = mapped_column(sa.Integer, default=0)
    differences: Mapped[int] = mapped_column(sa.Integer, default=0)
    violations: Mapped[int] = mapped_column(sa.Integer, default=0)
    counts_by_kind: Mapped[dict[str, int]] = mapped_column(sa.JSON, default=dict)
    clean: Mapped[bool] = mapped_column(sa.Boolean, default=True)

    __table_args__ = (
        sa.Index("ix_reconciliation_reports_scope", "scope_kind", "scope_value", "id"),
    )


class ReconciliationResult(Base):
    __tablename__ = "reconciliation_results"

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    report_id: Mapped[int] = mapped_column(
        _BigId, sa.ForeignKey("reconciliation_reports.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[str] = mapped_column(sa.String(120))
    cohort: Mapped[str | None] = mapped_column(sa.String(120), default=None)
    clean: Mapped[bool] = mapped_column(sa.Boolean)
    differences: Mapped[int] = mapped_column(sa.Integer, default=0)
    violations: Mapped[int] = mapped_column(sa.Integer, default=0)
    counts_by_kind: Mapped[dict[str, int]] = mapped_column(sa.JSON, default=dict)
    checked_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    __table_args__ = (
        # latest result per user: WHERE user_id = ? ORDER BY id DESC LIMIT 1
        sa.Index("ix_reconciliation_results_user", "user_id", "id"),
        # per cohort since T: WHERE cohort = ? AND checked_at >= ?
        sa.Index("ix_reconciliation_results_cohort", "cohort", "checked_at", "user_id"),
    )
