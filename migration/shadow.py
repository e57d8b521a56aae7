"""Shadow rehearsal of a cohort: its users imported into the new system *before* anyone
moves, as pending imports that never bill, kept in step with legacy and compared.

    start (`cohort shadow NAME`)  -> one pending import per user (``shadow_sync``)
    every day (beat) and on every legacy webhook of a shadowed user
                                  -> re-snapshot; changed: discard, re-import (new
                                     generation key); compare both next-charge previews
    every facade read of a shadowed user
                                  -> compared in the background (``shadow_reads``)
    `cohort run`                  -> a recent clean report: the load step adopts each
                                     import built from the same snapshot content; any
                                     other: every shadow import is discarded first
    the period ends (``until``, `cohort shadow-stop`, the cohort's users settled)
                                  -> every shadow import left is discarded

Nobody's route changes and no legacy subscription is touched: the users stay on
legacy the whole time. Rows: ``ShadowRun`` (one per rehearsal), ``ShadowImport`` (one
per user), ``ShadowCheck`` (one per comparison).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from core import audit
from core.db import transaction, utcnow
from core.errors import BackendUnavailable, InvalidInput, NotFound
from migration import cohorts, records
from migration.models import Cohort, CohortMember, ShadowImport, ShadowRun
from migration.transform import BUGS
from multiplexer import routing
from multiplexer.models import Route

if TYPE_CHECKING:
    from migration.deps import SagaDeps
    from migration.models import Migration

log = logging.getLogger("twinbill.shadow")

ACTIVE, HANDED_OVER, ENDED = "active", "handed_over", "ended"
OPEN = (ACTIVE, HANDED_OVER)
#: shadow imports that hold (or will hold) a pending import in the new system
LIVE = ("pending", "active", "skipped")
MAX_DAYS = 90
ACTOR = "system:shadow"


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


def open_run(session: Session, cohort: str) -> ShadowRun | None:
    return session.scalar(
        sa.select(ShadowRun).where(ShadowRun.cohort == cohort, ShadowRun.status.in_(OPEN))
    )


def latest_run(session: Session, cohort: str) -> ShadowRun | None:
    return session.scalar(
        sa.select(ShadowRun)
        .where(ShadowRun.cohort == cohort)
        .order_by(ShadowRun.started_at.desc())
        .limit(1)
    )


def check_can_start(
    session: Session, name: str, *, days: int, inject_bug: str | None = None
) -> tuple[Cohort, list[str]]:
    """Refuse, naming why, a rehearsal that cannot start; the cohort and its users if it can."""
    if not 1 <= days <= MAX_DAYS:
        raise InvalidInput(f"--days {days}: a shadow period is 1 to {MAX_DAYS} days")
    if inject_bug is not None and inject_bug not in BUGS:
        raise InvalidInput(f"--inject-bug {inject_bug!r}: one of {', '.join(sorted(BUGS))}")
    cohort = cohorts.get(session, name)
    members = list(session.scalars(sa.select(CohortMember).where(CohortMember.cohort == name)))
    if cohort.status != "created" or any(m.migration_id for m in members):
        raise InvalidInput(
            f"cohort {name!r} is {cohort.status} and has started moving users: only a "
            "cohort still on legacy that never ran can be shadowed"
        )
    current = open_run(session, name)
    if current is not None:
        raise InvalidInput(
            f"cohort {name!r} is already in shadow until {current.until:%Y-%m-%d %H:%M} UTC "
            f"(`twinbill cohort shadow-report {name}`; end it with "
            f"`twinbill cohort shadow-stop {name}`)"
        )
    ids = [m.user_id for m in members]
    routes = {r.user_id: r for r in session.scalars(sa.select(Route).where(Route.user_id.in_(ids)))}
    off = [u for u in ids if u not in routes or routes[u].state != routing.LEGACY]
    if off:
        states = (f"{u} ({routes[u].state if u in routes else 'unknown'})" for u in off[:10])
        raise InvalidInput(
            f"cohort {name!r}: only users on legacy can be shadowed; not: " + ", ".join(states)
        )
    return cohort, ids


def start(
    sessions: sessionmaker[Session],
    name: str,
    *,
    days: int,
    actor: str,
    inject_bug: str | None = None,
) -> tuple[str, list[str]]:
    """Check everything, then write the run and one pending shadow import per member, in one
    transaction (a refusal writes nothing). Returns (run id, shadow import ids); each is
    then imported by ``shadow_sync.sync`` (inline, or one task per user)."""
    with transaction(sessions) as session:
        cohort, ids = check_can_start(session, name, days=days, inject_bug=inject_bug)
        run = ShadowRun(
            id=new_id("shd"),
            cohort=name,
            status=ACTIVE,
            inject_bug=inject_bug if inject_bug is not None else cohort.inject_bug,
            until=utcnow() + timedelta(days=days),
            actor=actor,
        )
        session.add(run)
        session.flush()
        rows = [
            ShadowImport(id=new_id("shi"), run_id=run.id, cohort=name, user_id=u, status="pending")
            for u in ids
        ]
        session.add_all(rows)
        audit.record(
            session,
            actor=actor,
            action="cohort.shadow_started",
            resource_type="cohort",
            resource_id=name,
            after={"run": run.id, "users": len(ids), "days": days, "inject_bug": run.inject_bug},
        )
        return run.id, [r.id for r in rows]


def shadowed_import(session: Session, user_id: str) -> ShadowImport | None:
    """The user's shadow import in an *active* rehearsal (kept in step, compared)."""
    return session.scalar(
        sa.select(ShadowImport)
        .join(ShadowRun, ShadowRun.id == ShadowImport.run_id)
        .where(
            ShadowImport.user_id == user_id,
            ShadowImport.status.in_(LIVE),
            ShadowRun.status == ACTIVE,
        )
        .limit(1)
    )


