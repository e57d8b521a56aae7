"""Cohort-level snapshot prefetch: one bulk read, a stored snapshot per member, preflight
reuses it (no per-user read) unless it is too old; chosen by cost; failures fall back."""

from __future__ import annotations

import dataclasses
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa
import stripe

from core.db import transaction, utcnow
from core.errors import BackendUnavailable
from migration import cohort_progress, cohorts, prefetch, reaper, services, stage
from migration.models import Cohort, Migration, MigrationStep, Snapshot
from multiplexer import change_feed
from multiplexer.backends.base import LegacyChange
from multiplexer.backends.stripe.backend import StripeLegacyBackend
from multiplexer.models import LegacyStage, LegacyStagedObject, Route


def _run(world, name: str, *, chunks: list[list[str]] | None = None) -> list[str]:
    """Start a cohort as the root does: members run inline as they are enqueued; every
    prefetch hand-over is noted in ``chunks``."""
    ran: list[str] = []

    def enqueue(mid: str) -> None:
        ran.append(mid)
        services.run_member(world.deps, mid)

    def again(cohort: str, ids: list[str]) -> None:
        if chunks is not None:
            chunks.append(list(ids))
        services.prefetch_chunk(world.deps, cohort, ids, enqueue, again)

    services.start_cohort(world.deps, name, enqueue, actor="t", prefetch=again)
    return ran


def _preflights(world) -> dict[str, dict]:
    with world.sessions() as s:
        rows = (
            s.query(MigrationStep, Migration)
            .join(Migration)
            .filter(MigrationStep.step == "preflight", MigrationStep.outcome == "ok")
        )
        return {m.user_id: step.detail for step, m in rows}


def _cohort(world, n: int, name: str = "wave") -> list[str]:
    users = [f"u{i}" for i in range(n)]
    for u in users:
        world.user(u)
    cohorts.create(world.sessions, name, users, actor="t")
    return users


def test_preflight_reuses_the_cohorts_bulk_read_and_reads_no_user_again(world):
    users = _cohort(world, 3)
    world.legacy.calls.clear()
    _run(world, "wave")
    details = _preflights(world)
    assert set(details) == set(users)
    assert all(d.get("prefetched") is True for d in details.values()), details
    assert world.legacy.calls.count("snapshots") == 1  # one read for the whole cohort
    with world.sessions() as s:
        assert cohort_progress.progress(s, "wave").status == "done"
        assert {r.state for r in s.query(Route)} == {"new"}


def test_a_snapshot_older_than_the_limit_is_read_again_per_user(world):
    users = _cohort(world, 2)
    world.deps = dataclasses.replace(world.deps, snapshot_max_age=0.0)
    _run(world, "wave")
    details = _preflights(world)
    assert set(details) == set(users)
    assert not any(d.get("prefetched") for d in details.values()), details
    with world.sessions() as s:
        migs = list(s.query(Migration))
        assert all(m.status == "succeeded" for m in migs)
        # the stale prefetched row and the fresh per-user one: preflight used the fresh one
        assert s.scalar(sa.select(sa.func.count()).select_from(Snapshot)) == 2 * len(users)


def test_chunks_are_read_one_after_another_and_every_member_runs_once(world):
    users = _cohort(world, 5)
    world.deps = dataclasses.replace(world.deps, bulk_chunk=2)
    chunks: list[list[str]] = []
    ran = _run(world, "wave", chunks=chunks)
    assert [len(c) for c in chunks] == [2, 2, 1]  # one chunk per hand-over, not the rest
    assert sorted(sum(chunks, [])) == sorted(ran)
    assert len(ran) == len(set(ran)) == len(users)
    assert world.legacy.calls.count("snapshots") == 3
    # the account is read once, into the cohort's stage, for all three chunks
    assert world.legacy.calls.count("account read") == 1
    assert all(d.get("prefetched") for d in _preflights(world).values())
    with world.sessions() as s:  # the last chunk dropped the stage
        assert s.scalar(sa.select(sa.func.count()).select_from(LegacyStagedObject)) == 0
        assert s.get(LegacyStage, stage.scope("wave")) is None


