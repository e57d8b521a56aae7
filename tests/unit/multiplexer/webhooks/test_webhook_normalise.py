"""Pure mapping of both systems' events to canonical events, and the decision rules."""

from __future__ import annotations

import pytest

from multiplexer.models import Route
from multiplexer.webhooks import normalise as nz
from multiplexer.webhooks.inbound import decide


def ev(etype: str, obj: dict, event_id: str = "evt_1", **extra: object) -> dict:
    return {"id": event_id, "type": etype, "created": 1718107200, "data": {"object": obj}, **extra}


@pytest.mark.parametrize(("legacy", "canonical"), sorted(nz.LEGACY_TYPES.items()))
def test_every_legacy_type_maps_to_a_canonical_type(legacy, canonical):
    assert canonical in nz.CANONICAL_TYPES
    assert nz.normalise_legacy(ev(legacy, {"id": "x_1", "customer": "cus_1"})).type == canonical


@pytest.mark.parametrize(("new", "canonical"), sorted(nz.NEW_TYPES.items()))
def test_every_new_type_maps_to_a_canonical_type(new, canonical):
    assert canonical in nz.CANONICAL_TYPES
    assert nz.normalise_new(ev(new, {"id": "x_1"})).type == canonical


def test_legacy_subscription_old_and_current_shapes_give_the_same_canonical_data():
    old = {
        "id": "sub_1",
        "object": "subscription",
        "customer": "cus_1",
        "status": "active",
        "currency": "eur",
        "current_period_end": 1718107200,
        "items": {"data": [{"plan": {"id": "gold", "amount": 1500}, "quantity": 2}]},
    }
    current = {
        "id": "sub_1",
        "object": "subscription",
        "customer": {"id": "cus_1"},
        "status": "active",
        "currency": "eur",
        "items": {
            "data": [
                {
                    "price": {"id": "gold", "unit_amount": 1500},
                    "quantity": 2,
                    "current_period_end": 1718107200,
                }
            ]
        },
    }
    a = nz.normalise_legacy(ev("customer.subscription.updated", old)).data
    b = nz.normalise_legacy(ev("customer.subscription.updated", current)).data
    assert a == b
    assert a["currency"] == "EUR" and a["current_period_end"] == "2024-06-11T12:00:00Z"
    assert a["items"] == [{"plan": "gold", "quantity": 2, "unit_amount": 1500}]


def test_current_multi_item_subscription_event_renews_at_the_first_item_end():
    sub = {
        "id": "sub_2",
        "object": "subscription",
        "customer": "cus_1",
        "status": "active",
        "currency": "eur",
        "items": {
            "data": [
                {"price": {"id": "yearly", "unit_amount": 9900}, "current_period_end": 1749643200},
                {"price": {"id": "monthly", "unit_amount": 900}, "current_period_end": 1718107200},
            ]
        },
    }
    data = nz.normalise_legacy(ev("customer.subscription.updated", sub)).data
    assert data["current_period_end"] == "2024-06-11T12:00:00Z"  # not the yearly item's


def test_charge_and_payment_intent_of_one_payment_share_a_canonical_id():
    charge = nz.normalise_legacy(
        ev(
            "charge.succeeded",
            {"id": "ch_1", "object": "charge", "amount": 500, "currency": "usd"},
            "evt_a",
        )
    )
    intent = nz.normalise_legacy(
        ev(
            "payment_intent.succeeded",
            {
                "id": "pi_1",
                "object": "payment_intent",
                "latest_charge": "ch_1",
                "amount_received": 500,
                "currency": "usd",
            },
            "evt_b",
        )
    )
    assert charge.data == intent.data
    assert nz.canonical_id("legacy", charge.key) == nz.canonical_id("legacy", intent.key)


def test_partial_refunds_are_distinct_events():
    def refunded(total: int) -> str:
        c = nz.normalise_legacy(
            ev(
                "charge.refunded",
                {"id": "ch_1", "object": "charge", "amount": 900, "amount_refunded": total},
            )
        )
        return nz.canonical_id("legacy", c.key)

    assert refunded(300) != refunded(900)


def test_new_offline_payment_and_refund():
    pay = nz.normalise_new(
        ev(
            "offline_payment.recorded",
            {
                "id": "py_nb_1",
                "amount": 2500,
                "currency": "eur",
                "invoice_id": "in_nb_1",
                "external_id": None,
                "status": "succeeded",
                "method": "offline",
            },
        )
    )
    assert pay.data["amount"] == 2500 and pay.data["currency"] == "EUR"
    refund = nz.normalise_new(
        ev(
            "offline_refund.recorded",
            {"id": "re_nb_1", "amount": 700, "currency": "eur", "payment_id": "py_nb_1"},
        )
    )
    assert refund.type == "offline_refund.recorded" and refund.data["payment_id"] == "py_nb_1"


