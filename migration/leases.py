"""Leases: who runs a migration (or reads a cohort's snapshots) right now.

A worker *claims* a migration (owner + heartbeat), refreshes the heartbeat while a step
runs (``keep_alive``: a daemon thread dies with its process) and releases it when a
step must wait. The reaper (``migration.reaper``) takes over only a lease whose
heartbeat is older than ``stale_after``: a worker that died, never one that is slow.
The cohort prefetch's lease (``migration.prefetch.lease``) beats the same way.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from core.db import transaction, utcnow
from migration import records
from migration.models import Migration

#: the owner a worker writes when it *receives* a migration's task (``mark_received``),
#: before one of its threads claims it
RECEIVED = "received:"


def this_thread(worker: str, kind: str = "") -> str:
    """A lease's owner: the worker, this process and this thread (a process's threads
    share ``worker``; a sibling must not take over what this thread runs right now)."""
    return f"{kind}{worker}:{os.getpid()}:{threading.get_ident()}"[:120]


def mark_received(sessions: sessionmaker[Session], migration_id: str, worker: str) -> bool:
    """A worker process received this migration's task and is about to run it.

    A worker SIGKILLed between receiving a task and claiming its migration left it
    ``pending`` with nobody on it: Redis gives an unacked message back only after its
    visibility timeout (6 h), the lost sweep after ``lost_after`` (1 h). The mark is a
    lease the receiving process beats (``beat_received``): the claim replaces it at
    once, and the reaper hands back one older than ``stale_after`` — once that process
    died (``migration.reaper``)."""
    with transaction(sessions) as session:
        marked = session.execute(
            sa.update(Migration)
            .where(
                Migration.id == migration_id,
                Migration.status == "pending",
                Migration.owner.is_(None),
            )
            .values(owner=f"{RECEIVED}{worker}"[:120], heartbeat_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        return bool(marked.rowcount)  # type: ignore[attr-defined]


def beat_received(sessions: sessionmaker[Session], worker: str, *, every: float) -> threading.Event:
    """For the life of this worker process, keep its received marks fresh: one UPDATE of
    every migration still marked received by ``worker`` every ``every`` seconds.

    Unbeaten, a mark went stale while a *live* worker held the task (every thread busy,
    the task behind others in the pool's queue): the reaper then sent a duplicate to the
    control queue — harmless (its claim fails) but churn. Beaten from the process that
    receives the tasks, a mark goes stale only when that process dies. Returns the
    event that stops the beat (a worker never sets it: the beat ends with the process)."""
    mine = sa.update(Migration).where(Migration.owner == f"{RECEIVED}{worker}"[:120])
    stop = threading.Event()
    _start_beat(sessions, lambda: mine.values(heartbeat_at=utcnow()), every, stop, "received")
    return stop


def unmark_received(sessions: sessionmaker[Session], migration_id: str) -> None:
    """The task ends without claiming (its cohort is paused): the migration waits, queued."""
    with transaction(sessions) as session:
        session.execute(
            sa.update(Migration)
            .where(Migration.id == migration_id, Migration.owner.startswith(RECEIVED))
            .values(owner=None)
            .execution_options(synchronize_session=False)
        )


def claim(
    sessions: sessionmaker[Session], migration_id: str, owner: str, *, stale_after: float
) -> Migration | None:
    """Take the lease on a migration unless a live worker holds it."""
    now = utcnow()
    with transaction(sessions) as session:
        result = session.execute(
            sa.update(Migration)
            .where(
                Migration.id == migration_id,
                Migration.status.in_(("pending", "running")),
                sa.or_(
                    Migration.owner.is_(None),
                    Migration.owner == owner,
                    Migration.owner.startswith(RECEIVED),  # received, not yet claimed
                    Migration.heartbeat_at < now - timedelta(seconds=stale_after),
                ),
            )
            .values(
                owner=owner,
                heartbeat_at=now,
                status="running",
                started_at=sa.func.coalesce(Migration.started_at, now),
            )
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return None
        mig = session.get(Migration, migration_id)
        if mig is not None and mig.cohort:
            records.mark_member(session, mig.cohort, mig.user_id, "running", migration_id=mig.id)
        return mig


def release(sessions: sessionmaker[Session], migration_id: str, owner: str) -> None:
    """Give the lease back without finishing (a step waits: ``saga.Later``); the next run
    claims it again, and the heartbeat set now lets the reaper resume it if that run is lost."""
    with transaction(sessions) as session:
        session.execute(
            sa.update(Migration)
            .where(Migration.id == migration_id, Migration.owner == owner)
            .values(owner=None, heartbeat_at=utcnow())
            .execution_options(synchronize_session=False)
        )


@contextmanager
def keep_alive(
    sessions: sessionmaker[Session], migration_id: str, *, every: float
) -> Iterator[None]:
    """Refresh the lease's heartbeat while a long step runs (rate-limit waits, retries).

    The reaper must take over a migration whose worker *died*, never one whose worker is
    merely slow: a daemon thread beats every ``every`` seconds and dies with the process.
    """
    beat = sa.update(Migration).where(Migration.id == migration_id)
    with heartbeat(sessions, lambda: beat.values(heartbeat_at=utcnow()), every=every):
        yield


@contextmanager
def heartbeat(
    sessions: sessionmaker[Session], statement: Callable[[], sa.Update], *, every: float
) -> Iterator[None]:
    """Run ``statement()`` every ``every`` seconds in a daemon thread while the block runs:
    the heartbeat of a lease (a migration's, a cohort prefetch's), dying with the process."""
    done = threading.Event()
    _start_beat(sessions, statement, every, done)
    try:
        yield
    finally:
        # not joined: waiting for the thread to wake and exit cost 4 % of a worker thread's
        # time, once per step, and a beat that lands after the block only moves a heartbeat
        done.set()


def _start_beat(
    sessions: sessionmaker[Session],
    statement: Callable[[], sa.Update],
    every: float,
    done: threading.Event,
    name: str = "heartbeat",
) -> None:
    every = max(every, 0.05)  # a test's lease of 0 s must not spin

    def beat() -> None:
        while not done.wait(every):
            # a missed beat (a database hiccup) is retried on the next tick
            with contextlib.suppress(Exception), transaction(sessions) as session:
                session.execute(statement())

    threading.Thread(target=beat, name=name, daemon=True).start()
