"""Each billing system's webhook events mapped to twinbill's canonical events.

Pure: no I/O, no clock. The canonical event is what the application receives,
whichever system the user lives in, so the ``data`` object is deliberately
small (ids, status, integer minor-unit amounts, uppercase currency): the app
reads details through the billing facade, not from events.

Canonical ids are derived from what the event is *about* (``event_key``), so
two provider events meaning the same thing (Stripe's ``invoice.paid`` and
``invoice.payment_succeeded``; ``charge.succeeded`` and
``payment_intent.succeeded``) become one outbox row, not two deliveries.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from multiplexer.backends.stripe import shapes

LEGACY, NEW = "legacy", "new"
MIGRATION_FLAG = shapes.MIGRATION_MARK  # set on legacy subscriptions by the saga's cancel step

CANONICAL_TYPES = frozenset(
    {
        "subscription.created",
        "subscription.updated",
        "subscription.canceled",
        "invoice.created",
        "invoice.paid",
        "invoice.payment_failed",
        "payment.succeeded",
        "payment.refunded",
        "customer.updated",
        "offline_payment.recorded",
        "offline_refund.recorded",
    }
)
#: Money must never be hidden: these are forwarded even from the system that is
#: no longer the user's system of record (tagged with ``system``).
MONEY_TYPES = frozenset(
    {
        "payment.succeeded",
        "payment.refunded",
        "invoice.paid",
        "offline_payment.recorded",
        "offline_refund.recorded",
    }
)

LEGACY_TYPES: dict[str, str] = {
    "customer.subscription.created": "subscription.created",
    "customer.subscription.updated": "subscription.updated",
    "customer.subscription.deleted": "subscription.canceled",
    "invoice.created": "invoice.created",
    "invoice.paid": "invoice.paid",
    "invoice.payment_succeeded": "invoice.paid",
    "invoice.payment_failed": "invoice.payment_failed",
    "charge.succeeded": "payment.succeeded",
    "payment_intent.succeeded": "payment.succeeded",  # localstripe sends no charge.* events
    "charge.refunded": "payment.refunded",
    "customer.updated": "customer.updated",
}
NEW_TYPES: dict[str, str] = {
    "subscription.created": "subscription.created",
    "subscription.updated": "subscription.updated",
    "subscription.canceled": "subscription.canceled",
    "invoice.created": "invoice.created",
    "invoice.paid": "invoice.paid",
    "invoice.payment_failed": "invoice.payment_failed",
    "payment.succeeded": "payment.succeeded",
    "payment.refunded": "payment.refunded",
    "customer.updated": "customer.updated",
    "offline_payment.recorded": "offline_payment.recorded",
    "offline_refund.recorded": "offline_refund.recorded",
}


@dataclass(frozen=True, slots=True)
class Canonical:
    """A provider event's canonical meaning (``type`` is None: it has none)."""

    type: str | None
    data: dict[str, Any] = field(default_factory=dict)
    key: str = ""  # what the event is about, for the canonical id
    reason: str | None = None  # why it has no canonical meaning


def obj_of(event: dict[str, Any]) -> dict[str, Any]:
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    return obj if isinstance(obj, dict) else {}


def _ref(value: Any) -> str | None:
    """An id that Stripe may have expanded into an object."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _cur(value: Any) -> str | None:
    return value.upper() if isinstance(value, str) and value else None


def iso(value: Any) -> str | None:
    """Unix seconds (legacy) or an ISO string (new) -> ISO-8601 UTC ``...Z``."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        moment = datetime.fromtimestamp(int(value), tz=UTC)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    else:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def canonical_id(system: str, key: str) -> str:
    return "evt_tb_" + hashlib.sha256(f"{system}:{key}".encode()).hexdigest()[:32]


# -- legacy (Stripe; old Plans-API shapes from localstripe and current ones) ----------


def legacy_customer_id(event: dict[str, Any]) -> str | None:
    obj = obj_of(event)
    if obj.get("object") == "customer":
        return _ref(obj.get("id"))
    return _ref(obj.get("customer"))


