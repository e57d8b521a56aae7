"""Is a user's legacy state quiet enough to move? Pure: decides on a canonical history.

A user with something in flight is *deferred* with a reason (and retried later),
never failed: an open or past-due invoice in dunning, a renewal inside the
safety window, a pending scheduled change, paused collection, a dated
cancellation or items on different billing periods (Stripe features the new
service's contract has no home for).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from core.canonical import BillingHistory, InvoiceStatus, SubscriptionStatus

PENDING_CHANGE_KEYS = ("twinbill_pending_change", "pending_update", "schedule")


def defer_reason(
    history: BillingHistory,
    *,
    now: datetime,
    renewal_guard: timedelta,
    include_in_flight: bool = False,
    raw: dict | None = None,
) -> str | None:
    if not include_in_flight:
        for inv in history.invoices:
            if inv.status is InvoiceStatus.OPEN:
                return f"open invoice {inv.id} in dunning ({inv.amount_due} {inv.currency} due)"
        for sub in history.subscriptions:
            if sub.status in (SubscriptionStatus.PAST_DUE, SubscriptionStatus.UNPAID):
                return f"subscription {sub.id} is {sub.status.value}"
    for sub in history.billing_subscriptions:
        # the new service's contract has no paused collection and no dated cancellation:
        # moving such a user would bill a paused customer, or one who asked to leave
        if sub.collection_paused:
            return (
                f"subscription {sub.id} has collection paused ({sub.collection_paused}); "
                "the new service cannot pause collection"
            )
        if sub.cancel_at is not None:
            return (
                f"subscription {sub.id} is scheduled to cancel at {sub.cancel_at:%Y-%m-%d} UTC; "
                "the new service has no dated cancellation"
            )
        cycles = {(i.interval, i.interval_count) for i in sub.items}
        if len(cycles) > 1:
            return (
                f"subscription {sub.id} has items on different billing periods; the new "
                "service bills one period per subscription"
            )
        renewal = sub.next_renewal_at
        if renewal is not None and now <= renewal < now + renewal_guard:
            return (
                f"subscription {sub.id} renews at {renewal:%Y-%m-%d %H:%M} UTC, inside the "
                f"{renewal_guard} safety window"
            )
        for key in PENDING_CHANGE_KEYS:
            if sub.metadata.get(key):
                return f"subscription {sub.id} has a pending scheduled change ({key})"
    for item in (raw or {}).get("pending_invoice_items", []) or []:
        return f"pending invoice item {item.get('id')} waits for the next invoice"
    for sub in (raw or {}).get("subscriptions", []) or []:
        if sub.get("pending_update") or sub.get("schedule"):
            return f"subscription {sub.get('id')} has a pending scheduled change"
    return None


def unsupported_reason(raw: dict | None) -> str | None:
    """Stripe features the new service has no home for, found in the raw snapshot *before*
    mapping (the mapping would refuse them as a data error): the user is deferred with a
    named reason instead, and stays on legacy untouched (docs/legacy-gaps.md)."""
    for sub in (raw or {}).get("subscriptions", []) or []:
        for item in (sub.get("items") or {}).get("data") or []:
            price = item.get("price") if isinstance(item.get("price"), dict) else item.get("plan")
            if not isinstance(price, dict):
                continue
            recurring = price.get("recurring") or {}
            usage = recurring.get("usage_type") or price.get("usage_type")
            if usage == "metered":
                return (
                    f"subscription {sub.get('id')} bills metered usage ({price.get('id')}); "
                    "the new service has no usage records"
                )
            unit = price.get("unit_amount", price.get("amount"))
            if price.get("billing_scheme") == "tiered" or unit is None:
                return (
                    f"subscription {sub.get('id')} has a tiered or custom-amount price "
                    f"({price.get('id')}); the new service bills per-unit prices only"
                )
    return None
