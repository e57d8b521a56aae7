"""The re-check before the pivot, on in-memory systems: proved from events, or re-read."""

from __future__ import annotations

import time

import pytest

from migration import records, services
from migration.records import steps_of
from multiplexer.change_feed import ChangeFeed
from multiplexer.models import Route


@pytest.fixture
def feed_world(world):  # type: ignore[no-untyped-def]
    world.legacy.events = []  # the fake keeps an event stream
    world.deps.change_feed = ChangeFeed(
        world.sessions, world.legacy, refresh_every=0, settle=0, margin=0
    )
    return world


def _recheck(world, mig_id):  # type: ignore[no-untyped-def]
    with world.sessions() as s:
        return [r.detail for r in steps_of(s, mig_id) if r.step == "recheck" and r.outcome == "ok"]


def _after_import(world, change):  # type: ignore[no-untyped-def]
    original = world.new.create_import

    def import_then(payload, *, idempotency_key):  # type: ignore[no-untyped-def]
        result = original(payload, idempotency_key=idempotency_key)
        if len(world.new.imports) == 1:
            change()
        return result

    world.new.create_import = import_then


def test_no_event_proves_unchanged_without_reading_the_user(feed_world):
    ref = feed_world.user()
    feed_world.legacy.calls.clear()
    mig = services.migrate_user(feed_world.deps, ref.user_id)
    assert mig.status == "succeeded" and mig.generation == 1
    [detail] = _recheck(feed_world, mig.id)
    assert detail["proved_by"] == "events"
    # one full read (preflight's snapshot) and no second one for the re-check
    calls = feed_world.legacy.calls
    assert calls.count("list_changes") == 1
    assert calls.index("list_changes") > calls.index("get_history")
    assert calls[: calls.index("list_changes")].count("get_history") == 1


def test_an_event_that_changed_nothing_costs_a_re_read_not_a_restart(feed_world):
    ref = feed_world.user()
    _after_import(feed_world, lambda: feed_world.legacy.touch(ref.legacy_customer_id))
    mig = services.migrate_user(feed_world.deps, ref.user_id)
    assert mig.status == "succeeded" and mig.generation == 1
    [detail] = _recheck(feed_world, mig.id)
    assert detail["proved_by"] == "full re-read" and detail["why"].startswith("changed:")


def test_a_real_change_with_its_event_restarts(feed_world):
    ref = feed_world.user()

    def cancel_at_period_end() -> None:
        sub = next(iter(feed_world.legacy.subs.values()))
        feed_world.legacy.subs[sub.id] = sub.model_copy(update={"cancel_at_period_end": True})
        feed_world.legacy.touch(ref.legacy_customer_id, event_type="customer.subscription.updated")

    _after_import(feed_world, cancel_at_period_end)
    mig = services.migrate_user(feed_world.deps, ref.user_id)
    assert mig.status == "succeeded" and mig.generation == 2
    assert sorted(i.status for i in feed_world.new.imports.values()) == ["active", "discarded"]


def test_without_a_feed_every_re_check_re_reads(world):
    ref = world.user()
    mig = services.migrate_user(world.deps, ref.user_id)
    [detail] = _recheck(world, mig.id)
    assert detail["proved_by"] == "full re-read" and "TWINBILL_EVENT_RECHECK=off" in detail["why"]


def test_a_worker_waiting_for_the_feed_frees_its_thread_and_is_run_again(feed_world):
    """Events of the import's moment are not listable yet: a worker's run hands the
    migration back to the queue (lease released, user still locked) instead of sleeping;
    the run it scheduled proves it from the events, with no per-user re-read."""
    feed_world.deps.change_feed = ChangeFeed(
        feed_world.sessions, feed_world.legacy, refresh_every=0, settle=0.3, margin=0
    )
    ref = feed_world.user()
    mig_id = records.create(feed_world.sessions, ref.user_id)
    queued: list[tuple[str, float]] = []
    mig = services.run_member(feed_world.deps, mig_id, later=lambda m, s: queued.append((m, s)))
    assert (mig.status, mig.owner, mig.step) == ("running", None, "load")
    assert [m for m, _ in queued] == [mig_id] and 0 < queued[0][1] <= 1.0
    with feed_world.sessions() as s:
        route = s.get(Route, ref.user_id)
        assert route is not None and route.state == "migrating"  # nobody writes meanwhile
        [waiting] = [r for r in steps_of(s, mig_id) if r.outcome == "waiting"]
        assert waiting.step == "recheck" and waiting.detail["retry_in"] == round(queued[0][1], 3)
    reads_before = feed_world.legacy.calls.count("get_history")
    for _ in range(10):  # the countdown task, as many times as it is scheduled
        time.sleep(queued[-1][1])
        mig = services.run_member(feed_world.deps, mig_id, later=lambda m, s: queued.append((m, s)))
        if mig.status != "running":
            break
    assert mig.status == "succeeded"
    [detail] = _recheck(feed_world, mig_id)
    assert detail["proved_by"] == "events"
    assert feed_world.legacy.calls.count("get_history") == reads_before  # no re-read


def test_run_in_process_a_wait_for_the_feed_is_slept_through(feed_world):
    feed_world.deps.change_feed = ChangeFeed(
        feed_world.sessions, feed_world.legacy, refresh_every=0, settle=0.3, margin=0
    )
    slept: list[float] = []
    feed_world.deps.sleep = lambda s: (slept.append(s), time.sleep(s))  # type: ignore[assignment]
    ref = feed_world.user()
    mig = services.migrate_user(feed_world.deps, ref.user_id)
    assert mig.status == "succeeded" and slept and all(0 < s <= 1.0 for s in slept)
    [detail] = _recheck(feed_world, mig.id)
    assert detail["proved_by"] == "events"
