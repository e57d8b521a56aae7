"""Types the saga and its steps share: what a step gets (``SagaDeps``), what it returns,
how it says "not now" or "start over", and the typed step table entry (``Step``).

Its own module so that ``saga`` imports ``steps`` and both import this — no cycle.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy.orm import Session, sessionmaker

from core.ratelimit import RateLimiter
from multiplexer.backends.base import LegacyBillingBackend, NewBillingBackend
from multiplexer.cache import RouteCache
from multiplexer.change_feed import ChangeFeed

if TYPE_CHECKING:
    from migration.models import Migration

log = logging.getLogger("twinbill.saga")

BulkReads = Literal["auto", "on", "off"]

#: fields of the migration row to advance, and a detail recorded with the step
Result = tuple[dict[str, Any], dict[str, Any] | None]


class Deferred(Exception):
    """Preflight says: not now. Carries the reason shown to operators."""


class Restart(Exception):
    """Legacy changed since the snapshot: go back to fetch under a new generation."""


class Later(Exception):
    """Not yet: run this step again in ``seconds`` (the re-check waiting for the event feed).

    A worker does not sleep through it: the saga releases the lease and schedules the
    migration again (``saga.run(..., later=...)``), so the thread migrates someone else
    meanwhile; run in-process (``twinbill migrate USER``) it sleeps and tries again."""

    def __init__(self, seconds: float, reason: str) -> None:
        super().__init__(reason)
        self.seconds = seconds


#: (migration id, seconds) -> run the migration again that much later (a countdown task)
Requeue = Callable[[str, float], None]


Verifier = Callable[["Migration", "SagaDeps"], dict[str, Any]]
StepFn = Callable[["SagaDeps", "Migration"], Result]
UndoFn = Callable[["SagaDeps", "Migration"], None]


@dataclass(frozen=True)
class Step:
    """One saga step: ``run`` does it (idempotently), ``undo`` compensates it before the
    pivot (idempotently; ``None``: nothing to undo), ``pivot`` marks the point of no return."""

    name: str
    run: StepFn
    undo: UndoFn | None = None
    pivot: bool = False


@dataclass
class SagaDeps:
    sessions: sessionmaker[Session]
    cache: RouteCache | None
    legacy: LegacyBillingBackend
    new: NewBillingBackend
    limiters: dict[str, RateLimiter] = field(default_factory=dict)
    verifier: Verifier | None = None
    renewal_guard: timedelta = timedelta(hours=2)
    max_attempts: int = 6  # per step, for transient errors
    # after the pivot a transient failure is never final: rounds of max_attempts, parked
    # between rounds with a wait doubling from base up to this ceiling (migration.recovery)
    post_pivot_backoff_base: float = 30.0
    post_pivot_backoff_max: float = 3600.0
    max_restarts: int = 3  # re-check failures before giving up (deferred)
    #: seconds without a heartbeat before the reaper hands a migration to another worker;
    #: the saga heartbeats every stale_after / 3 (TWINBILL_LEASE_SECONDS)
    stale_after: float = 30.0
    # a queued migration may wait long in a big cohort; only after this long is its task
    # presumed lost (a duplicate would be harmless thanks to the lease, but wasted work)
    lost_after: float = 3600.0
    #: a cohort's members' snapshots from one account-wide legacy read (migration.prefetch):
    #: "auto" when its estimated cost is below per-user reads, "on", "off" (TWINBILL_BULK_READS)
    bulk_reads: BulkReads = "auto"
    #: a prefetched snapshot older than this (seconds) is read again by preflight, per user
    snapshot_max_age: float = 21600.0
    #: members per bulk read; the next chunk's read waits behind this chunk's members
    bulk_chunk: int = 1000
    sleep: Callable[[float], None] = time.sleep
    owner: str = field(default_factory=lambda: f"{socket.gethostname()}:{threading.get_ident()}")
    page: Callable[[str], None] = lambda message: log.error("PAGE: %s", message)
    #: the step table (``migration.steps.STEPS`` unless a test swaps a step)
    steps: Mapping[str, Step] = field(default_factory=dict)
    #: the shared legacy change feed the re-check proves "unchanged" from; None
    #: (``TWINBILL_EVENT_RECHECK=off``): every re-check re-reads the user
    change_feed: ChangeFeed | None = None
