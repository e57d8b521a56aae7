"""Cohort-level snapshot prefetch: one account-wide legacy read for a chunk of members.

Per user, preflight's snapshot costs 5–7 legacy requests and more (one per list). A
cohort's members can instead be read together from the account-wide lists, about
(objects / 100) requests per list, and each member's snapshot stored on its migration
*before* it is enqueued: preflight then reuses it (``steps._prefetched``: no list
request; only the part no account-wide list holds, the current API's balance
transactions, one request) unless it is older than ``snapshot_max_age``. Its
``taken_at`` is the bulk read's start, so "any change since the snapshot?" is asked
from then.

The bulk read costs the whole account whatever the cohort's size, so it is read once
per cohort into the database (``migration.stage``) and every chunk is assembled from
it, and it is chosen by estimate (``wanted``, for the whole cohort): the legacy adapter
prices both reads (``read_costs``) for an account sized from the routing table
(``account_size``: what ``users sync`` recorded). A cohort of 10 users in a
600,000-customer account is read per user.

Where it runs: ``services.start_cohort`` hands the chunk's migrations to the
``twinbill.prefetch`` task (``services.prefetch_chunk``) instead of enqueueing them;
the task reads (the first chunk: the account into the stage; every chunk: its members
from the stage), storing and enqueueing each member as soon as its objects are
complete, then enqueues the next chunk's prefetch behind them, so each chunk is
assembled when the workers get to it. The task holds the cohort's prefetch lease
(``lease``) meanwhile: killed midway, the reaper hands back the members it did not
enqueue. A read that fails
keeps what it stored; every other member is then read per user, as without bulk reads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa

from core.db import transaction, utcnow
from migration import leases, records
from migration import stage as stages
from migration.deps import SagaDeps
from migration.models import Cohort, Migration
from multiplexer import change_feed
from multiplexer.backends.base import RawSnapshot, UserRef
from multiplexer.models import Route
from multiplexer.stage import DbStage

log = logging.getLogger("twinbill.prefetch")

#: objects per legacy customer when ``users sync`` left no facets to count them from
DEFAULT_PER_CUSTOMER = {"subscriptions": 1.0, "invoices": 6.0, "refunds": 0.2, "pending": 0.1}


def account_size(deps: SagaDeps) -> dict[str, int]:
    """Legacy objects per account-wide list, estimated from the routes and their facets."""
    facet = {
        name: sa.func.sum(Route.facets[name].as_integer())
        for name in ("subscriptions", "invoices", "refunds", "pending_items")
    }
    with deps.sessions() as session:
        row = session.execute(
            sa.select(
                sa.func.count(Route.legacy_customer_id),
                sa.func.count(Route.facets["invoices"].as_integer()),
                *facet.values(),
            )
        ).one()
    customers, with_facets = int(row[0] or 0), int(row[1] or 0)
    if with_facets:  # routes without facets are taken to look like those with them
        per = {
            k: float(v or 0) / with_facets
            for k, v in zip(
                ("subscriptions", "invoices", "refunds", "pending"), row[2:], strict=True
            )
        }
    else:
        per = dict(DEFAULT_PER_CUSTOMER)
    # status=all lists canceled subscriptions too, which the facet does not count
    per["subscriptions"] = max(per["subscriptions"], 1.0)

    def n(key: str) -> int:
        return round(customers * per[key])

    return {
        "customers": customers,
        "subscriptions": n("subscriptions"),
        "invoices": n("invoices"),
        "charges": n("invoices"),  # about one charge per paid invoice
        "refunds": n("refunds"),
        "invoice items": n("pending"),
        "credit notes": n("refunds"),
    }


def wanted(deps: SagaDeps, members: int) -> bool:
    """Read these members in bulk? ``bulk_reads``: on, off, or auto (by estimated cost)."""
    if members <= 0 or deps.bulk_reads == "off":
        return False
    if deps.bulk_reads == "on":
        return True
    account = account_size(deps)
    bulk, per_user = deps.legacy.read_costs(members, account)
    log.info(
        "cohort snapshots for %d members: bulk read ~%d legacy requests, per user ~%d (%s)",
        members,
        bulk,
        per_user,
        "bulk" if bulk < per_user else "per user",
    )
    return bulk < per_user


#: wider than the change feed's clock margin: a member served from a stage its customer
#: changed after costs a restart at the re-check; one read per user needlessly, one read
STAGE_SKEW = timedelta(seconds=60)

#: the prefetch lease's owner while the cohort's next prefetch task waits in the queue
QUEUED = "queued"


@dataclass
class Lease:
    #: set when the task enqueued the next chunk's prefetch: the lease is left ``QUEUED``
    handed_on: bool = False


def chain_queued(deps: SagaDeps, cohort: str) -> None:
    """The cohort's next prefetch is about to be enqueued: the lease says so (``QUEUED``),
    so the members waiting for it are not presumed lost; a queued task is given the
    reaper's ``lost_after`` to start, a running one ``stale_after`` between beats."""
    with transaction(deps.sessions) as session:
        session.execute(
            sa.update(Cohort)
            .where(Cohort.name == cohort)
            .values(prefetch_owner=QUEUED, prefetch_heartbeat_at=utcnow())
        )