def test_canonical_event_body():
    event = ev(
        "invoice.payment_failed",
        {
            "id": "in_1",
            "object": "invoice",
            "customer": "c",
            "status": "open",
            "total": 100,
            "currency": "gbp",
        },
    )
    body = nz.canonical_event("legacy", event, "u1", nz.normalise_legacy(event))
    assert body["type"] == "invoice.payment_failed" and body["user_id"] == "u1"
    assert body["occurred_at"] == "2024-06-11T12:00:00Z" and body["source_event_id"] == "evt_1"
    assert body["id"].startswith("evt_tb_") and len(body["id"]) <= 40


def test_unmapped_types_carry_a_reason():
    assert nz.normalise_legacy(ev("payout.paid", {"id": "po_1"})).reason
    assert nz.normalise_new(ev("customer.created", {"id": "c"})).type is None


def route(system: str = "legacy", state: str | None = None) -> Route:
    return Route(
        user_id="u1",
        system=system,
        state=state or system,
        legacy_customer_id="cus_1",
        version=1,
        facets={},
    )


SUB = {"id": "sub_1", "object": "subscription", "customer": "cus_1", "status": "canceled"}


@pytest.mark.parametrize(
    "mark",
    [
        {"cancellation_details": {"comment": "twinbill_migration:mig_1", "reason": None}},
        {"metadata": {"twinbill_migration": "mig_1"}},  # marks written before the one-call cancel
    ],
    ids=["cancellation_details", "metadata"],
)
def test_the_migration_mark_is_read_from_the_payload_wherever_it_was_put(mark):
    event = ev("customer.subscription.deleted", SUB | mark)
    assert decide("legacy", event, route()).disposition == "suppressed"  # route says legacy


def test_a_customers_own_cancellation_comment_is_not_the_migration_mark():
    own = {"comment": "twinbill_migration is what I wanted", "reason": "cancellation_requested"}
    event = ev("customer.subscription.deleted", SUB | {"cancellation_details": own})
    assert decide("legacy", event, route()).disposition == "forwarded"


def test_decide_matrix():
    flagged = SUB | {"metadata": {"twinbill_migration": "1"}}
    assert (
        decide("legacy", ev("customer.subscription.deleted", flagged), route()).disposition
        == "suppressed"
    )
    assert (
        decide("legacy", ev("customer.subscription.deleted", SUB), route()).disposition
        == "forwarded"
    )
    assert (
        decide("legacy", ev("customer.subscription.deleted", SUB), None).disposition
        == "unknown_user"
    )
    assert (
        decide("legacy", ev("customer.subscription.deleted", SUB), route("new")).disposition
        == "suppressed"
    )
    new_sub = ev("subscription.created", {"id": "s"}, user_id="u1")
    assert decide("new", new_sub, route("new")).disposition == "forwarded"
    assert decide("new", new_sub, route("legacy")).disposition == "suppressed"
    imported = ev("subscription.created", {"id": "s"}, user_id="u1", cause="import")
    assert decide("new", imported, route("new")).disposition == "suppressed"


def test_money_from_the_former_system_is_never_hidden():
    pay = ev("offline_payment.recorded", {"id": "py", "amount": 1}, user_id="u1")
    assert decide("new", pay, route("legacy", "migrating")).disposition == "forwarded"
    paid = ev(
        "invoice.paid",
        {"id": "in_1", "object": "invoice", "customer": "cus_1", "subscription": "sub_1"},
    )
    assert (
        decide("legacy", paid, route("legacy", "migrating"), frozenset({"sub_1"})).disposition
        == "forwarded"
    )
    created = ev(
        "invoice.created",
        {"id": "in_1", "object": "invoice", "customer": "cus_1", "subscription": "sub_1"},
    )
    assert (
        decide("legacy", created, route("legacy", "migrating"), frozenset({"sub_1"})).disposition
        == "suppressed"
    )
    assert decide("legacy", created, route("legacy", "migrating")).disposition == "forwarded"


def test_legacy_cancel_while_migrating_is_the_migrations_own():
    deleted = ev("customer.subscription.deleted", SUB)
    decision = decide("legacy", deleted, route("legacy", "migrating"))
    assert decision.disposition == "suppressed" and "migrating" in decision.reason
    assert decide("legacy", deleted, route("legacy", "held")).disposition == "forwarded"


def test_a_late_cancel_event_for_a_user_failed_after_the_pivot_is_suppressed():
    """Failed routes failed after the legacy cancel: that cancel is the saga's, not the user's."""
    deleted = ev("customer.subscription.deleted", SUB)
    decision = decide("legacy", deleted, route("legacy", "failed"))
    assert decision.disposition == "suppressed" and "failed" in decision.reason
