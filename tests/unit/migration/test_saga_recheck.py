"""The re-check before the pivot, on in-memory systems: proved from events, or re-read."""

from __future__ import annotations

import pytest

from migration import services
from migration.records import steps_of
from multiplexer.change_feed import ChangeFeed


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
