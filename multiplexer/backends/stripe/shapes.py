"""One reading of Stripe object shapes, shared by the mapping and the webhook normaliser.

Both generations of shapes (the Plans API localstripe speaks and the current API) are
read here, once: where a subscription's items and their prices are, which period end
is the next billing, which subscription an invoice belongs to. Lenient: an absent or
malformed field reads as ``None`` / empty, so the webhook normaliser (which must never
fail on an event) uses these as they are, and the mapping raises its own
``TransformError`` (record + field) where a value is required.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def ref(value: Any) -> str | None:
    """An expandable reference: an id string or an expanded object's id (else None)."""
    if isinstance(value, Mapping):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def item_rows(sub: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """A subscription's items (``{"object": "list", "data": [...]}``), objects only."""
    items = sub.get("items")
    rows = items.get("data") if isinstance(items, Mapping) else None
    return [r for r in rows if isinstance(r, Mapping)] if isinstance(rows, list) else []


def item_price(row: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """Prefer ``price`` (current); ``plan`` is the old name and a compat echo today."""
    for key in ("price", "plan"):
        price = row.get(key)
        if isinstance(price, Mapping):
            return price
    return None


def subscription_currency(sub: Mapping[str, Any]) -> Any:
    """The currency as sent, unchecked: the subscription's own (current API), else its first
    item's price or plan, else the subscription-level ``plan`` (Plans API, localstripe).
    The one reading for the mapping, the preview and the webhook normaliser."""
    if sub.get("currency"):
        return sub.get("currency")
    rows = item_rows(sub)
    first = item_price(rows[0]) if rows else None
    for holder in (first, sub.get("plan")):
        if isinstance(holder, Mapping) and holder.get("currency"):
            return holder.get("currency")
    return None


def period_end(sub: Mapping[str, Any]) -> Any:
    """The next billing, unix seconds: the subscription's period end (old API) as sent,
    else the item period that ends first (current API: each item has its own period)."""
    if sub.get("current_period_end") is not None:
        return sub.get("current_period_end")
    ends = [
        r["current_period_end"]
        for r in item_rows(sub)
        if isinstance(r.get("current_period_end"), int)
    ]
    return min(ends) if ends else None


def invoice_subscription(inv: Mapping[str, Any]) -> str | None:
    """``invoice.subscription`` (old API), else ``parent.subscription_details.subscription``
    (current API)."""
    sub = ref(inv.get("subscription"))
    if sub is None:
        parent = inv.get("parent")
        details = parent.get("subscription_details") if isinstance(parent, Mapping) else None
        sub = ref(details.get("subscription")) if isinstance(details, Mapping) else None
    return sub


#: event types about objects a customer owns: one whose owner cannot be told is a change
#: to "any customer" (``event_keys`` -> ``("*",)``), never ignored
CUSTOMER_OWNED = (
    "customer.",
    "customer_cash_balance_transaction.",
    "invoice.",
    "invoiceitem.",
    "invoice_payment.",
    "credit_note.",
    "charge.",
    "payment_intent.",
    "payment_method.",
    "refund.",
    "subscription_schedule.",
    "setup_intent.",
    "quote.",
)
#: references an event's object may carry to objects a snapshot holds
_REFERENCES = (
    "charge",
    "invoice",
    "subscription",
    "payment_intent",
    "payment_method",
    "plan",
    "price",
    "product",
    "coupon",
)


def event_keys(event: Mapping[str, Any]) -> tuple[str, ...]:
    """What a Stripe event is about: its customer, its object and the objects it names.

    A user's snapshot changed only if one of these is the user's customer id or an id
    the snapshot holds (a plan, a coupon, a charge a refund belongs to...). An event
    about a customer-owned object that names no owner at all is ``("*",)``. The deletion
    of a subscription twinbill's migration canceled (it carries the migration's mark)
    names nothing: it is the one legacy write the saga makes, and the saga knows it from
    the cancel's own answer — so "no event since the snapshot" still proves that nobody
    else changed the user, up to after the cancel (``migration.verify``).
    """
    data = event.get("data")
    obj = data.get("object") if isinstance(data, Mapping) else None
    if not isinstance(obj, Mapping):
        obj = {}
    if event.get("type") == "customer.subscription.deleted" and migration_mark(obj):
        return ()
    previous = data.get("previous_attributes") if isinstance(data, Mapping) else None
    previous = previous if isinstance(previous, Mapping) else {}
    own = ref(obj.get("id"))
    customer = own if obj.get("object") == "customer" else None
    customer = customer or ref(obj.get("customer")) or ref(previous.get("customer"))
    named = {ref(obj.get(key)) for key in _REFERENCES} | {invoice_subscription(obj)}
    named.discard(None)
    named.discard(own)
    kind = event.get("type")
    if customer is None and not named and isinstance(kind, str) and kind.startswith(CUSTOMER_OWNED):
        return ("*",)
    keys = {k for k in (customer, own, *named) if k}
    return tuple(sorted(keys))


#: twinbill's mark on a legacy subscription its migration canceled, so the webhook layer
#: tells the resulting ``customer.subscription.deleted`` from a real cancellation
MIGRATION_MARK = "twinbill_migration"


def migration_comment(migration_id: str) -> str:
    """The ``cancellation_details.comment`` the cancel request carries (current API)."""
    return f"{MIGRATION_MARK}:{migration_id}"


def migration_mark(sub: Mapping[str, Any]) -> str | None:
    """The migration that canceled this subscription, wherever the mark was put: the
    cancel's ``cancellation_details.comment`` (one request with the cancel), or metadata
    ``twinbill_migration`` (subscriptions canceled before the mark moved there)."""
    meta = sub.get("metadata")
    if isinstance(meta, Mapping) and meta.get(MIGRATION_MARK):
        return str(meta[MIGRATION_MARK])
    details = sub.get("cancellation_details")
    comment = details.get("comment") if isinstance(details, Mapping) else None
    prefix = migration_comment("")
    if isinstance(comment, str) and comment.startswith(prefix) and len(comment) > len(prefix):
        return comment[len(prefix) :]
    return None
