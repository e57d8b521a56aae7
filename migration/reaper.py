"""The reaper (beat's ``twinbill.reap``, every ``TWINBILL_REAPER_EVERY``): what a dead
worker left behind goes back to a live one.

A migration whose heartbeat is older than the lease (its worker died mid-saga), one
``pending`` so long its task must be lost, a cohort whose prefetch lease went stale
(its task died mid-read, ``migration.prefetch.lease``), a deferred user whose wait is
over, a migration retrying after the pivot: each is handed back. Every hand-back may
duplicate a task still queued; the lease makes the duplicate do nothing.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import sqlalchemy as sa

from core.db import transaction, utcnow
from migration import leases, records
from migration.deps import SagaDeps
from migration.models import Cohort, Migration
from migration.prefetch import QUEUED, chain_queued
from migration.services import Enqueue, Prefetch

log = logging.getLogger("twinbill.migration")


def reap(
    deps: SagaDeps,
    enqueue: Enqueue,
    *,
    start: Enqueue | None = None,
    prefetch: Prefetch | None = None,
) -> dict[str, int]:
    """Find migrations whose worker died (stale heartbeat) or whose task was lost, cohorts
    whose prefetch task died, and deferred users whose wait is over; hand them back to a
    worker: ``enqueue`` for those that ran (ahead of the cohort's queue), ``start`` for a
    dead prefetch's members that have not (behind it, as their prefetch would have)."""
    now = utcnow()
    stale = now - timedelta(seconds=deps.stale_after)
    long_ago = now - timedelta(seconds=deps.lost_after)
    handed_back = _reap_prefetches(deps, stale, long_ago, start or enqueue, prefetch)
    with deps.sessions() as session:
        dead = list(
            session.scalars(
                sa.select(Migration.id).where(
                    Migration.status == "running", Migration.heartbeat_at < stale
                )
            )
        )
        # received by a worker that died before one of its threads claimed it
        received = list(
            session.scalars(
                sa.select(Migration.id).where(
                    Migration.status == "pending",
                    Migration.owner.startswith(leases.RECEIVED),
                    Migration.heartbeat_at < stale,
                )
            )
        )
        # queued that long ago and not started: its task is lost. One never queued (a
        # member waiting for its chunk's read) counts from its creation, unless its
        # cohort's prefetch lease is held: then it waits its turn, however long the
        # cohort takes (counted from created_at, every member of a cohort of hours was
        # handed to the control queue again at every run after its first hour)
        reading = sa.select(Cohort.name).where(Cohort.prefetch_owner.is_not(None))
        lost = list(
            session.scalars(
                sa.select(Migration.id).where(
                    Migration.status == "pending",
                    Migration.owner.is_(None),  # a received one: below
                    sa.or_(
                        Migration.queued_at < long_ago,
                        sa.and_(
                            Migration.queued_at.is_(None),
                            Migration.created_at < long_ago,
                            sa.or_(Migration.cohort.is_(None), Migration.cohort.not_in(reading)),
                        ),
                    ),
                )
            )
        )
        due = list(
            session.execute(
                sa.select(Migration.id, Migration.cohort).where(
                    Migration.status == "deferred", Migration.defer_until < now
                )
            )
        )
        # after the pivot: forward recovery, whatever the cohort's status (never stop halfway)
        forward = list(
            session.scalars(
                sa.select(Migration.id).where(
                    Migration.status == "retrying", Migration.defer_until < now
                )
            )
        )
    for mig_id in forward:
        with transaction(deps.sessions) as session:
            mig = session.get(Migration, mig_id)
            if mig is None or mig.status != "retrying":
                continue
            mig.status, mig.owner = "pending", None  # step, snapshot, import: kept
            mig.queued_at = utcnow()
        log.warning("reaper: forward recovery of migration %s (retrying after the pivot)", mig_id)
        enqueue(mig_id)
    for mig_id in received:
        leases.unmark_received(deps.sessions, mig_id)
    records.mark_queued(deps.sessions, lost + received)  # once per lost_after, not every run
    for mig_id in dead + lost + received:
        log.warning("reaper: resuming migration %s", mig_id)
        enqueue(mig_id)
    retried = 0
    for mig_id, cohort in due:
        with deps.sessions() as session:
            c = session.get(Cohort, cohort) if cohort else None
            if c is not None and c.status != "running":
                continue
        with transaction(deps.sessions) as session:
            mig = session.get(Migration, mig_id)
            if mig is None or mig.status != "deferred":
                continue
            mig.status, mig.step, mig.snapshot_id, mig.generation = "pending", None, None, 1
            mig.queued_at = utcnow()
        enqueue(mig_id)
        retried += 1
    return {
        "resumed": len(dead),
        "lost": len(lost),
        "received_by_the_dead": len(received),
        "deferred_retried": retried,
        "retried_after_pivot": len(forward),
        "prefetch_handed_back": handed_back,
    }


def _reap_prefetches(
    deps: SagaDeps,
    stale: datetime,
    long_ago: datetime,
    enqueue: Enqueue,
    prefetch: Prefetch | None,
) -> int:
    """A running cohort whose prefetch lease went stale: its task died before it enqueued
    every member it was handed (no beat for ``stale_after``), or the next prefetch it
    queued never started (``QUEUED`` for ``lost_after``). Those that have not started go
    back: with a snapshot (stored, perhaps not enqueued) to a worker, without one to a new
    prefetch (or a worker, read per user). Some are in the queue already; the duplicate
    finds the lease taken or the migration finished, and does nothing."""
    gone = sa.or_(
        sa.and_(Cohort.prefetch_owner == QUEUED, Cohort.prefetch_heartbeat_at < long_ago),
        sa.and_(Cohort.prefetch_owner != QUEUED, Cohort.prefetch_heartbeat_at < stale),
    )
    with deps.sessions() as session:
        dead = list(
            session.execute(
                sa.select(Cohort.name, Cohort.prefetch_owner).where(
                    Cohort.status == "running", Cohort.prefetch_owner.is_not(None), gone
                )
            )
        )
    handed = 0
    for name, owner in dead:
        with transaction(deps.sessions) as session:
            taken = session.execute(  # one reaper takes it (two beats may run at once)
                sa.update(Cohort)
                .where(Cohort.name == name, Cohort.prefetch_owner == owner, gone)
                .values(prefetch_owner=None)
            )
            if taken.rowcount != 1:  # type: ignore[attr-defined]
                continue
            waiting = session.execute(
                sa.select(Migration.id, Migration.snapshot_id, Migration.step)
                .where(Migration.cohort == name, Migration.status == "pending")
                .order_by(Migration.user_id)  # the order of a cohort's chunks (next_chunk)
            ).all()
        unread = [m for m, snap, step in waiting if snap is None and step is None]
        log.warning(
            "reaper: cohort %s's prefetch died (%s); handing back %d members (%d unread)",
            name,
            owner,
            len(waiting),
            len(unread),
        )
        started = [
            mig_id
            for mig_id, snap, step in waiting
            if prefetch is None or snap is not None or step is not None
        ]
        records.mark_queued(deps.sessions, started)
        for mig_id in started:
            enqueue(mig_id)
        if prefetch is not None and unread:
            chain_queued(deps, name)
            prefetch(name, unread[: deps.bulk_chunk])  # it hands the next chunks on
        handed += len(waiting)
    return handed
