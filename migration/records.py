"""Durable bookkeeping of the saga: migration rows, step records, snapshots (leases:
``migration.leases``).

Every function here commits its own short transaction: a worker killed at any
line leaves at worst a step marked ``running``, which the next run repeats
(every step is safe to run twice).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from core import audit
from core.db import transaction, utcnow
from core.errors import ReconciliationError
from core.observability import MIGRATIONS, SAGA_STEPS
from migration.models import CohortMember, Migration, MigrationStep, Snapshot
from multiplexer.backends.base import RawSnapshot

ACTIVE = ("pending", "running", "deferred", "retrying")  # retrying: after the pivot
TERMINAL = ("succeeded", "failed", "compensated", "dry_run")


def new_id() -> str:
    return "mig_" + secrets.token_hex(10)


def content_hash(objects: dict[str, Any]) -> str:
    blob = json.dumps(objects, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def create(
    sessions: sessionmaker[Session],
    user_id: str,
    *,
    cohort: str | None = None,
    dry_run: bool = False,
    include_in_flight: bool = False,
    inject_bug: str | None = None,
    direction: str = "forward",
) -> str:
    """A migration for the user, or the one already under way (never two at once; a
    rollback is refused while a forward migration is under way, and the reverse)."""
    with transaction(sessions) as session:
        return create_in(
            session,
            user_id,
            active_of(session, [user_id], dry_run).get(user_id),
            cohort=cohort,
            dry_run=dry_run,
            include_in_flight=include_in_flight,
            inject_bug=inject_bug,
            direction=direction,
        )


def create_in(
    session: Session,
    user_id: str,
    existing: Migration | None,
    *,
    cohort: str | None = None,
    dry_run: bool = False,
    include_in_flight: bool = False,
    inject_bug: str | None = None,
    direction: str = "forward",
) -> str:
    """``create`` inside the caller's transaction (a cohort's start creates many in one),
    given the user's migration under way (``active_of``: a batch looks them up at once)."""
    if existing is not None:
        if existing.direction != direction:
            from core.errors import IllegalTransition

            raise IllegalTransition(
                f"user {user_id!r} has a {existing.direction} migration under way "
                f"({existing.id}, {existing.status}); let it finish first"
            )
        return existing.id
    mig = Migration(
        id=new_id(),
        user_id=user_id,
        cohort=cohort,
        status="pending",
        dry_run=dry_run,
        include_in_flight=include_in_flight,
        inject_bug=inject_bug,
        pivoted=False,
        generation=1,
        direction=direction,
    )
    session.add(mig)
    if cohort:
        mark_member(session, cohort, user_id, "queued", migration_id=mig.id)
    return mig.id


def active_of(session: Session, users: Sequence[str], dry_run: bool) -> dict[str, Migration]:
    """Each user's migration under way (``ACTIVE``; dry runs apart): never more than one."""
    return {
        m.user_id: m
        for m in session.scalars(
            sa.select(Migration).where(
                Migration.user_id.in_(list(users)),
                Migration.status.in_(ACTIVE),
                Migration.dry_run.is_(dry_run),
            )
        )
    }


def mark_member(session: Session, cohort: str, user_id: str, status: str, **fields: Any) -> None:
    member = session.get(CohortMember, (cohort, user_id))
    if member is None:
        return
    member.status = status
    for k, v in fields.items():
        setattr(member, k, v)


def load(sessions: sessionmaker[Session], migration_id: str) -> Migration:
    with sessions() as session:
        mig = session.get(Migration, migration_id)
        if mig is None:
            raise LookupError(f"no migration {migration_id!r}")
        return mig


def begin_step(
    sessions: sessionmaker[Session], mig: Migration, step: str, key: str | None = None
) -> int:
    # Core statements, not the ORM: these two and `end_step` run about a dozen times per
    # migrated user, and on SQLite each holds the one write lock for as long as it takes
    attempt = (
        sa.select(sa.func.count() + 1)
        .select_from(MigrationStep)
        .where(MigrationStep.migration_id == mig.id, MigrationStep.step == step)
        .scalar_subquery()
    )
    with transaction(sessions) as session:
        conn = session.connection()
        step_id = conn.execute(
            sa.insert(MigrationStep)
            .values(
                migration_id=mig.id,
                step=step,
                attempt=attempt,
                idempotency_key=key,
                outcome="running",
                started_at=utcnow(),
            )
            .returning(MigrationStep.id)
        ).scalar_one()
        conn.execute(
            sa.update(Migration).where(Migration.id == mig.id).values(heartbeat_at=utcnow())
        )
        return int(step_id)


def end_step(
    sessions: sessionmaker[Session],
    step_id: int,
    *,
    outcome: str,
    detail: dict[str, Any] | None = None,
    error: BaseException | None = None,
    advance: dict[str, Any] | None = None,
    actor: str = "system:saga",
) -> None:
    """Close a step record and (on success) advance the migration, in one transaction."""
    now = utcnow()
    fields: dict[str, Any] = {"finished_at": now, "outcome": outcome, "detail": detail}
    if error is not None:
        fields["error_kind"] = getattr(error, "kind", "bug")
        fields["error_message"] = str(error)[:2000]
    with transaction(sessions) as session:
        conn = session.connection()
        row = conn.execute(
            sa.update(MigrationStep)
            .where(MigrationStep.id == step_id)
            .values(**fields)
            .returning(
                MigrationStep.migration_id,
                MigrationStep.step,
                MigrationStep.attempt,
                MigrationStep.started_at,
            )
        ).one()
        SAGA_STEPS.labels(row.step, outcome).observe((now - row.started_at).total_seconds())
        moved: dict[str, Any] = {"heartbeat_at": now}
        if outcome == "ok":
            moved = {**moved, "step": row.step, **(advance or {})}
        user_id = conn.execute(
            sa.update(Migration)
            .where(Migration.id == row.migration_id)
            .values(**moved)
            .returning(Migration.user_id)
        ).scalar_one()
        audit.record(
            session,
            actor=actor,
            action=f"saga.{row.step}.{outcome}",
            resource_type="migration",
            resource_id=row.migration_id,
            after={
                "user_id": user_id,
                "attempt": row.attempt,
                **({"error": fields["error_message"]} if error else {}),
            },
        )


