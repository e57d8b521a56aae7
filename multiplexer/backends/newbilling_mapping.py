"""The new billing service's JSON (bundle, list items) -> canonical records. Pure, strict.

The service is a separate system with its own models: this mapping is where a
contract drift shows up, so it validates the shape (every required key present,
ints are ints, timestamps are ISO-8601 with an offset) and raises
``TransformError`` naming the record and field instead of a ``KeyError``.
``legacy_id`` is the carried-over ``external_id`` (``None`` for native records);
``id`` is the service's own id.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from core.canonical import (
    BillingHistory,
    Customer,
    Discount,
    Invoice,
    InvoiceLine,
    Payment,
    Refund,
    Subscription,
    SubscriptionItem,
    System,
    TaxAmount,
    TaxRate,
)
from core.errors import TransformError

Obj = Mapping[str, Any]


def _record(obj: Obj, kind: str) -> str:
    return str(obj.get("id") or obj.get("external_id") or f"<{kind}>")


def _get(
    obj: Obj, key: str, record: str, kind: type | tuple[type, ...], *, optional: bool = False
) -> Any:
    if key not in obj:
        raise TransformError("field missing from the service's answer", record=record, field=key)
    value = obj[key]
    if value is None and optional:
        return None
    if isinstance(value, bool) and kind is not bool:
        raise TransformError(f"expected {kind}, got a boolean", record=record, field=key)
    if not isinstance(value, kind):
        raise TransformError(f"expected {kind}, got {value!r}", record=record, field=key)
    return value


def _ts(obj: Obj, key: str, record: str, *, optional: bool = False) -> datetime | None:
    raw = _get(obj, key, record, str, optional=optional)
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise TransformError(
            f"not an ISO-8601 timestamp: {raw!r}", record=record, field=key
        ) from None
    if value.tzinfo is None:
        raise TransformError(f"timestamp without offset: {raw!r}", record=record, field=key)
    return value


def _build(model: type[Any], record: str, **fields: Any) -> Any:
    try:
        return model(**fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise TransformError(
            err["msg"], record=record, field=".".join(str(p) for p in err["loc"])
        ) from None


def _base(obj: Obj, kind: str) -> tuple[str, dict[str, Any]]:
    record = _record(obj, kind)
    return record, {
        "id": _get(obj, "id", record, str),
        "legacy_id": _get(obj, "external_id", record, str, optional=True),
    }


def _meta(obj: Obj, record: str) -> dict[str, str]:
    return dict(_get(obj, "metadata", record, dict))


def map_customer(obj: Obj) -> Customer:
    record, base = _base(obj, "customer")
    return _build(
        Customer,
        record,
        **base,
        user_id=_get(obj, "user_id", record, str),
        currency=_get(obj, "currency", record, str),
        email=_get(obj, "email", record, str, optional=True),
        name=_get(obj, "name", record, str, optional=True),
        balance=_get(obj, "balance", record, int),
        payment_method_ids=tuple(_get(obj, "payment_method_ids", record, list)),
        created_at=_ts(obj, "created_at", record, optional=True),
        metadata=_meta(obj, record),
    )


def map_item(obj: Obj) -> SubscriptionItem:
    record, base = _base(obj, "subscription_item")
    return _build(
        SubscriptionItem,
        record,
        **base,
        plan_code=_get(obj, "plan_code", record, str),
        product_name=_get(obj, "product_name", record, str, optional=True),
        unit_amount=_get(obj, "unit_amount", record, int),
        quantity=_get(obj, "quantity", record, int),
        interval=_get(obj, "interval", record, str),
        interval_count=_get(obj, "interval_count", record, int),
    )


def _optional_list(obj: Obj, key: str, record: str) -> list[Any]:
    """A list the contract added later (``tax_rates``): absent means empty, wrong type fails."""
    if key not in obj or obj[key] is None:
        return []
    return list(_get(obj, key, record, list))


def map_tax_rate(obj: Obj, record: str) -> TaxRate:
    if not isinstance(obj, Mapping):
        raise TransformError("tax rate is not an object", record=record, field="tax_rates")
    rate = _record({"id": obj.get("external_id")}, "tax_rate")
    return _build(
        TaxRate,
        rate,
        id=_get(obj, "external_id", rate, str),
        legacy_id=obj.get("external_id"),
        display_name=_get(obj, "display_name", rate, str),
        percentage=_get(obj, "percentage", rate, str),
        inclusive=_get(obj, "inclusive", rate, bool),
        jurisdiction=obj.get("jurisdiction"),
        country=obj.get("country"),
    )


def map_tax_amount(obj: Obj, record: str) -> TaxAmount:
    if not isinstance(obj, Mapping):
        raise TransformError("tax amount is not an object", record=record, field="tax_breakdown")
    return _build(
        TaxAmount,
        record,
        tax_rate_id=_get(obj, "tax_rate_external_id", record, str, optional=True),
        amount=_get(obj, "amount", record, int),
        inclusive=_get(obj, "inclusive", record, bool),
        percentage=_get(obj, "percentage", record, str, optional=True),
    )


def map_subscription(obj: Obj) -> Subscription:
    """``next_renewal_at`` is derived canonically (a property), not copied: the
    reconciler compares the service's own value against it separately."""
    record, base = _base(obj, "subscription")
    return _build(
        Subscription,
        record,
        **base,
        currency=_get(obj, "currency", record, str),
        status=_get(obj, "status", record, str),
        created_at=_ts(obj, "created_at", record),
        current_period_start=_ts(obj, "current_period_start", record),
        current_period_end=_ts(obj, "current_period_end", record),
        trial_start=_ts(obj, "trial_start", record, optional=True),
        trial_end=_ts(obj, "trial_end", record, optional=True),
        cancel_at_period_end=_get(obj, "cancel_at_period_end", record, bool),
        canceled_at=_ts(obj, "canceled_at", record, optional=True),
        ended_at=_ts(obj, "ended_at", record, optional=True),
        items=tuple(map_item(i) for i in _get(obj, "items", record, list)),
        tax_rates=tuple(map_tax_rate(t, record) for t in _optional_list(obj, "tax_rates", record)),
        metadata=_meta(obj, record),
    )


