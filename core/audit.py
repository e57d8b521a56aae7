"""The append-only activity log: every change twinbill makes, with actor and before/after.

Entries are written in the same transaction as the change they describe, so a
change without its audit entry cannot exist. The schema forbids UPDATE and
DELETE on the table (triggers in the Alembic revision).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column

from core.db import Base, UtcDateTime, utcnow


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(sa.String(120))  # "user:alice", "system:saga", "cli:root"
    action: Mapped[str] = mapped_column(sa.String(80), index=True)
    resource_type: Mapped[str] = mapped_column(sa.String(40))
    resource_id: Mapped[str] = mapped_column(sa.String(120))
    reason: Mapped[str | None] = mapped_column(sa.Text, default=None)
    before: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, default=None)
    after: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, default=None)

    __table_args__ = (sa.Index("ix_audit_log_resource", "resource_type", "resource_id", "id"),)


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    resource_type: str,
    resource_id: str,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    reason: str | None = None,
) -> AuditEntry:
    entry = AuditEntry(
        actor=actor,
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        before=before,
        after=after,
        reason=reason,
    )
    session.add(entry)
    return entry


def history(session: Session, resource_type: str, resource_id: str) -> list[AuditEntry]:
    stmt = (
        sa.select(AuditEntry)
        .where(AuditEntry.resource_type == resource_type, AuditEntry.resource_id == resource_id)
        .order_by(AuditEntry.id)
    )
    return list(session.scalars(stmt))
