"""The saga's promises, on in-memory billing systems: one transaction across two systems."""

from __future__ import annotations

import pytest

from core.canonical import InvoiceStatus, SubscriptionStatus
from core.errors import BackendRejected, BackendUnavailable, RateLimited
from migration import leases, reaper, records, saga, services
from migration.records import steps_of


class Crash(BaseException):
    """A worker killed mid-step: not an Exception, nothing catches it."""


def _fail_on(backend, method: str, exc: BaseException, times: int = 1):
    original = getattr(backend, method)
    left = {"n": times}

    def wrapper(*args, **kwargs):
        if left["n"] > 0:
            left["n"] -= 1
            raise exc
        return original(*args, **kwargs)

    setattr(backend, method, wrapper)


def _billing(backend, user_id="u1"):
    from multiplexer.backends.base import UserRef

    return [s for s in backend.list_subscriptions(UserRef(user_id)) if s.status.billing]


def test_happy_path_moves_the_user_and_bills_once(world):
    world.user()
    mig = services.migrate_user(world.deps, "u1")
    assert mig.status == "succeeded"
    assert (world.route().state, world.route().system) == ("new", "new")
    assert _billing(world.legacy) == []  # legacy no longer bills
    assert [i.status for i in world.new.imports.values()] == ["active"]
    with world.sessions() as s:
        done = [r.step for r in steps_of(s, mig.id) if r.outcome == "ok"]
    assert done == list(saga.ORDER)


@pytest.mark.parametrize(
    ("backend", "method"),
    [
        ("new", "create_import"),
        ("legacy", "cancel_for_migration"),
        ("new", "activate_import"),
        ("new", "get_bundle"),
    ],
)
def test_a_worker_killed_at_any_step_is_finished_by_the_next_run(world, backend, method):
    world.user()
    mig_id = records.create(world.sessions, "u1")
    _fail_on(getattr(world, backend), method, Crash())
    with pytest.raises(Crash):
        saga.run(world.deps, mig_id)
    world.deps.stale_after = 0  # the reaper's view: the heartbeat is stale now
    assert saga.run(world.deps, mig_id).status == "succeeded"
    assert world.route().state == "new"
    assert _billing(world.legacy) == []
    assert [i.status for i in world.new.imports.values()] == ["active"]  # imported once


def test_only_a_resumed_cancel_step_asks_legacy_to_check_before_canceling(world):
    """A first cancel trusts the snapshot re-checked just before (no read: one request per
    live subscription); after a worker died inside it, some may be canceled already."""
    world.user()
    original, seen = world.legacy.cancel_for_migration, []

    def cancel_then_die(*args, **kwargs):
        seen.append(kwargs["known_live"])
        result = original(*args, **kwargs)
        if len(seen) == 1:
            raise Crash()  # canceled in legacy, then the worker is killed
        return result

    world.legacy.cancel_for_migration = cancel_then_die
    mig_id = records.create(world.sessions, "u1")
    with pytest.raises(Crash):
        saga.run(world.deps, mig_id)
    world.deps.stale_after = 0
    assert saga.run(world.deps, mig_id).status == "succeeded"
    assert seen == [True, False]
    assert _billing(world.legacy) == []


def test_failure_before_the_pivot_is_compensated(world):
    world.user()
    _fail_on(world.new, "create_import", BackendRejected("bad payload", backend="new"))
    mig = services.migrate_user(world.deps, "u1")
    assert (mig.status, mig.error_kind) == ("compensated", "data")
    assert world.route().state == "legacy"
    assert len(_billing(world.legacy)) == 1  # untouched on legacy
    assert all(i.status != "active" for i in world.new.imports.values())


def test_failure_after_the_pivot_never_routes_back_and_pages(world):
    world.user()
    _fail_on(world.new, "activate_import", BackendRejected("refused", backend="new"), times=99)
    mig = services.migrate_user(world.deps, "u1")
    assert mig.status == "failed" and mig.pivoted
    assert world.route().state == "failed" and world.route().pivoted_at is not None
    from core.db import transaction
    from core.errors import IllegalTransition
    from multiplexer import routing

    with pytest.raises(IllegalTransition, match="pivot"), transaction(world.sessions) as s:
        routing.transition(s, "u1", "legacy", actor="admin", reason="route back")
    assert world.route().state == "failed"
    assert _billing(world.legacy) == []
    assert world.pages and "failed after the legacy cancel" in world.pages[0]
    world.new.activate_import = type(world.new).activate_import.__get__(world.new)
    assert services.resume_user(world.deps, "u1").status == "succeeded"
    assert world.route().state == "new"


def test_transient_errors_are_retried_within_the_step(world):
    world.user()
    _fail_on(
        world.new, "create_import", RateLimited("slow down", retry_after=1, backend="new"), times=2
    )
    assert services.migrate_user(world.deps, "u1").status == "succeeded"


def test_open_invoice_defers_without_locking(world):
    ref = world.user()
    inv = next(iter(world.legacy.invoices.values()))
    world.legacy.invoices[inv.id] = inv.model_copy(
        update={"status": InvoiceStatus.OPEN, "amount_due": 999, "amount_paid": 0}
    )
    mig = services.migrate_user(world.deps, ref.user_id)
    assert mig.status == "deferred" and "open invoice" in mig.defer_reason
    assert world.route().state == "legacy" and world.route().version == 1


def test_dry_run_changes_nothing(world):
    world.user()
    mig = services.migrate_user(world.deps, "u1", dry_run=True)
    assert mig.status == "dry_run"
    assert world.route().state == "legacy" and world.route().version == 1
    assert len(_billing(world.legacy)) == 1
    assert [i.status for i in world.new.imports.values()] == ["discarded"]