def _between_chunks(world, name: str, hook) -> list[str]:
    """As ``_run``, with ``hook()`` called before every chunk's prefetch but the first."""
    ran: list[str] = []

    def enqueue(mid: str) -> None:
        ran.append(mid)
        services.run_member(world.deps, mid)

    def again(cohort: str, ids: list[str], *, first: bool = False) -> None:
        if not first:
            hook(ids)
        services.prefetch_chunk(world.deps, cohort, ids, enqueue, again)

    services.start_cohort(
        world.deps, name, enqueue, actor="t", prefetch=lambda c, i: again(c, i, first=True)
    )
    return ran


def _user_of(world, mig_id: str) -> str:
    with world.sessions() as s:
        return s.get(Migration, mig_id).user_id


def test_a_member_whose_customer_changed_since_the_stage_is_read_per_user(world):
    """A webhook (or the event feed) names a member's customer after the cohort's account
    read: that member is not served its staged objects but read per user, the others of
    the chunk still from the stage."""
    users = _cohort(world, 4)
    world.deps = dataclasses.replace(world.deps, bulk_chunk=2)
    changed: list[str] = []

    def touch(ids: list[str]) -> None:
        user = _user_of(world, ids[0])
        cid = world.route(user).legacy_customer_id
        with transaction(world.sessions) as s:
            change_feed.mark(
                s, [LegacyChange((cid,), utcnow(), "customer.updated", "evt_1")], source="webhook"
            )
        changed.append(user)

    ran = _between_chunks(world, "wave", touch)
    assert len(ran) == len(users)
    details = _preflights(world)
    assert {u for u, d in details.items() if not d.get("prefetched")} == set(changed)
    assert world.legacy.calls.count("account read") == 1
    with world.sessions() as s:
        assert {m.status for m in s.query(Migration)} == {"succeeded"}


def test_a_stage_past_half_the_snapshot_age_is_read_again(world):
    """A staged read older than half ``snapshot_max_age`` serves no further chunk: the
    account is read again, and the members still get prefetched snapshots."""
    _cohort(world, 4)
    world.deps = dataclasses.replace(world.deps, bulk_chunk=2, snapshot_max_age=3600)

    def age(ids: list[str]) -> None:
        with transaction(world.sessions) as s:
            s.get(LegacyStage, stage.scope("wave")).taken_at = utcnow() - timedelta(minutes=31)

    _between_chunks(world, "wave", age)
    assert world.legacy.calls.count("account read") == 2
    assert all(d.get("prefetched") for d in _preflights(world).values())


def test_two_reads_of_one_stage_never_mix_and_an_unfinished_one_is_never_served(world):
    for u in ("a", "b"):
        world.user(u)
    cohorts.create(world.sessions, "wave", ["a", "b"], actor="t")
    cid = world.route("a").legacy_customer_id

    def open_stage():
        return stage.of_cohort(world.sessions, "wave", max_age=3600)

    one, two = open_stage(), open_stage()
    assert one.taken_at is None and one.wanted() == {cid, world.route("b").legacy_customer_id}
    one.begin()
    one.add([(cid, "customers", {"id": cid, "read": 1})])
    two.begin()
    two.add([(cid, "customers", {"id": cid, "read": 2})])
    assert open_stage().taken_at is None  # neither finished: nothing to serve
    two.finish(utcnow(), {})
    assert open_stage().load([cid]) == {cid: {"customers": [{"id": cid, "read": 2}]}}
    one.add([(cid, "invoices", {"id": "in_1", "read": 1})])  # the first read goes on
    one.finish(utcnow(), {"refunds_listed": False})
    served = open_stage()
    assert served.extra["refunds_listed"] is False
    assert served.load([cid]) == {
        cid: {"customers": [{"id": cid, "read": 1}], "invoices": [{"id": "in_1", "read": 1}]}
    }
    with world.sessions() as s:  # the replaced read's rows are gone
        assert s.scalar(sa.select(sa.func.count()).select_from(LegacyStagedObject)) == 2
    assert stage.of_cohort(world.sessions, "wave", max_age=0).taken_at is None  # too old


