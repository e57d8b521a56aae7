"""Current-API objects (2026-10-28, the version stripe-python 16 pins), for tests.

Where they come from: every builder starts from **Stripe's published example
object** for its resource in ``fixtures3.json`` (stripe/openapi, MIT; a trimmed copy
of /work/shared/stripe/ in ``data/``), deep-copied, and sets only the fields a
configuration needs. Each override is checked against the **SDK's resource class**
(``stripe.Invoice`` ...): a field the pinned SDK does not declare is refused
(``ShapeError``), so the suite can't drift
into invented or localstripe-era fields (``paid_out_of_band``, ``charge`` on an
invoice, ``current_period_end`` on a subscription are all refused here).
Nothing here comes from localstripe.
"""

from __future__ import annotations

import copy
import json
import time
from functools import cache
from pathlib import Path
from typing import Any

import stripe

#: a trimmed copy of /work/shared/stripe/fixtures3.json (see data/README.md)
FIXTURES = Path(__file__).parent / "data" / "fixtures3.json"
DAY = 86400
#: "now" of the suite: today's midnight UTC, so that renewals are in the future for the
#: real services a saga talks to (the new service refuses imports renewing in the past)
T0 = int(time.time()) // DAY * DAY

#: resource name -> the SDK class whose declared fields bound what a test may set
SDK_CLASSES: dict[str, type] = {
    "customer": stripe.Customer,
    "subscription": stripe.Subscription,
    "subscription_item": stripe.SubscriptionItem,
    "price": stripe.Price,
    "plan": stripe.Plan,
    "product": stripe.Product,
    "coupon": stripe.Coupon,
    "discount": stripe.Discount,
    "invoice": stripe.Invoice,
    "line_item": stripe.InvoiceLineItem,
    "invoice_payment": stripe.InvoicePayment,
    "payment_record": stripe.PaymentRecord,
    "charge": stripe.Charge,
    "refund": stripe.Refund,
    "credit_note": stripe.CreditNote,
    "customer_balance_transaction": stripe.CustomerBalanceTransaction,
    "invoiceitem": stripe.InvoiceItem,
    "payment_method": stripe.PaymentMethod,
    "event": stripe.Event,
}


class ShapeError(AssertionError):
    pass


@cache
def _examples() -> dict[str, Any]:
    return json.loads(FIXTURES.read_text())["resources"]


def available() -> bool:
    return FIXTURES.exists()


@cache
def sdk_fields(kind: str) -> frozenset[str]:
    cls = SDK_CLASSES[kind]
    names: set[str] = set()
    for klass in cls.__mro__:
        names |= set(getattr(klass, "__annotations__", {}))
    return frozenset(n for n in names if not n.isupper() and not n.startswith("_"))


def example(kind: str, **fields: Any) -> dict[str, Any]:
    """Stripe's example ``kind`` with ``fields`` set (each must be an SDK-declared field)."""
    unknown = set(fields) - sdk_fields(kind) - {"object", "id"}
    if unknown:
        raise ShapeError(f"{kind} has no field(s) {sorted(unknown)} at the pinned API version")
    obj = copy.deepcopy(_examples()[kind])
    obj.update(copy.deepcopy(fields))
    return obj


def event(eid: str, kind: str, obj: dict[str, Any], *, created: int) -> dict[str, Any]:
    """A Stripe event (no example in the fixtures: built from the SDK's declared fields)."""
    out = {
        "id": eid,
        "object": "event",
        "api_version": stripe.api_version,
        "created": created,
        "data": {"object": copy.deepcopy(obj)},
        "livemode": False,
        "pending_webhooks": 0,
        "request": {"id": None, "idempotency_key": None},
        "type": kind,
    }
    unknown = set(out) - sdk_fields("event")
    if unknown:
        raise ShapeError(f"event has no field(s) {sorted(unknown)} at the pinned API version")
    return out


def listed(data: list[dict[str, Any]], url: str, has_more: bool = False) -> dict[str, Any]:
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


# --- catalogue -----------------------------------------------------------------------


def product(pid: str, name: str) -> dict[str, Any]:
    return example("product", id=pid, name=name, default_price=None)