def test_legacy_change_after_snapshot_restarts_from_fetch(world):
    ref = world.user()
    original = world.new.create_import

    def import_then_change(payload, *, idempotency_key):
        result = original(payload, idempotency_key=idempotency_key)
        if len(world.new.imports) == 1:  # someone writes to legacy behind our back
            sub = next(iter(world.legacy.subs.values()))
            world.legacy.subs[sub.id] = sub.model_copy(update={"cancel_at_period_end": True})
        return result

    world.new.create_import = import_then_change
    mig = services.migrate_user(world.deps, ref.user_id)
    assert mig.status == "succeeded" and mig.generation == 2
    assert sorted(i.status for i in world.new.imports.values()) == ["active", "discarded"]


def test_one_migration_per_user_at_a_time(world):
    world.user()
    first = records.create(world.sessions, "u1")
    assert records.create(world.sessions, "u1") == first


def test_a_live_lease_is_respected(world):
    world.user()
    mig_id = records.create(world.sessions, "u1")
    assert leases.claim(world.sessions, mig_id, "worker-a", stale_after=120) is not None
    assert leases.claim(world.sessions, mig_id, "worker-b", stale_after=120) is None


def test_unknown_subscription_status_is_not_billing():
    assert not SubscriptionStatus.CANCELED.billing


def test_a_renewal_during_migration_defers_and_unlocks(world):
    """Legacy opens an invoice (a dunning renewal) after our snapshot: re-check restarts,
    preflight now defers, and the user must not stay locked."""
    ref = world.user()
    original = world.new.create_import

    def import_then_renew(payload, *, idempotency_key):
        result = original(payload, idempotency_key=idempotency_key)
        inv = next(iter(world.legacy.invoices.values()))
        world.legacy.invoices[inv.id] = inv.model_copy(
            update={"status": InvoiceStatus.OPEN, "amount_due": 999, "amount_paid": 0}
        )
        return result

    world.new.create_import = import_then_renew
    mig = services.migrate_user(world.deps, ref.user_id)
    assert mig.status == "deferred" and "open invoice" in mig.defer_reason
    assert world.route().state == "legacy"
    assert len(_billing(world.legacy)) == 1
    assert [i.status for i in world.new.imports.values()] == ["discarded"]


def test_verify_that_cannot_run_leaves_a_migrated_user_migrated(world):
    """The route is already `new`: a failing check must not page or mark the user failed."""
    world.user()

    def broken_verifier(mig, deps):
        raise BackendUnavailable("new service down", backend="new")

    world.deps.verifier = broken_verifier
    mig = services.migrate_user(world.deps, "u1")
    assert mig.status == "succeeded" and "down" in mig.error_message
    assert world.route().state == "new"
    assert world.pages == []


def test_a_queued_migration_is_not_presumed_lost_too_early(world):
    world.user()
    records.create(world.sessions, "u1")
    assert reaper.reap(world.deps, lambda _id: None)["lost"] == 0


def test_a_slow_step_keeps_its_lease(world):
    """A worker that is slow (not dead) keeps beating: another worker cannot claim it."""
    import threading
    import time

    world.user()
    world.deps.stale_after = 0.6
    mig_id = records.create(world.sessions, "u1")
    original = world.new.create_import
    claimed_by_other = []

    def slow_import(payload, *, idempotency_key):
        time.sleep(1.5)  # longer than stale_after: only the heartbeat keeps the lease
        claimed_by_other.append(
            leases.claim(world.sessions, mig_id, "other-worker", stale_after=0.6)
        )
        return original(payload, idempotency_key=idempotency_key)

    world.new.create_import = slow_import
    thread = threading.Thread(target=saga.run, args=(world.deps, mig_id))
    thread.start()
    thread.join(timeout=30)
    assert claimed_by_other == [None]
    assert records.load(world.sessions, mig_id).status == "succeeded"


def test_a_transient_cause_after_the_pivot_is_retried_for_as_long_as_it_lasts(world):
    """issue 11 finding 3: 500s that outlast a step's attempts never end the user failed."""
    from datetime import timedelta

    from core.db import transaction, utcnow
    from migration import recovery
    from migration.models import Migration

    world.user()
    world.deps.max_attempts = 2
    world.deps.post_pivot_backoff_base, world.deps.post_pivot_backoff_max = 10, 40
    _fail_on(world.new, "activate_import", BackendUnavailable("500", backend="new"), times=9)
    mig = services.migrate_user(world.deps, "u1")
    waits = []
    for _round in range(1, 6):
        assert (mig.status, mig.pivoted) == ("retrying", True), mig.error_message
        assert mig.defer_reason.startswith("retrying after the pivot: activate")
        waits.append(round((mig.defer_until - utcnow()).total_seconds() / 10) * 10)
        assert world.route().state == "migrating"  # read-only, never failed, never legacy
        assert _billing(world.legacy) == []
        assert reaper.reap(world.deps, lambda _id: None)["retried_after_pivot"] == 0  # not yet
        with transaction(world.sessions) as s:
            s.get(Migration, mig.id).defer_until = utcnow() - timedelta(seconds=1)
        queued: list[str] = []
        assert reaper.reap(world.deps, queued.append)["retried_after_pivot"] == 1
        mig = saga.run(world.deps, queued[0])
        if mig.status == "succeeded":
            break
    assert mig.status == "succeeded" and world.route().state == "new"
    assert waits == [10, 20, 40, 40]  # doubling up to the ceiling
    assert len(world.pages) == 1 and recovery.LABEL in world.pages[0]
    assert [i.status for i in world.new.imports.values()] == ["active"]
