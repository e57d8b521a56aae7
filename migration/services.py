"""What the CLI, the admin and the Celery tasks call: plain functions over ``SagaDeps``.

Tasks in ``migration/tasks.py`` are a few lines each that call these; tests call
them directly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from core.db import transaction
from core.errors import InvalidInput, TwinbillError
from migration import cohort_progress, cohorts, leases, records, saga, stage
from migration import prefetch as prefetch_mod
from migration.models import Cohort, CohortMember, Migration
from migration.saga import Requeue, SagaDeps
from multiplexer import routing
from multiplexer.cache import RouteCache
from multiplexer.models import Route

log = logging.getLogger("twinbill.migration")

Enqueue = Callable[[str], None]  # migration id -> schedule a worker run
#: (cohort, migration ids) -> schedule ``prefetch_chunk`` (the ``twinbill.prefetch`` task)
Prefetch = Callable[[str, list[str]], None]
#: members whose migrations a cohort's start creates in one transaction
START_BATCH = 500


def migrate_user(
    deps: SagaDeps,
    user_id: str,
    *,
    cohort: str | None = None,
    dry_run: bool = False,
    include_in_flight: bool = False,
    inject_bug: str | None = None,
) -> Migration:
    """Synchronously migrate one user (``twinbill migrate USER_ID``); an unknown user is
    refused before any migration record is written."""
    from core.errors import UnknownUser

    with deps.sessions() as session:
        if session.get(Route, user_id) is None:
            raise UnknownUser(user_id)
    mig_id = records.create(
        deps.sessions,
        user_id,
        cohort=cohort,
        dry_run=dry_run,
        include_in_flight=include_in_flight,
        inject_bug=inject_bug,
    )
    return saga.run(deps, mig_id)


def resume_user(deps: SagaDeps, user_id: str) -> Migration:
    """Resume a user's failed migration from its last finished step (after a human fix)."""
    return saga.run(deps, reopen_for_resume(deps.sessions, deps.cache, user_id))


def reopen_for_resume(sessions: sessionmaker[Session], cache: RouteCache, user_id: str) -> str:
    """Mark the user's failed post-pivot migration running again; its id, for a worker to run.

    The admin calls this and enqueues ``twinbill.migrate`` instead of running the saga
    inside a web request (``resume_user`` runs it in-process for the CLI).
    """
    with transaction(sessions) as session:
        mig = cohorts.latest_migration(session, user_id)
        if mig is None or mig.status not in ("failed", "running", "retrying"):
            raise InvalidInput(f"user {user_id!r} has no failed migration to resume")
        if not mig.pivoted:
            raise InvalidInput(
                f"migration {mig.id} failed before the pivot and was "
                "compensated: start a new one instead"
            )
        route = session.get(Route, user_id)
        if route is not None and route.state == routing.FAILED:
            routing.transition(
                session,
                user_id,
                routing.MIGRATING,
                actor="system:saga",
                reason=f"resume {mig.id}",
                cache=cache,
            )
        mig.status, mig.owner, mig.error_kind, mig.error_message = "running", None, None, None
        return mig.id