def is_shadowed(sessions: sessionmaker[Session], user_id: str) -> bool:
    with sessions() as session:
        return shadowed_import(session, user_id) is not None


# -- discarding ----------------------------------------------------------------------------


def discard(deps: SagaDeps, row_id: str, *, status: str = "discarded", reason: str) -> None:
    """Remove the row's pending import from the new system (idempotent) and close the row."""
    with deps.sessions() as session:
        row = session.get(ShadowImport, row_id)
        if row is None or row.status in ("adopted", "discarded"):
            return
        import_id, generation = row.import_id, row.generation
    if import_id is not None:
        with contextlib.suppress(NotFound):
            deps.new.discard_import(import_id, idempotency_key=f"{row_id}:g{generation}:discard")
    with transaction(deps.sessions) as session:
        row = session.get(ShadowImport, row_id)
        assert row is not None
        row.status, row.reason, row.busy_until = status, reason[:500], None


def end(deps: SagaDeps, name: str, *, actor: str, reason: str) -> int:
    """End the cohort's open rehearsal: every shadow import not adopted is discarded."""
    with deps.sessions() as session:
        run = open_run(session, name)
        if run is None:
            cohorts.get(session, name)  # unknown cohort: its own error
            raise InvalidInput(f"cohort {name!r} has no shadow rehearsal under way")
        run_id = run.id
        rows = list(
            session.scalars(
                sa.select(ShadowImport.id).where(
                    ShadowImport.run_id == run_id, ShadowImport.status.in_(LIVE)
                )
            )
        )
    for row_id in rows:
        discard(deps, row_id, reason=f"shadow period ended: {reason}")
    with transaction(deps.sessions) as session:
        run = session.get(ShadowRun, run_id)
        assert run is not None
        run.status, run.ended_at, run.end_reason = ENDED, utcnow(), reason[:500]
        audit.record(
            session,
            actor=actor,
            action="cohort.shadow_ended",
            resource_type="cohort",
            resource_id=name,
            after={"run": run_id, "discarded": len(rows)},
            reason=reason,
        )
    return len(rows)


# -- handing over to `cohort run` ------------------------------------------------------------


def hand_over(deps: SagaDeps, name: str, *, actor: str) -> str | None:
    """`cohort run` starts: with a recent clean report the rehearsal's imports wait for the
    load step to adopt them (no more re-syncs); otherwise they are all discarded now."""
    from migration.shadow_report import build

    with deps.sessions() as session:
        run = open_run(session, name)
        if run is None or run.status != ACTIVE:
            return None
        report = build(session, name)
    if not report.reusable:
        end(
            deps,
            name,
            actor=actor,
            reason=f"cohort ran; shadow report not reusable ({report.verdict})",
        )
        return ENDED
    with transaction(deps.sessions) as session:
        row = session.get(ShadowRun, run.id)
        assert row is not None
        row.status = HANDED_OVER
        audit.record(
            session,
            actor=actor,
            action="cohort.shadow_handed_over",
            resource_type="cohort",
            resource_id=name,
            after={"run": run.id, "users_compared": report.users_compared},
        )
    return HANDED_OVER