def map_discount(obj: Obj) -> Discount:
    record, base = _base(obj, "discount")
    return _build(
        Discount,
        record,
        **base,
        subscription_id=_get(obj, "subscription_id", record, str, optional=True),
        coupon_code=_get(obj, "coupon_code", record, str),
        percent_off_bp=_get(obj, "percent_off_bp", record, int, optional=True),
        amount_off=_get(obj, "amount_off", record, int, optional=True),
        currency=_get(obj, "currency", record, str, optional=True),
        duration=_get(obj, "duration", record, str),
        duration_in_months=_get(obj, "duration_in_months", record, int, optional=True),
        starts_at=_ts(obj, "starts_at", record, optional=True),
        ends_at=_ts(obj, "ends_at", record, optional=True),
    )


def map_line(obj: Obj) -> InvoiceLine:
    record, base = _base(obj, "invoice_line")
    return _build(
        InvoiceLine,
        record,
        **base,
        description=_get(obj, "description", record, str, optional=True),
        amount=_get(obj, "amount", record, int),
        quantity=_get(obj, "quantity", record, int),
        period_start=_ts(obj, "period_start", record, optional=True),
        period_end=_ts(obj, "period_end", record, optional=True),
        proration=_get(obj, "proration", record, bool),
        plan_code=_get(obj, "plan_code", record, str, optional=True),
    )