def test_a_failed_bulk_read_leaves_every_member_to_the_per_user_read(world, monkeypatch):
    users = _cohort(world, 3)

    def down(refs, on_snapshot=None, **_):
        raise BackendUnavailable("legacy down during the bulk read", backend="legacy")

    monkeypatch.setattr(world.legacy, "snapshots", down)
    ran = _run(world, "wave")
    assert len(ran) == len(users)
    details = _preflights(world)
    assert set(details) == set(users) and not any(d.get("prefetched") for d in details.values())


def test_members_start_as_the_read_reaches_them_and_a_read_failing_midway_loses_none(
    world, monkeypatch
):
    """The first member is migrated while the read goes on; when legacy goes down after it,
    that member keeps its bulk snapshot, the others are enqueued after, read per user, and
    nobody is enqueued twice."""
    users = _cohort(world, 3)
    real = world.legacy.snapshots
    order: list[str] = []

    def first_then_down(refs, on_snapshot=None, **options):
        real(refs[:1], on_snapshot=on_snapshot, **options)
        order.append("read failed")
        raise BackendUnavailable("legacy down during the bulk read", backend="legacy")

    monkeypatch.setattr(world.legacy, "snapshots", first_then_down)

    def enqueue(mid: str) -> None:
        order.append(mid)
        services.run_member(world.deps, mid)

    services.start_cohort(
        world.deps,
        "wave",
        enqueue,
        actor="t",
        prefetch=lambda c, ids: services.prefetch_chunk(world.deps, c, ids, enqueue, None),
    )
    assert order.index("read failed") == 1, order  # one member ran before the read ended
    migrations = [o for o in order if o != "read failed"]
    assert len(migrations) == len(set(migrations)) == len(users)
    details = _preflights(world)
    assert sorted(bool(d.get("prefetched")) for d in details.values()) == [False, False, True]
    with world.sessions() as s:
        assert {m.status for m in s.query(Migration)} == {"succeeded"}


def test_a_paused_cohort_is_not_read(world):
    _cohort(world, 2)
    world.legacy.calls.clear()
    handed: list[list[str]] = []
    enqueued: list[str] = []
    services.start_cohort(
        world.deps, "wave", enqueued.append, actor="t", prefetch=lambda c, ids: handed.append(ids)
    )
    assert len(handed) == 1 and enqueued == []  # members wait for their chunk's read
    cohorts.set_status(world.sessions, "wave", "paused", actor="t")
    with world.sessions() as s:
        ids = [m.id for m in s.query(Migration)]
    services.prefetch_chunk(world.deps, "wave", ids, enqueued.append, lambda c, i: None)
    assert "snapshots" not in world.legacy.calls and sorted(enqueued) == sorted(ids)


def _stripe(dialect: str) -> StripeLegacyBackend:
    return StripeLegacyBackend(stripe.StripeClient("sk_test_unused"), dialect=dialect)


def _account(customers: int) -> dict[str, int]:
    return {
        "customers": customers,
        "subscriptions": customers,
        "invoices": 6 * customers,
        "charges": 6 * customers,
        "refunds": customers // 5,
        "invoice items": customers // 10,
        "credit notes": customers // 5,
    }


@pytest.mark.parametrize("dialect", ["current", "localstripe"])
def test_a_small_cohort_in_a_big_account_is_read_per_user(dialect):
    legacy = _stripe(dialect)
    bulk, per_user = legacy.read_costs(10, _account(600_000))
    assert bulk > 100 * per_user
    bulk, per_user = legacy.read_costs(500, _account(1_000))
    assert bulk < per_user / 2