def adopt_for_load(deps: SagaDeps, mig: Migration, content_hash: str) -> str | None:
    """The load step's reuse: the user's handed-over shadow import, when it was built from
    the same snapshot content (and the same mapping); any other shadow import of the user
    is discarded first, so the fresh import does not collide with it. Idempotent."""
    with deps.sessions() as session:
        row = session.scalar(
            sa.select(ShadowImport)
            .where(ShadowImport.user_id == mig.user_id, ShadowImport.status.in_((*LIVE, "adopted")))
            .order_by(ShadowImport.updated_at.desc())
            .limit(1)
        )
        if row is None:
            return None
        if row.status == "adopted":
            return row.import_id if row.migration_id == mig.id else None
        run = session.get(ShadowRun, row.run_id)
        row_id, import_id = row.id, row.import_id
        same = (
            run is not None
            and run.status == HANDED_OVER
            and row.status == "active"
            and row.content_hash == content_hash
            and run.inject_bug == mig.inject_bug
        )
    if not same or import_id is None:
        discard(deps, row_id, reason=f"migration {mig.id} imports afresh (snapshot differs)")
        return None
    now = utcnow()
    with transaction(deps.sessions) as session:
        taken = session.execute(
            sa.update(ShadowImport)
            .where(
                ShadowImport.id == row_id,
                ShadowImport.status == "active",
                sa.or_(ShadowImport.busy_until.is_(None), ShadowImport.busy_until < now),
            )
            .values(status="adopted", migration_id=mig.id, reason=f"adopted by {mig.id}")
            .execution_options(synchronize_session=False)
        )
        if taken.rowcount != 1:  # type: ignore[attr-defined]
            raise BackendUnavailable(
                f"shadow import of {mig.user_id} is being re-synced right now; retrying",
                backend="shadow",
            )
    return import_id


def release_member(deps: SagaDeps, mig: Migration) -> None:
    """After a worker ran a cohort member: a shadow import its migration did not adopt is
    of no use any more (the member finished, failed or was deferred) — discard it."""
    with deps.sessions() as session:
        ids = list(
            session.scalars(
                sa.select(ShadowImport.id).where(
                    ShadowImport.user_id == mig.user_id, ShadowImport.status.in_(LIVE)
                )
            )
        )
    if mig.status in ("pending", "running"):
        return
    for row_id in ids:
        discard(deps, row_id, reason=f"cohort member settled ({mig.status}) without it")


def tick(
    deps: SagaDeps,
    enqueue_sync: Callable[[str, str], None],
    *,
    every: timedelta = timedelta(days=1),
) -> dict[str, int]:
    """Beat: end rehearsals past their period, close handed-over ones whose members all
    settled, and schedule the daily re-sync and comparison of every shadowed user."""
    now = utcnow()
    out = {"ended": 0, "scheduled": 0}
    with deps.sessions() as session:
        runs = list(session.scalars(sa.select(ShadowRun).where(ShadowRun.status.in_(OPEN))))
    for run in runs:
        with deps.sessions() as session:
            cohort = session.get(Cohort, run.cohort)
            settled = cohort is not None and cohort.status == "done"
        if (run.status == ACTIVE and run.until <= now) or (run.status == HANDED_OVER and settled):
            why = "its period is over" if run.status == ACTIVE else "the cohort finished"
            end(deps, run.cohort, actor=ACTOR, reason=why)
            out["ended"] += 1
            continue
        if run.status != ACTIVE:
            continue
        with deps.sessions() as session:
            due = list(
                session.scalars(
                    sa.select(ShadowImport.id).where(
                        ShadowImport.run_id == run.id,
                        ShadowImport.status.in_(LIVE),
                        sa.or_(
                            ShadowImport.last_checked_at.is_(None),
                            ShadowImport.last_checked_at < now - every,
                        ),
                    )
                )
            )
        for row_id in due:
            enqueue_sync(row_id, "daily")
        out["scheduled"] += len(due)
    return out


def snapshot_hash(deps: SagaDeps, mig: Migration) -> str:
    assert mig.snapshot_id is not None
    return records.snapshot_hash(deps.sessions, mig.snapshot_id)
