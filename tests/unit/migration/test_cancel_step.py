"""The pivot spends no read before each legacy cancel; "already canceled" is checked only
when the cancel itself is refused (a re-run after the answer was lost)."""

from __future__ import annotations

from core.errors import BackendRejected
from migration import services


def test_a_cancel_refused_because_it_already_happened_is_not_a_failure(world):
    world.user("u1")
    original = world.legacy.cancel_for_migration

    def cancel_then_lose_the_answer(ref, sub_id, *, migration_id, idempotency_key):
        original(ref, sub_id, migration_id=migration_id, idempotency_key=idempotency_key)
        raise BackendRejected("legacy cancel: subscription is already canceled", backend="stripe")

    world.legacy.cancel_for_migration = cancel_then_lose_the_answer
    mig = services.migrate_user(world.deps, "u1")
    assert mig.status == "succeeded" and world.route("u1").state == "new"


def test_a_cancel_refused_while_the_subscription_is_live_still_fails(world):
    world.user("u1")

    def refuse(ref, sub_id, *, migration_id, idempotency_key):
        raise BackendRejected("legacy cancel: no such subscription", backend="stripe")

    world.legacy.cancel_for_migration = refuse
    mig = services.migrate_user(world.deps, "u1")
    assert mig.status != "succeeded" and world.route("u1").state != "new"