def test_the_account_is_sized_from_the_routes_and_their_facets(world):
    for u in ("a", "b", "c", "d"):
        world.user(u)
    with transaction(world.sessions) as s:
        for u in ("a", "b"):
            s.get(Route, u).facets = {"subscriptions": 2, "invoices": 10, "refunds": 1}
    size = prefetch.account_size(world.deps)
    # four customers, two with facets: the other two are taken to look like them
    assert size["customers"] == 4
    assert (size["subscriptions"], size["invoices"], size["refunds"]) == (8, 40, 4)


class _Killed(BaseException):
    """The worker process dying mid-task: nothing after it runs, no handler sees it."""


def test_a_prefetch_killed_midway_hands_its_members_back_once_its_lease_is_stale(world):
    """Killed between storing the second member's snapshot and enqueueing it, the prefetch
    task leaves two members with no task: the stored one and the unread one. Within a lease
    period the reaper hands them back (the stored one to a worker, the unread one to a new
    prefetch), and the cohort finishes with every member migrated once."""
    users = _cohort(world, 3)
    started: list[str] = []

    def enqueue_then_die(mid: str) -> None:
        if started:
            raise _Killed
        started.append(mid)

    handed: list[list[str]] = []
    with pytest.raises(_Killed):
        services.start_cohort(
            world.deps,
            "wave",
            started.append,
            actor="t",
            prefetch=lambda c, ids: services.prefetch_chunk(
                world.deps, c, ids, enqueue_then_die, lambda *_: None
            ),
        )
    with world.sessions() as s:
        stored = {m.id for m in s.query(Migration) if m.snapshot_id is not None}
        unread = {m.id for m in s.query(Migration) if m.snapshot_id is None}
    assert len(started) == 1 and len(stored) == 2 and len(unread) == 1

    def reap() -> dict[str, int]:
        resumed: list[str] = []
        counts = reaper.reap(
            world.deps, resumed.append, start=started.append, prefetch=lambda c, i: handed.append(i)
        )
        assert resumed == []  # nobody had started: nothing jumps the cohort's queue
        return counts

    assert reap()["prefetch_handed_back"] == 0  # the lease is not stale yet
    world.deps.stale_after = 0  # the reaper's view once a lease period has passed
    assert reap()["prefetch_handed_back"] == 3
    assert sorted(started[1:]) == sorted(stored) and handed == [sorted(unread)]
    assert reap()["prefetch_handed_back"] == 0  # handed back once
    world.deps.stale_after = 30.0

    def run(mid: str) -> None:
        services.run_member(world.deps, mid)

    for mid in started:  # the first member twice: its first task, and the hand-back
        run(mid)
    services.prefetch_chunk(world.deps, "wave", handed[0], run, lambda *_: None)
    with world.sessions() as s:
        assert {m.user_id: m.status for m in s.query(Migration)} == dict.fromkeys(
            users, "succeeded"
        )
    assert all(d.get("prefetched") for d in _preflights(world).values())
    with world.sessions() as s:
        assert cohorts.get(s, "wave").status == "done"


def test_a_slow_prefetch_keeps_its_lease(world, monkeypatch):
    """A read that takes longer than the lease is beaten alive: the reaper leaves it."""
    _cohort(world, 2)
    world.deps.stale_after = 0.6
    real = world.legacy.snapshots
    during: list[dict[str, int]] = []

    def slow(refs, on_snapshot=None, **options):
        time.sleep(1.2)  # twice the lease: only the heartbeat keeps it
        during.append(reaper.reap(world.deps, lambda _m: None, prefetch=lambda c, i: None))
        return real(refs, on_snapshot=on_snapshot, **options)

    monkeypatch.setattr(world.legacy, "snapshots", slow)
    _run(world, "wave")
    assert during[0]["prefetch_handed_back"] == 0
    with world.sessions() as s:
        assert {m.status for m in s.query(Migration)} == {"succeeded"}


def _started_in_chunks(world, n: int, chunk: int) -> tuple[list[str], list[list[str]]]:
    """A cohort of ``n`` started with bulk reads in chunks of ``chunk``; only the first
    chunk's prefetch runs (its members are left queued), the next waits in the queue."""
    _cohort(world, n)
    world.deps = dataclasses.replace(world.deps, bulk_chunk=chunk)
    queued: list[str] = []
    waiting: list[list[str]] = []

    def first(c: str, ids: list[str]) -> None:
        services.prefetch_chunk(world.deps, c, ids, queued.append, lambda c, i: waiting.append(i))

    services.start_cohort(world.deps, "wave", queued.append, actor="t", prefetch=first)
    return queued, waiting