def metadata_of(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def legacy_subscription_id(event: dict[str, Any]) -> str | None:
    """The legacy subscription an event concerns (None: none, or unknown)."""
    obj = obj_of(event)
    if obj.get("object") == "subscription":
        return _ref(obj.get("id"))
    return shapes.invoice_subscription(obj)  # current API: parent.subscription_details


def legacy_migration_flagged(event: dict[str, Any]) -> bool:
    """Did twinbill's cancel step mark the subscription this event is about? Read from the
    payload, wherever the dialect put the mark (``shapes.migration_mark``)."""
    obj = obj_of(event)
    if obj.get("object") == "subscription":
        return shapes.migration_mark(obj) is not None
    for holder in (obj.get("subscription_details"), (obj.get("parent") or {})):
        if isinstance(holder, dict):
            inner = holder.get("subscription_details", holder)
            if isinstance(inner, dict) and shapes.migration_mark(inner) is not None:
                return True
    return False


def _sub_currency(obj: dict[str, Any]) -> str | None:
    """Current API: on the subscription; Plans API (localstripe): on the plan or price."""
    found = shapes.subscription_currency(obj)
    return _cur(found) if found else None


def _legacy_items(obj: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for row in shapes.item_rows(obj):
        price = shapes.item_price(row) or {}
        out.append(
            {
                "plan": _ref(price.get("id")),
                "quantity": _int(row.get("quantity")),
                "unit_amount": _int(price.get("unit_amount", price.get("amount"))),
            }
        )
    return out


def _legacy_data(ctype: str, obj: dict[str, Any]) -> tuple[dict[str, Any], str]:
    oid = _ref(obj.get("id")) or ""
    if ctype.startswith("subscription."):
        return {
            "id": oid,
            "legacy_id": oid,
            "status": obj.get("status"),
            "currency": _sub_currency(obj),
            "cancel_at_period_end": bool(obj.get("cancel_at_period_end")),
            "current_period_end": iso(shapes.period_end(obj)),
            "canceled_at": iso(obj.get("canceled_at")),
            "items": _legacy_items(obj),
        }, oid
    if ctype.startswith("invoice."):
        return {
            "id": oid,
            "legacy_id": oid,
            "status": obj.get("status"),
            "subscription_id": shapes.invoice_subscription(obj),
            "currency": _cur(obj.get("currency")),
            "total": _int(obj.get("total")),
            "amount_paid": _int(obj.get("amount_paid")),
            "amount_due": _int(obj.get("amount_due")),
        }, oid
    if ctype.startswith("payment."):
        charge = oid
        if obj.get("object") == "payment_intent":
            charges = obj.get("charges")
            rows = charges.get("data") if isinstance(charges, dict) else None
            first = rows[0] if isinstance(rows, list) and rows else None
            charge = _ref(obj.get("latest_charge")) or _ref(first) or oid
        amount = _int(obj.get("amount_received", obj.get("amount")))
        if obj.get("object") == "charge":
            amount = _int(obj.get("amount"))
        return {
            "id": charge,
            "legacy_id": charge,
            "status": obj.get("status"),
            "amount": amount,
            "amount_refunded": _int(obj.get("amount_refunded")) or 0,
            "currency": _cur(obj.get("currency")),
            "invoice_id": _ref(obj.get("invoice")),
        }, charge
    return {
        "id": oid,
        "legacy_id": oid,
        "currency": _cur(obj.get("currency")),
        "balance": _int(obj.get("balance")),
    }, oid


def normalise_legacy(event: dict[str, Any]) -> Canonical:
    etype = str(event.get("type", ""))
    ctype = LEGACY_TYPES.get(etype)
    if ctype is None:
        return Canonical(None, reason=f"legacy event type {etype!r} has no canonical meaning")
    data, about = _legacy_data(ctype, obj_of(event))
    if ctype in ("invoice.paid", "payment.succeeded"):
        key = f"{ctype}:{about}"  # one canonical event per invoice / charge
    elif ctype == "payment.refunded":
        key = f"{ctype}:{about}:{data.get('amount_refunded')}"
    else:
        key = f"event:{event.get('id')}"
    return Canonical(ctype, data, key)


# -- new (the in-house service's contract) -----------------------------------------


def _new_items(obj: dict[str, Any]) -> list[dict[str, Any]]:
    rows = obj.get("items")
    return [
        {
            "plan": r.get("plan_code"),
            "quantity": _int(r.get("quantity")),
            "unit_amount": _int(r.get("unit_amount")),
        }
        for r in (rows if isinstance(rows, list) else [])
        if isinstance(r, dict)
    ]


def _new_data(ctype: str, obj: dict[str, Any]) -> dict[str, Any]:
    base = {
        "id": obj.get("id"),
        "legacy_id": obj.get("external_id"),
        "currency": _cur(obj.get("currency")),
    }
    if ctype.startswith("subscription."):
        return base | {
            "status": obj.get("status"),
            "cancel_at_period_end": bool(obj.get("cancel_at_period_end")),
            "current_period_end": iso(obj.get("current_period_end")),
            "canceled_at": iso(obj.get("canceled_at")),
            "items": _new_items(obj),
        }
    if ctype.startswith("invoice."):
        return base | {
            "status": obj.get("status"),
            "subscription_id": obj.get("subscription_id"),
            "total": _int(obj.get("total")),
            "amount_paid": _int(obj.get("amount_paid")),
            "amount_due": _int(obj.get("amount_due")),
        }
    if ctype.startswith("payment.") or ctype == "offline_payment.recorded":
        refunds = obj.get("refunds")
        refunded = (
            sum(_int(r.get("amount")) or 0 for r in refunds if isinstance(r, dict))
            if isinstance(refunds, list)
            else 0
        )
        return base | {
            "status": obj.get("status"),
            "amount": _int(obj.get("amount")),
            "amount_refunded": refunded,
            "invoice_id": obj.get("invoice_id"),
            "method": obj.get("method"),
        }
    if ctype == "offline_refund.recorded":
        return base | {
            "amount": _int(obj.get("amount")),
            "payment_id": obj.get("payment_id"),
            "method": obj.get("method"),
        }
    return base | {"balance": _int(obj.get("balance"))}


def new_migration_caused(event: dict[str, Any]) -> bool:
    """An import's events, and a rollback's cancel (``cause: rollback``)."""
    return event.get("cause") in ("import", "rollback") or str(event.get("type", "")).startswith(
        "import."
    )


ROLLBACK_FLAG = "twinbill_rollback"  # set at creation on a subscription a rollback re-created


def legacy_rollback_flagged(event: dict[str, Any]) -> bool:
    """Is this event about a legacy subscription a rollback re-created (or its invoice)?"""
    obj = obj_of(event)
    if obj.get("object") == "subscription":
        return bool(metadata_of(obj).get(ROLLBACK_FLAG))
    for holder in (obj.get("subscription_details"), (obj.get("parent") or {})):
        if isinstance(holder, dict):
            inner = holder.get("subscription_details", holder)
            if isinstance(inner, dict) and metadata_of(inner).get(ROLLBACK_FLAG):
                return True
    return False


def normalise_new(event: dict[str, Any]) -> Canonical:
    etype = str(event.get("type", ""))
    ctype = NEW_TYPES.get(etype)
    if ctype is None:
        return Canonical(None, reason=f"new event type {etype!r} has no canonical meaning")
    return Canonical(ctype, _new_data(ctype, obj_of(event)), f"event:{event.get('id')}")


def normalise(system: str, event: dict[str, Any]) -> Canonical:
    return normalise_legacy(event) if system == LEGACY else normalise_new(event)


def occurred_at(event: dict[str, Any]) -> str | None:
    return iso(event.get("created"))


def canonical_event(
    system: str, event: dict[str, Any], user_id: str, canonical: Canonical
) -> dict[str, Any]:
    """The body the application receives."""
    assert canonical.type is not None
    return {
        "id": canonical_id(system, canonical.key),
        "type": canonical.type,
        "user_id": user_id,
        "system": system,
        "occurred_at": occurred_at(event),
        "source_event_id": event.get("id"),
        "data": canonical.data,
    }
