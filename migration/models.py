"""Durable state of migrations: one row per attempt to move a user, one per saga step."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UtcDateTime, utcnow

BigId = sa.BigInteger().with_variant(sa.Integer, "sqlite")


class Migration(Base):
    __tablename__ = "migrations"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)  # mig_<hex>
    user_id: Mapped[str] = mapped_column(sa.String(120), index=True)
    cohort: Mapped[str | None] = mapped_column(sa.String(80), default=None, index=True)
    # pending | running | deferred | succeeded | failed | compensated | dry_run
    status: Mapped[str] = mapped_column(sa.String(12), index=True)
    step: Mapped[str | None] = mapped_column(sa.String(20), default=None)  # last finished step
    pivoted: Mapped[bool] = mapped_column(sa.Boolean, default=False)  # legacy cancel started
    generation: Mapped[int] = mapped_column(sa.Integer, default=1)  # bumped by re-check restarts
    dry_run: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    # forward (legacy -> new: migration.steps) | rollback (new -> legacy: migration.rollback)
    direction: Mapped[str] = mapped_column(
        sa.String(10), default="forward", server_default="forward"
    )
    include_in_flight: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    inject_bug: Mapped[str | None] = mapped_column(sa.String(40), default=None)
    snapshot_id: Mapped[int | None] = mapped_column(BigId, default=None)
    import_id: Mapped[str | None] = mapped_column(sa.String(60), default=None)
    # indexed: each worker process beats its received marks by owner (leases.beat_received)
    owner: Mapped[str | None] = mapped_column(sa.String(120), default=None, index=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None, index=True)
    error_kind: Mapped[str | None] = mapped_column(sa.String(20), default=None)
    error_message: Mapped[str | None] = mapped_column(sa.Text, default=None)
    defer_reason: Mapped[str | None] = mapped_column(sa.Text, default=None)
    defer_until: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # when it was last handed to the queue (records.mark_queued): the reaper presumes a
    # pending migration's task lost only this long after it was queued, never counting
    # the hours a big cohort's later chunks wait for their read (migration.reaper)
    queued_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)


class MigrationStep(Base):
    __tablename__ = "migration_steps"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    migration_id: Mapped[str] = mapped_column(sa.ForeignKey("migrations.id"))
    step: Mapped[str] = mapped_column(sa.String(20))
    attempt: Mapped[int] = mapped_column(sa.Integer, default=1)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    outcome: Mapped[str] = mapped_column(sa.String(12), default="running")  # running|ok|error
    error_kind: Mapped[str | None] = mapped_column(sa.String(20), default=None)
    error_message: Mapped[str | None] = mapped_column(sa.Text, default=None)
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(120), default=None)
    detail: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, default=None)

    __table_args__ = (sa.Index("ix_migration_steps_migration", "migration_id", "id"),)


class Snapshot(Base):
    """A user's complete legacy state at fetch time, with a content hash."""

    __tablename__ = "snapshots"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    migration_id: Mapped[str] = mapped_column(sa.String(40), index=True)
    user_id: Mapped[str] = mapped_column(sa.String(120), index=True)
    customer_id: Mapped[str] = mapped_column(sa.String(120))
    content_hash: Mapped[str] = mapped_column(sa.String(64))
    body: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    taken_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Cohort(Base):
    __tablename__ = "cohorts"

    name: Mapped[str] = mapped_column(sa.String(80), primary_key=True)
    # created | running | paused | halted | done
    status: Mapped[str] = mapped_column(sa.String(10), default="created")
    definition: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    halt_at_bp: Mapped[int] = mapped_column(sa.Integer, default=500)  # 5.00 %
    halt_reason: Mapped[str | None] = mapped_column(sa.Text, default=None)
    dry_run: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    include_in_flight: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    inject_bug: Mapped[str | None] = mapped_column(sa.String(40), default=None)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    # the lease of the prefetch task reading its members (migration.prefetch.lease): held
    # from the read's start until every member it was handed is enqueued; gone stale, the
    # reaper hands the members it did not enqueue back (migration.reaper)
    prefetch_owner: Mapped[str | None] = mapped_column(sa.String(120), default=None)
    prefetch_heartbeat_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)