def price(
    pid: str,
    amount: int,
    currency: str,
    *,
    product_id: str,
    interval: str = "month",
    count: int = 1,
    tax_behavior: str = "unspecified",
) -> dict[str, Any]:
    base = _examples()["price"]
    return example(
        "price",
        id=pid,
        unit_amount=amount,
        unit_amount_decimal=str(amount),
        currency=currency,
        product=product_id,
        tax_behavior=tax_behavior,
        custom_unit_amount=None,
        transform_quantity=None,
        recurring={**base["recurring"], "interval": interval, "interval_count": count},
    )


def coupon(
    cid: str,
    *,
    percent_off: float | None = None,
    amount_off: int | None = None,
    currency: str | None = None,
    duration: str = "forever",
    months: int | None = None,
) -> dict[str, Any]:
    return example(
        "coupon",
        id=cid,
        percent_off=percent_off,
        amount_off=amount_off,
        currency=currency,
        duration=duration,
        duration_in_months=months,
        name=cid,
        redeem_by=None,
    )


def discount(
    did: str,
    coupon_obj: dict[str, Any] | str,
    *,
    customer: str,
    subscription: str | None = None,
    item: str | None = None,
) -> dict[str, Any]:
    return example(
        "discount",
        id=did,
        customer=customer,
        subscription=subscription,
        subscription_item=item,
        source={"type": "coupon", "coupon": coupon_obj},
        start=T0,
        end=None,
    )


# --- customer and subscriptions --------------------------------------------------------


def customer(
    cid: str,
    user_id: str,
    *,
    balance: int = 0,
    currency: str | None = None,
    discount_obj: dict[str, Any] | None = None,
    **more: Any,
) -> dict[str, Any]:
    return example(
        "customer",
        id=cid,
        email=f"{user_id}@example.test",
        name="Ada Lovelace",
        balance=balance,
        currency=currency,
        created=T0 - 90 * DAY,
        metadata={"app_user_id": user_id},
        discount=discount_obj,
        invoice_settings={
            **_examples()["customer"]["invoice_settings"],
            "default_payment_method": f"pm_{cid}",
        },
        **more,
    )


def item(
    siid: str,
    sub_id: str,
    price_obj: dict[str, Any],
    *,
    start: int,
    end: int,
    quantity: int = 1,
    discounts: list[Any] | None = None,
) -> dict[str, Any]:
    obj = example(
        "subscription_item",
        id=siid,
        subscription=sub_id,
        price=price_obj,
        quantity=quantity,
        current_period_start=start,
        current_period_end=end,
        discounts=discounts or [],
        created=start,
    )
    # the example carries a tiered "plan" echo; the API's plan echo mirrors the price
    obj["plan"] = plan_echo(price_obj)
    return obj


def plan_echo(price_obj: dict[str, Any]) -> dict[str, Any]:
    rec = price_obj["recurring"]
    return example(
        "plan",
        id=price_obj["id"],
        amount=price_obj["unit_amount"],
        amount_decimal=None if price_obj["unit_amount"] is None else str(price_obj["unit_amount"]),
        billing_scheme=price_obj.get("billing_scheme", "per_unit"),
        currency=price_obj["currency"],
        interval=rec["interval"],
        interval_count=rec["interval_count"],
        product=price_obj["product"],
        transform_usage=None,
    )


def subscription(
    sid: str, cid: str, items: list[dict[str, Any]], *, status: str = "active", **more: Any
) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "id": sid,
        "customer": cid,
        "status": status,
        "currency": items[0]["price"]["currency"],
        "created": T0 - 30 * DAY,
        "start_date": T0 - 30 * DAY,
        "billing_cycle_anchor": items[0]["current_period_end"],
        "cancel_at": None,
        "cancel_at_period_end": False,
        "canceled_at": None,
        "ended_at": None,
        "pause_collection": None,
        "trial_start": None,
        "trial_end": None,
        "discounts": [],
        "metadata": {},
        "latest_invoice": None,
        "next_pending_invoice_item_invoice": None,
        "pending_update": None,
        "pending_invoice_item_interval": None,
        "pending_setup_intent": None,
        "schedule": None,
        "transfer_data": None,
        "billing_cycle_anchor_config": None,
        "billing_schedules": [],
        "managed_payments": None,
        "payment_settings": None,
        "items": listed(items, f"/v1/subscription_items?subscription={sid}"),
    }
    fields.update(more)
    return example("subscription", **fields)


# the invoice and money builders live next door (kept under 400 lines each)
from tests.stripe_current.shapes_money import (  # noqa: E402, F401
    balance_transaction,
    charge,
    credit_note,
    invoice,
    invoice_payment,
    line,
    payment_record,
    refund,
    tax,
)
