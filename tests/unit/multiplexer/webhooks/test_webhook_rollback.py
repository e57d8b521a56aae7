"""A rollback's own events are suppressed; the re-created subscription's later ones are not."""

from __future__ import annotations

from webhook_helpers import legacy_event, new_event, subscription

from multiplexer.models import Route
from multiplexer.webhooks.inbound import migration_reason


def route(state: str) -> Route:
    return Route(user_id="u_1", system="new", state=state, legacy_customer_id="cus_1")


def test_the_new_systems_rollback_cancel_is_suppressed_and_a_users_cancel_is_not() -> None:
    by_rollback = new_event("subscription.canceled", "u_1", {"id": "sub_nb_1"}, cause="rollback")
    by_user = new_event("subscription.canceled", "u_1", {"id": "sub_nb_1"})
    assert "rollback" in (
        migration_reason("new", by_rollback, route("migrating"), frozenset()) or ""
    )
    assert migration_reason("new", by_user, route("new"), frozenset()) is None


def test_the_recreated_legacy_subscription_is_quiet_only_while_the_user_is_locked() -> None:
    created = legacy_event(
        "customer.subscription.created",
        subscription(status="incomplete", metadata={"twinbill_rollback": "mig_1"}),
    )
    assert "rollback" in (
        migration_reason("legacy", created, route("migrating"), frozenset()) or ""
    )
    # after the flip (route legacy), its renewals are the user's own and reach the app
    assert migration_reason("legacy", created, route("legacy"), frozenset()) is None