def finish(
    sessions: sessionmaker[Session],
    migration_id: str,
    status: str,
    *,
    error: BaseException | None = None,
    member_status: str | None = None,
    reason: str | None = None,
    defer_until: datetime | None = None,
) -> None:
    with transaction(sessions) as session:
        mig = session.get(Migration, migration_id)
        assert mig is not None
        mig.status = status
        mig.owner = None
        MIGRATIONS.labels(status, mig.step or "none").inc()
        mig.finished_at = utcnow() if status in TERMINAL else None
        if error is not None:
            mig.error_kind = getattr(error, "kind", "bug")
            mig.error_message = str(error)[:2000]
        if status in ("deferred", "retrying"):
            mig.defer_reason, mig.defer_until = reason, defer_until
        if mig.cohort:
            mark_member(
                session,
                mig.cohort,
                mig.user_id,
                member_status or status,
                reason=reason or (str(error)[:500] if error else None),
                error_kind=getattr(error, "kind", None) if error else None,
            )


def store_snapshot(
    sessions: sessionmaker[Session], migration_id: str, snap: RawSnapshot
) -> tuple[int, str]:
    with transaction(sessions) as session:
        return _add_snapshot(session, migration_id, snap)


def _add_snapshot(session: Session, migration_id: str, snap: RawSnapshot) -> tuple[int, str]:
    digest = content_hash(snap.objects)
    row = Snapshot(
        migration_id=migration_id,
        user_id=snap.user_id,
        customer_id=snap.customer_id,
        content_hash=digest,
        body=snap.objects,
        # when the read *started*: the event-based re-check asks "any change after it?"
        **({"taken_at": snap.taken_at} if snap.taken_at is not None else {}),
    )
    session.add(row)
    session.flush()
    return row.id, digest


def attach_snapshot(sessions: sessionmaker[Session], migration_id: str, snap: RawSnapshot) -> bool:
    """Store a prefetched snapshot as the one preflight will use, if the migration has not
    started yet (pending, no step, no snapshot); else nothing is written."""
    with transaction(sessions) as session:
        mig = session.get(Migration, migration_id, with_for_update=True)
        if mig is None or (mig.status, mig.step, mig.snapshot_id, mig.owner) != (
            "pending",
            None,
            None,
            None,
        ):
            return False
        mig.snapshot_id, _ = _add_snapshot(session, migration_id, snap)
        mig.queued_at = utcnow()  # its prefetch enqueues it now
        return True


def mark_queued(sessions: sessionmaker[Session], migration_ids: Sequence[str]) -> None:
    """Note that these migrations are handed to the queue now (``Migration.queued_at``)."""
    ids = list(migration_ids)
    now = utcnow()
    for at in range(0, len(ids), 500):  # SQLite's bound parameters, a batch at a time
        with transaction(sessions) as session:
            session.execute(
                sa.update(Migration)
                .where(Migration.id.in_(ids[at : at + 500]))
                .values(queued_at=now)
                .execution_options(synchronize_session=False)
            )


def fresh_snapshot(
    sessions: sessionmaker[Session], snapshot_id: int, *, max_age: float
) -> RawSnapshot | None:
    """The stored snapshot if its read started less than ``max_age`` seconds ago."""
    snap = load_snapshot(sessions, snapshot_id)
    if snap.taken_at is None or snap.taken_at < utcnow() - timedelta(seconds=max_age):
        return None
    return snap


def load_snapshot(sessions: sessionmaker[Session], snapshot_id: int) -> RawSnapshot:
    """A stored snapshot, refused if its content no longer matches its hash."""
    with sessions() as session:
        row = session.get(Snapshot, snapshot_id)
        if row is None:
            raise ReconciliationError(f"snapshot {snapshot_id} does not exist")
        if content_hash(row.body) != row.content_hash:
            raise ReconciliationError(
                f"snapshot {snapshot_id} of user {row.user_id} fails its content hash: "
                "it was altered after it was taken, so it no longer proves what legacy held; "
                "restore it from a backup (runbook: tampered snapshot)"
            )
        return RawSnapshot(row.user_id, row.customer_id, row.body, taken_at=row.taken_at)


def snapshot_hash(sessions: sessionmaker[Session], snapshot_id: int) -> str:
    with sessions() as session:
        row = session.get(Snapshot, snapshot_id)
        assert row is not None
        return row.content_hash


def last_ok_step(session: Session, migration_id: str, step: str) -> MigrationStep | None:
    """The latest successful run of one step (its detail, its end), or None."""
    return session.scalar(
        sa.select(MigrationStep)
        .where(
            MigrationStep.migration_id == migration_id,
            MigrationStep.step == step,
            MigrationStep.outcome == "ok",
        )
        .order_by(MigrationStep.id.desc())
        .limit(1)
    )


def steps_of(session: Session, migration_id: str) -> list[MigrationStep]:
    return list(
        session.scalars(
            sa.select(MigrationStep)
            .where(MigrationStep.migration_id == migration_id)
            .order_by(MigrationStep.id)
        )
    )