def start_cohort(
    deps: SagaDeps,
    name: str,
    enqueue: Enqueue,
    *,
    actor: str,
    retry_failed: bool = False,
    prefetch: Prefetch | None = None,
) -> int:
    """Mark the cohort running and enqueue every member that still has to go.

    With ``prefetch``, members whose snapshots are cheaper to read in bulk
    (``migration.prefetch``) are handed to it instead, to be enqueued once read."""
    from migration import shadow

    cohorts.set_status(deps.sessions, name, "running", actor=actor)
    shadow.hand_over(deps, name, actor=actor)  # reuse a clean rehearsal's imports, or discard
    statuses = ["pending", "queued", "deferred"] + (["failed"] if retry_failed else [])
    with deps.sessions() as session:
        cohort = cohorts.get(session, name)
        users = cohorts.members_to_start(session, name, statuses)
        opts = dict(
            dry_run=cohort.dry_run,
            include_in_flight=cohort.include_in_flight,
            inject_bug=cohort.inject_bug,
        )
    ids: list[str] = []
    # a transaction and four queries per batch, not three transactions per member: a
    # cohort of 2,000 took 12.5 s to start (SQLite; now 0.65 s), and a 600,000-user one
    # would have waited an hour before its first read
    for at in range(0, len(users), START_BATCH):
        batch = users[at : at + START_BATCH]
        with transaction(deps.sessions) as session, session.no_autoflush:
            # ``loaded`` is held while the batch is decided (the identity map is weak)
            loaded, active = _load_batch(session, name, batch, dry_run=bool(opts["dry_run"]))
            for user_id in batch:
                mig_id = _migration_for_member(
                    session, name, user_id, opts, active=active.get(user_id)
                )
                if mig_id:
                    ids.append(mig_id)
    # one read of the account serves every chunk (``migration.stage``): priced for them all
    if prefetch is not None and prefetch_mod.wanted(deps, len(ids)):
        prefetch_mod.chain_queued(deps, name)
        prefetch(name, ids[: deps.bulk_chunk])  # the next chunks: prefetch_mod.next_chunk
    else:
        records.mark_queued(deps.sessions, ids)
        for mig_id in ids:
            enqueue(mig_id)
    started = len(ids)
    if not users:
        cohort_progress.finish_if_settled(deps.sessions, name)
    return started


def prefetch_chunk(
    deps: SagaDeps, cohort: str, migration_ids: list[str], enqueue: Enqueue, again: Prefetch
) -> dict[str, int]:
    """The ``twinbill.prefetch`` task: read a chunk's snapshots in bulk, enqueueing each
    member as soon as its snapshot is stored, then hand the next chunk (``next_chunk``:
    from the database, never the whole rest of the cohort in a message) to the next
    prefetch, queued behind them. A member the read did not store (a failed read, a
    cohort no longer running) is enqueued after it, and read per user."""
    chunk = migration_ids[: deps.bulk_chunk]
    counts = {"members": len(chunk), "read": 0, "stored": 0}
    enqueued: set[str] = set()

    def ready(mig_id: str) -> None:
        enqueued.add(mig_id)
        enqueue(mig_id)

    with prefetch_mod.lease(deps, cohort) as lease:
        with deps.sessions() as session:
            running = cohorts.get(session, cohort).status == "running"
        staged = prefetch_mod.stage_of(deps, cohort)
        if running and prefetch_mod.worth_it(deps, cohort, staged):
            try:
                counts = prefetch_mod.store(deps, staged, chunk, on_stored=ready)
            except TwinbillError as exc:
                log.warning(
                    "cohort %s: bulk read failed (%s); members are read per user", cohort, exc
                )
        unread = [mig_id for mig_id in chunk if mig_id not in enqueued]
        records.mark_queued(deps.sessions, unread)
        for mig_id in unread:
            enqueue(mig_id)
        if following := prefetch_mod.next_chunk(deps, cohort, after=chunk):
            lease.handed_on = True
            again(cohort, following)
        else:  # every chunk's snapshots are stored: the staged read is needed no more
            stage.drop(deps.sessions, cohort)
    return counts


def _load_batch(
    session: Session, cohort: str, users: list[str], *, dry_run: bool
) -> tuple[list[object], dict[str, Migration]]:
    """Members, routes, current and active migrations of a batch, in four queries: the
    per-member gets then hit the identity map, as long as the caller holds ``loaded``
    (the map keeps weak references). No autoflush while the batch is decided: each
    member's decision is about its own user only."""
    members = session.scalars(
        sa.select(CohortMember).where(
            CohortMember.cohort == cohort, CohortMember.user_id.in_(users)
        )
    ).all()
    loaded: list[object] = [*members]
    loaded += session.scalars(sa.select(Route).where(Route.user_id.in_(users))).all()
    current = [m.migration_id for m in members if m.migration_id]
    if current:
        loaded += session.scalars(sa.select(Migration).where(Migration.id.in_(current))).all()
    return loaded, records.active_of(session, users, dry_run)