def map_invoice(obj: Obj) -> Invoice:
    record, base = _base(obj, "invoice")
    ints = {
        k: _get(obj, k, record, int)
        for k in ("subtotal", "discount_total", "tax", "total", "amount_paid", "amount_due")
    }
    ints["balance_applied"] = _get(obj, "balance_applied", record, int, optional=True) or 0
    return _build(
        Invoice,
        record,
        **base,
        **ints,
        number=_get(obj, "number", record, str, optional=True),
        currency=_get(obj, "currency", record, str),
        subscription_id=_get(obj, "subscription_id", record, str, optional=True),
        status=_get(obj, "status", record, str),
        created_at=_ts(obj, "created_at", record),
        period_start=_ts(obj, "period_start", record, optional=True),
        period_end=_ts(obj, "period_end", record, optional=True),
        due_at=_ts(obj, "due_at", record, optional=True),
        paid_at=_ts(obj, "paid_at", record, optional=True),
        paid_out_of_band=_get(obj, "paid_out_of_band", record, bool),
        metadata=_meta(obj, record),
        tax_breakdown=tuple(
            map_tax_amount(t, record) for t in _optional_list(obj, "tax_breakdown", record)
        ),
        lines=tuple(map_line(li) for li in _get(obj, "lines", record, list)),
    )


def map_payment(obj: Obj, refunded: int | None = None) -> Payment:
    """``amount_refunded`` comes from the refunds (bundle) or the embedded ``refunds`` list."""
    record, base = _base(obj, "payment")
    if refunded is None:
        embedded = obj.get("refunds") or []
        refunded = sum(int(r.get("amount") or 0) for r in embedded if isinstance(r, Mapping))
    return _build(
        Payment,
        record,
        **base,
        currency=_get(obj, "currency", record, str),
        invoice_id=_get(obj, "invoice_id", record, str, optional=True),
        amount=_get(obj, "amount", record, int),
        status=_get(obj, "status", record, str),
        method=_get(obj, "method", record, str),
        payment_method_id=_get(obj, "payment_method_id", record, str, optional=True),
        reference=_get(obj, "reference", record, str, optional=True),
        paid_at=_ts(obj, "paid_at", record),
        amount_refunded=refunded,
    )


def map_refund(obj: Obj) -> Refund:
    record, base = _base(obj, "refund")
    return _build(
        Refund,
        record,
        **base,
        currency=_get(obj, "currency", record, str),
        payment_id=_get(obj, "payment_id", record, str, optional=True),
        amount=_get(obj, "amount", record, int),
        reason=_get(obj, "reason", record, str, optional=True),
        method=_get(obj, "method", record, str),
        reference=_get(obj, "reference", record, str, optional=True),
        created_at=_ts(obj, "created_at", record),
    )


def map_bundle(bundle: Obj) -> BillingHistory:
    """``GET /v1/users/{id}/bundle`` -> the user's history in the new system.

    Not mapped: ``import`` (status of the import the records came from: saga
    state, not billing state) and ``subscription_external_id`` references (the
    canonical model references by the producing system's own ids).
    """
    if not isinstance(bundle, Mapping):
        raise TransformError(f"bundle is not an object: {type(bundle).__name__}", record="bundle")
    user = _get(bundle, "user_id", "bundle", str)
    lists = {
        k: _get(bundle, k, f"bundle {user}", list)
        for k in ("subscriptions", "discounts", "invoices", "payments", "refunds")
    }
    for key, items in lists.items():
        for n, item in enumerate(items):
            if not isinstance(item, Mapping):
                raise TransformError(
                    f"does not match the contract: {type(item).__name__}, not an object",
                    record=f"bundle {user}",
                    field=f"{key}[{n}]",
                )
    customer = _get(bundle, "customer", f"bundle {user}", dict, optional=True)
    refunds = tuple(map_refund(r) for r in lists["refunds"])
    refunded: dict[str, int] = {}
    for r in refunds:
        if r.payment_id:
            refunded[r.payment_id] = refunded.get(r.payment_id, 0) + r.amount
    return BillingHistory(
        user_id=user,
        system=System.NEW,
        customer=map_customer(customer) if customer is not None else None,
        subscriptions=tuple(map_subscription(s) for s in lists["subscriptions"]),
        discounts=tuple(map_discount(d) for d in lists["discounts"]),
        invoices=tuple(map_invoice(i) for i in lists["invoices"]),
        payments=tuple(
            map_payment(p, refunded.get(str(p.get("id")), 0)) for p in lists["payments"]
        ),
        refunds=refunds,
    )