class CohortMember(Base):
    __tablename__ = "cohort_members"

    cohort: Mapped[str] = mapped_column(sa.ForeignKey("cohorts.name"), primary_key=True)
    user_id: Mapped[str] = mapped_column(sa.String(120), primary_key=True)
    # pending | queued | running | done | failed | deferred
    status: Mapped[str] = mapped_column(sa.String(10), default="pending")
    migration_id: Mapped[str | None] = mapped_column(sa.String(40), default=None)
    reason: Mapped[str | None] = mapped_column(sa.Text, default=None)
    error_kind: Mapped[str | None] = mapped_column(sa.String(20), default=None)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (sa.Index("ix_cohort_members_status", "cohort", "status"),)


class ShadowRun(Base):
    """A cohort's shadow rehearsal: its users imported into new as pending, never billing,
    kept in step with legacy and compared daily, until ``until`` or the cohort runs."""

    __tablename__ = "shadow_runs"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)  # shd_<hex>
    cohort: Mapped[str] = mapped_column(sa.ForeignKey("cohorts.name"), index=True)
    # active | handed_over (the cohort runs: reused by its load step) | ended
    status: Mapped[str] = mapped_column(sa.String(12), default="active")
    inject_bug: Mapped[str | None] = mapped_column(sa.String(40), default=None)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    until: Mapped[datetime] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    end_reason: Mapped[str | None] = mapped_column(sa.Text, default=None)
    actor: Mapped[str] = mapped_column(sa.String(120))


class ShadowImport(Base):
    """One user's shadow import: the snapshot it was built from and its generation (bumped
    whenever legacy changed and it was re-imported)."""

    __tablename__ = "shadow_imports"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)  # shi_<hex>
    run_id: Mapped[str] = mapped_column(sa.ForeignKey("shadow_runs.id"), index=True)
    cohort: Mapped[str] = mapped_column(sa.String(80))
    user_id: Mapped[str] = mapped_column(sa.String(120), index=True)
    # pending (not imported yet) | active | skipped (preflight defers it) | adopted | discarded
    status: Mapped[str] = mapped_column(sa.String(10), default="pending")
    generation: Mapped[int] = mapped_column(sa.Integer, default=0)
    snapshot_id: Mapped[int | None] = mapped_column(BigId, default=None)
    content_hash: Mapped[str | None] = mapped_column(sa.String(64), default=None)
    import_id: Mapped[str | None] = mapped_column(sa.String(60), default=None)
    reason: Mapped[str | None] = mapped_column(sa.Text, default=None)
    migration_id: Mapped[str | None] = mapped_column(sa.String(40), default=None)  # adopted by
    busy_until: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)  # sync lease
    last_checked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (sa.Index("ix_shadow_imports_run_user", "run_id", "user_id", unique=True),)


class ShadowCheck(Base):
    """One comparison of a shadowed user: both next-charge previews (``next_charge``) or one
    application read through the facade (``read:<operation>``). ``outcome``: clean |
    mismatch | error | timeout; ``fields`` names what differed."""

    __tablename__ = "shadow_checks"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(sa.String(40))
    user_id: Mapped[str] = mapped_column(sa.String(120))
    kind: Mapped[str] = mapped_column(sa.String(40))
    trigger: Mapped[str] = mapped_column(sa.String(20))  # start | daily | webhook | facade
    outcome: Mapped[str] = mapped_column(sa.String(10))
    fields: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    detail: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, default=None)
    generation: Mapped[int] = mapped_column(sa.Integer, default=0)
    checked_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    __table_args__ = (sa.Index("ix_shadow_checks_run", "run_id", "checked_at"),)