def _migration_for_member(
    session: Session, cohort: str, user_id: str, opts: dict, *, active: Migration | None
) -> str | None:
    """The migration a worker will run for this member, or None — and then the member is
    marked finished or deferred with the reason, so nothing waits on a member no task will
    move (`cohort run --wait` once hung on members whose user had a deferred migration from
    an earlier cohort: records.create returned that one and the member stayed `pending`)."""
    member = session.get(CohortMember, (cohort, user_id))
    current = (
        session.get(Migration, member.migration_id) if member and member.migration_id else None
    )
    if current is not None and current.status in ("pending", "running"):
        return current.id
    if current is not None and current.status == "failed" and current.pivoted:
        return None  # past the pivot: a human resumes it (runbook), never a fresh start
    route = session.get(Route, user_id)
    if active is not None and active.cohort != cohort:
        if active.status == "deferred":  # this cohort takes it over, fresh (as the reaper)
            active.status, active.step, active.snapshot_id, active.generation = (
                "pending",
                None,
                None,
                1,
            )
            active.cohort, active.defer_reason, active.defer_until = cohort, None, None
            if member is not None:
                member.status, member.migration_id, member.reason = "queued", active.id, None
            return active.id
        if member is not None:  # another cohort's worker runs it right now
            member.status = "deferred"
            member.reason = f"already migrating in cohort {active.cohort} ({active.id})"
        return None
    if route is None or route.state != routing.LEGACY:
        if member is not None:
            state = route.state if route is not None else "unknown"
            member.status = "done" if state == routing.NEW else "deferred"
            member.reason = (
                "already on the new system"
                if state == routing.NEW
                else f"route is {state}, not legacy: nothing to start"
            )
        return None
    return records.create_in(session, user_id, active, cohort=cohort, **opts)


def run_member(deps: SagaDeps, migration_id: str, later: Requeue | None = None) -> Migration | None:
    """Worker entry point: run one migration unless its cohort is paused or halted.

    ``later`` schedules it again when a step must wait (``saga.run``): the worker's
    thread is not held through the wait."""
    mig = records.load(deps.sessions, migration_id)
    if mig.cohort:
        with deps.sessions() as session:
            cohort = session.get(Cohort, mig.cohort)
            if (
                cohort is not None
                and cohort.status in ("paused", "halted")
                and mig.status == "pending"
            ):
                leases.unmark_received(deps.sessions, migration_id)
                return None  # stays queued; `cohort resume` enqueues it again
    result = saga.run(deps, migration_id, later=later)
    from migration import shadow

    shadow.release_member(deps, result)  # a shadow import its load step did not adopt
    if result.cohort:
        cohort_progress.check_halt(deps.sessions, result.cohort)
        cohort_progress.finish_if_settled(deps.sessions, result.cohort)
    return result


def reconcile_recent(
    deps: SagaDeps, *, within: timedelta = timedelta(days=1), sample: int = 50
) -> dict[str, int]:
    """Continuous reconciliation (beat): recently migrated users plus a rolling sample of
    the rest; a running cohort whose diff rate crosses its threshold halts."""
    from migration import verify

    users = verify.recent_migrations(deps.sessions, within=within, sample=sample)
    if not users:
        return {"checked": 0, "with_differences": 0, "halted": 0}
    with deps.sessions() as session:
        migs = verify.last_success(session, users)
    scope = verify.Scope("users", None, sorted(migs), migs)
    report = verify.reconcile(
        deps.sessions, deps.legacy, deps.new, scope, created_by="system:beat", refetch=True
    )
    halted = 0
    with deps.sessions() as session:
        running = list(session.scalars(sa.select(Cohort.name).where(Cohort.status == "running")))
    for name in running:
        halted += bool(cohort_progress.check_halt(deps.sessions, name))
    return {
        "checked": report.summary.users_checked,
        "with_differences": report.summary.users_with_differences,
        "halted": halted,
    }