@contextmanager
def lease(deps: SagaDeps, cohort: str) -> Iterator[Lease]:
    """Hold the cohort's prefetch lease while a prefetch task runs.

    The task enqueues each member as its snapshot is stored, and the rest after the read:
    killed midway (a worker's SIGKILL, an OOM), it leaves those it had not reached pending
    with no task. The lease beats like a migration's (every ``stale_after / 3``); once it
    is stale the reaper hands them back (``reaper.reap``). Given up when the block ends
    normally — to ``QUEUED`` when the task ``handed_on`` to the next chunk's prefetch — and
    one that raises leaves its members to the reaper in the same way."""
    held = Lease()
    owner = leases.this_thread(deps.owner, "prefetch:")
    mine = sa.update(Cohort).where(Cohort.name == cohort)
    with transaction(deps.sessions) as session:  # a later prefetch of the cohort takes it over
        session.execute(mine.values(prefetch_owner=owner, prefetch_heartbeat_at=utcnow()))
    mine = mine.where(Cohort.prefetch_owner == owner)
    beat = leases.heartbeat(
        deps.sessions,
        lambda: mine.values(prefetch_heartbeat_at=utcnow()),
        every=deps.stale_after / 3,
    )
    with beat:
        yield held
    after = QUEUED if held.handed_on else None
    with transaction(deps.sessions) as session:  # unless the next prefetch took it already
        session.execute(mine.values(prefetch_owner=after, prefetch_heartbeat_at=utcnow()))


def next_chunk(deps: SagaDeps, cohort: str, *, after: Sequence[str]) -> list[str]:
    """The cohort's next chunk after these migrations: its members still to read (pending,
    not started, no snapshot), in user order, from the last user of ``after`` on.

    A chunk's prefetch finds the next one here instead of carrying the rest of the cohort
    in its message: re-sent with every chunk, a 600,000-user cohort's ids would have been
    some 5 GB through the broker. Members the reaper handed back come round again."""
    if not after:
        return []
    with deps.sessions() as session:
        last = session.scalar(
            sa.select(sa.func.max(Migration.user_id)).where(Migration.id.in_(list(after)))
        )
        if last is None:
            return []
        return list(
            session.scalars(
                sa.select(Migration.id)
                .where(
                    Migration.cohort == cohort,
                    Migration.status == "pending",
                    Migration.step.is_(None),
                    Migration.snapshot_id.is_(None),
                    Migration.user_id > last,
                )
                .order_by(Migration.user_id)
                .limit(deps.bulk_chunk)
            )
        )


def stage_of(deps: SagaDeps, cohort: str) -> DbStage:
    """The cohort's staged account read (``migration.stage``), if it is fresh enough to
    serve a chunk: younger than half ``snapshot_max_age``, so that a member's snapshot is
    still fresh when its preflight comes (``steps._prefetched``)."""
    return stages.of_cohort(deps.sessions, cohort, max_age=deps.snapshot_max_age / 2)


def worth_it(deps: SagaDeps, cohort: str, stage: DbStage) -> bool:
    """Read this cohort's next chunk in bulk? Yes from a fresh ``stage`` (its read is
    paid); else if one read of the account costs less than its unread members read per
    user."""
    if deps.bulk_reads == "off":
        return False
    if stage.taken_at is not None:
        return True
    with deps.sessions() as session:
        unread = session.scalar(
            sa.select(sa.func.count())
            .select_from(Migration)
            .where(
                Migration.cohort == cohort,
                Migration.status == "pending",
                Migration.step.is_(None),
                Migration.snapshot_id.is_(None),
            )
        )
    return wanted(deps, int(unread or 0))


def store(
    deps: SagaDeps,
    stage: DbStage,
    migration_ids: Sequence[str],
    on_stored: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """These migrations' snapshots from the cohort's ``stage`` (``stage_of``); each that
    has not started gets its snapshot. The stage is read first when it holds no fresh
    read (the whole account once, for every chunk of the cohort: ``migration.stage``).

    ``on_stored`` is told each migration the moment its snapshot is stored, while the
    others are assembled. The snapshot stored leaves out what costs a request per
    customer; the member's preflight reads it (``steps._prefetched``). A member whose
    customer an event named since the stage's read is left to its own per-user read."""
    with deps.sessions() as session:
        rows = session.execute(
            sa.select(Migration.id, Migration.user_id, Route.legacy_customer_id)
            .join(Route, Route.user_id == Migration.user_id)
            .where(
                Migration.id.in_(list(migration_ids)),
                Migration.status == "pending",
                Migration.step.is_(None),
                Migration.snapshot_id.is_(None),
            )
        ).all()
    refs = {mig_id: UserRef(user_id, cid) for mig_id, user_id, cid in rows if cid}
    changed: set[str] = set()
    if stage.taken_at is not None:  # an earlier read: who changed since it started?
        cids = [r.legacy_customer_id or "" for r in refs.values()]
        changed = change_feed.named_since(deps.sessions, cids, stage.taken_at - STAGE_SKEW)
    refs = {m: r for m, r in refs.items() if r.legacy_customer_id not in changed}
    migration_of = {ref.user_id: mig_id for mig_id, ref in refs.items()}
    stored = 0

    def attach(snap: RawSnapshot) -> None:
        nonlocal stored
        mig_id = migration_of.get(snap.user_id)
        if mig_id is not None and records.attach_snapshot(deps.sessions, mig_id, snap):
            stored += 1
            if on_stored is not None:
                on_stored(mig_id)

    if refs:
        # the per-customer part (balance transactions) is left to each member's preflight:
        # read here, a third of the cohort's legacy calls came before any member's own
        # steps, and after the read three threads could not keep the budget full
        deps.legacy.snapshots(
            list(refs.values()), on_snapshot=attach, per_customer=False, stage=stage
        )
    counts = {
        "members": len(migration_ids),
        "read": len(refs),
        "stored": stored,
        "changed since the stage": len(changed),
    }
    log.info("cohort prefetch: %s", counts)
    return counts
