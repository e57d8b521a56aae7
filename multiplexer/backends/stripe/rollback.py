"""A rollback's legacy writes: re-create a subscription the new system held, remove it again.

The re-created subscription bills exactly where the new system would have charged
next: it is created *trialing* until that moment (``trial_end``), with
``proration_behavior=none``, so Stripe invoices nothing now and starts the plan's
cycle at the trial end — no separate "activate" call is needed. It carries
metadata ``twinbill_rollback`` (the rollback's id) and ``twinbill_rollback_of`` (the
new system's subscription id), set at creation (localstripe drops metadata *updates*,
not metadata given at creation: docs/legacy-gaps.md).

Idempotent on both dialects: Stripe replays the create under the same key, and
localstripe (which ignores ``Idempotency-Key``) is asked first — an existing live
subscription with both markers is the one created before, returned as it is. The
removal (compensation before the rollback's pivot) cancels it now, no proration, no
invoice; one already over is left alone.
"""

from __future__ import annotations

from typing import Any

from core.errors import BackendRejected
from multiplexer.backends.base import Recreation
from multiplexer.backends.stripe.transport import StripeCalls, to_plain

MARK, MARK_OF = "twinbill_rollback", "twinbill_rollback_of"
OVER = frozenset({"canceled", "incomplete_expired"})


def recreated(t: StripeCalls, cid: str, rollback_id: str) -> list[dict[str, Any]]:
    """Live legacy subscriptions this rollback created for the customer."""
    subs = t.pages(
        "list subscriptions",
        t.client.v1.subscriptions.list,
        params={"customer": cid, "status": "all"},
    )
    return [
        s
        for s in subs
        if (s.get("metadata") or {}).get(MARK) == rollback_id and s.get("status") not in OVER
    ]


def params_for(t: StripeCalls, cid: str, spec: Recreation, rollback_id: str) -> dict[str, Any]:
    wire = t.wire
    if spec.coupon_ids and not wire.subscription_discounts:
        raise BackendRejected(
            f"legacy ({wire.name}) cannot put coupons {list(spec.coupon_ids)} on a subscription",
            backend="stripe",
            field="discounts",
        )
    params: dict[str, Any] = {
        "customer": cid,
        "items": [{wire.item_key: spec.plan_code, "quantity": spec.quantity}],
        "trial_end": int(spec.renews_at.timestamp()),
        "proration_behavior": "none",
        "metadata": {**spec.metadata, MARK: rollback_id, MARK_OF: spec.of},
    }
    if spec.tax_rate_ids:
        params["default_tax_rates"] = list(spec.tax_rate_ids)
    if spec.coupon_ids:
        params["discounts"] = [{"coupon": c} for c in spec.coupon_ids]
    if spec.payment_method_id and wire.subscription_payment_method:
        params["default_payment_method"] = spec.payment_method_id
    return params


def recreate(
    t: StripeCalls, cid: str, spec: Recreation, *, rollback_id: str, key: str
) -> dict[str, Any]:
    for sub in recreated(t, cid, rollback_id):
        if (sub.get("metadata") or {}).get(MARK_OF) == spec.of:
            return sub  # created by an earlier run of this step
    return t.write(
        "re-create subscription",
        t.client.v1.subscriptions.create,
        key=f"{key}:create",
        params=params_for(t, cid, spec, rollback_id),
    )


def remove(t: StripeCalls, subscription_id: str, *, key: str) -> None:
    v1 = t.client.v1
    sub = to_plain(t.call("retrieve subscription", v1.subscriptions.retrieve, subscription_id))
    if sub.get("status") in OVER:
        return
    t.write(
        "remove re-created subscription",
        v1.subscriptions.cancel,
        subscription_id,
        key=key,
        params={"invoice_now": False, "prorate": False},
    )


def customer_live(t: StripeCalls, cid: str) -> bool:
    """Does the legacy customer still exist (Stripe answers a deleted one ``deleted: true``,
    localstripe 404)?"""
    from core.errors import NotFound

    try:
        cus = to_plain(t.call("retrieve customer", t.client.v1.customers.retrieve, cid))
    except NotFound:
        return False
    return not cus.get("deleted")