def _age(world, hours: float, **columns: bool) -> None:
    """Move the given timestamps of every migration (and the cohort's lease) back."""
    then = utcnow() - timedelta(hours=hours)
    with transaction(world.sessions) as s:
        for m in s.query(Migration):
            for col in set(columns) - {"lease"}:
                if getattr(m, col) is not None or col == "created_at":
                    setattr(m, col, then)
        if columns.get("lease"):
            s.get(Cohort, "wave").prefetch_heartbeat_at = then


def test_members_waiting_for_a_later_chunk_are_not_presumed_lost(world):
    """A cohort of hours: counted from their creation, every member still waiting for
    its chunk's read was 'lost' after an hour and handed to the control queue again at
    every reaper run. They wait while the next prefetch is queued; a queued member that
    no worker took for an hour is handed again once, not at every run."""
    queued, waiting = _started_in_chunks(world, 5, chunk=2)
    assert len(queued) == 2 and [len(w) for w in waiting] == [2]
    _age(world, 2, created_at=True)
    resumed: list[str] = []
    counts = reaper.reap(world.deps, resumed.append, prefetch=lambda c, i: None)
    assert counts["lost"] == 0 and counts["prefetch_handed_back"] == 0 and resumed == []
    _age(world, 2, queued_at=True)  # the first chunk's two: queued, never taken
    assert reaper.reap(world.deps, resumed.append)["lost"] == 2
    assert sorted(resumed) == sorted(queued)
    assert reaper.reap(world.deps, resumed.append)["lost"] == 0  # once per lost_after


def test_a_queued_prefetch_that_never_starts_is_handed_back(world):
    """The next chunk's prefetch was queued and lost (a broker flushed): after
    ``lost_after`` the reaper starts the chain again from the first unread member."""
    queued, waiting = _started_in_chunks(world, 5, chunk=2)
    with world.sessions() as s:
        assert s.get(Cohort, "wave").prefetch_owner == prefetch.QUEUED
    handed: list[list[str]] = []
    again = reaper.reap(world.deps, queued.append, prefetch=lambda c, i: handed.append(i))
    assert again["prefetch_handed_back"] == 0  # queued a moment ago: it waits its turn
    _age(world, 2, lease=True)
    back = reaper.reap(world.deps, queued.append, prefetch=lambda c, i: handed.append(i))
    assert back["prefetch_handed_back"] == 5 and handed == [waiting[0]]


def test_a_cohort_paused_midway_reads_no_further_chunk_and_drops_its_stage(world):
    """Paused after its first chunk, a cohort's remaining prefetches read nothing: they
    hand their members on to wait (each finds its cohort paused) and the last one drops
    the staged account read, so a paused cohort holds no rows."""
    _cohort(world, 4)
    world.deps = dataclasses.replace(world.deps, bulk_chunk=2)

    def pause(ids: list[str]) -> None:
        cohorts.set_status(world.sessions, "wave", "paused", actor="t")
        with world.sessions() as s:
            assert s.get(LegacyStage, stage.scope("wave")) is not None  # read, not dropped

    world.legacy.calls.clear()
    enqueued = _between_chunks(world, "wave", pause)
    assert world.legacy.calls.count("account read") == 1
    assert world.legacy.calls.count("snapshots") == 1  # the second chunk read nothing
    assert len(enqueued) == 4
    with world.sessions() as s:
        assert s.get(LegacyStage, stage.scope("wave")) is None
        assert s.scalar(sa.select(sa.func.count()).select_from(LegacyStagedObject)) == 0
        waiting = [m for m in s.query(Migration) if m.status == "pending"]
        assert len(waiting) == 2  # the second chunk's members wait for the resume
