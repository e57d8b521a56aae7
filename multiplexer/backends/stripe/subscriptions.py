"""Stripe catalogue, subscriptions and discounts -> canonical records (pure).

Split from ``mapping`` (which re-exports these names). Reads both shape
generations: Plans and ``plan`` on items (older API, localstripe) and Prices with
period dates on items, ``pause_collection``, ``cancel_at`` and ``discounts`` lists
(current API). See ``mapping`` for the rules every reading follows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from core.canonical import (
    Discount,
    Interval,
    Plan,
    Subscription,
    SubscriptionItem,
    SubscriptionStatus,
    TaxRate,
)
from core.errors import TransformError
from multiplexer.backends.stripe import shapes
from multiplexer.backends.stripe.dialect import DIALECTS, DialectName
from multiplexer.backends.stripe.fields import (
    Obj,
    amount,
    build,
    currency,
    enum,
    list_data,
    metadata,
    percent_to_bp,
    ref_id,
    req,
    rid,
    ts,
)

# --- catalogue -----------------------------------------------------------------


def map_plan(obj: Obj, products: Mapping[str, Obj] | None = None) -> Plan:
    """A Plan (old API, localstripe) or a recurring Price (current API).

    The product name comes from an expanded ``product``, else from the snapshot's
    ``products`` (a Price's product is an id: one expansion level too deep to expand
    from a subscription list), else from the old Plan's ``name``.
    """
    record = rid(obj)
    product = obj.get("product")
    if isinstance(product, str) and products and product in products:
        product = products[product]
    product_name = product.get("name") if isinstance(product, Mapping) else obj.get("name")
    if obj.get("object") == "price" or "recurring" in obj:
        recurring = req(obj, "recurring")
        unit = obj.get("unit_amount")
        if unit is None:  # tiered / custom-amount prices have no single unit amount
            raise TransformError(
                "price has no unit_amount (tiered or custom prices are not supported)",
                record=record,
                field="unit_amount",
            )
        interval, count = recurring.get("interval"), recurring.get("interval_count") or 1
    else:
        if obj.get("billing_scheme", "per_unit") != "per_unit":
            raise TransformError(
                "tiered plans are not supported", record=record, field="billing_scheme"
            )
        unit = amount(obj, "amount")
        interval, count = obj.get("interval"), obj.get("interval_count") or 1
    return build(
        Plan,
        record,
        id=record,
        legacy_id=record,
        currency=currency(obj.get("currency"), record),
        product_name=product_name,
        unit_amount=unit,
        interval=enum(Interval, interval, record, "interval"),
        interval_count=count,
    )


# --- subscriptions and discounts -------------------------------------------------


def _price_of(item: Obj) -> Obj:
    price = shapes.item_price(item)
    if price is not None:
        return price
    raise TransformError(
        "item has neither an expanded price nor plan", record=rid(item), field="price"
    )


def map_item(item: Obj, products: Mapping[str, Obj] | None = None) -> SubscriptionItem:
    record = rid(item)
    plan = map_plan(_price_of(item), products)
    return build(
        SubscriptionItem,
        record,
        id=record,
        legacy_id=record,
        plan_code=plan.id,
        product_name=plan.product_name,
        unit_amount=plan.unit_amount,
        quantity=item.get("quantity") if item.get("quantity") is not None else 1,
        interval=plan.interval,
        interval_count=plan.interval_count,
    )


def map_tax_rate(obj: Any, record: str) -> TaxRate:
    """A ``tax_rate`` object (expanded; localstripe always expands ``default_tax_rates``)."""
    if not isinstance(obj, Mapping):
        raise TransformError(
            f"tax rate is not expanded: {obj!r}", record=record, field="default_tax_rates"
        )
    tr = rid(obj)
    try:
        pct = Decimal(str(req(obj, "percentage")))
    except InvalidOperation:
        raise TransformError(
            f"not a percentage: {obj.get('percentage')!r}", record=tr, field="percentage"
        ) from None
    return build(
        TaxRate,
        tr,
        id=tr,
        legacy_id=tr,
        display_name=obj.get("display_name") or tr,
        percentage=pct,
        inclusive=bool(obj.get("inclusive")),
        jurisdiction=obj.get("jurisdiction"),
        country=obj.get("country"),
    )


def _localstripe_trial(sub: Obj, now: datetime) -> bool:
    """localstripe keeps a trial ``incomplete`` with a future ``trial_end`` (legacy-gaps)."""
    end = ts(sub, "trial_end")
    return sub.get("status") == "incomplete" and end is not None and end > now


def _period(sub: Obj, raw_items: Sequence[Obj]) -> tuple[Any, Any]:
    """Old API: the subscription's period. Current API: each item has its own period;
    the subscription's is the one that ends first (its next billing), not the latest."""
    start, end = ts(sub, "current_period_start"), ts(sub, "current_period_end")
    if start is not None and end is not None:
        return start, end
    periods = [
        (
            ts(i, "current_period_end", required=True, record=rid(i)),
            ts(i, "current_period_start", required=True, record=rid(i)),
        )
        for i in raw_items
    ]
    if not periods:
        raise TransformError(
            "no period dates on the subscription nor its items",
            record=rid(sub),
            field="current_period_start",
        )
    end, start = min(periods)
    return start, end


def _pause(sub: Obj) -> tuple[str | None, Any]:
    pause = sub.get("pause_collection")
    if not isinstance(pause, Mapping):
        return None, None
    behavior = pause.get("behavior")
    if behavior not in ("keep_as_draft", "mark_uncollectible", "void"):
        raise TransformError(
            f"unknown pause_collection.behavior {behavior!r}",
            record=rid(sub),
            field="pause_collection.behavior",
        )
    return behavior, ts(pause, "resumes_at", record=rid(sub))


def map_subscription(
    sub: Obj,
    products: Mapping[str, Obj] | None = None,
    *,
    dialect: DialectName = "current",
    now: datetime | None = None,
) -> Subscription:
    """Period dates: on the subscription (old) or the items' (current API): the item
    period that ends first (the next billing), not the latest.

    localstripe dialect: an ``incomplete`` subscription with ``trial_end`` in the future
    is ``trialing`` (its period runs to ``trial_end``, as on Stripe), so the next renewal
    is the trial's end and the renewal guard covers it.

    ``cancel_at`` (a dated cancellation) and ``pause_collection`` are read so that the
    renewal date is right and preflight can defer such users (docs/legacy-gaps.md).
    Not mapped: billing anchors, collection settings.
    """
    record = rid(sub)
    status = req(sub, "status")
    trial = DIALECTS[dialect].incomplete_trial_is_trialing and _localstripe_trial(
        sub, now or datetime.now(UTC)
    )
    raw_items = list_data(sub, "items", record)
    items = tuple(map_item(i, products) for i in raw_items)
    start, end = _period(sub, raw_items)
    paused, resumes = _pause(sub)
    cur = shapes.subscription_currency(sub)
    cancel_at = ts(sub, "cancel_at")
    if sub.get("cancel_at_period_end"):
        cancel_at = None  # Stripe fills cancel_at with the period end then: not a dated cancel
    trial_start, trial_end = ts(sub, "trial_start"), ts(sub, "trial_end")
    if trial:
        status = SubscriptionStatus.TRIALING.value
        trial_start = trial_start or ts(sub, "start_date") or ts(sub, "created")
        start, end = trial_start, trial_end
    rates = sub.get("default_tax_rates") or []
    return build(
        Subscription,
        record,
        id=record,
        legacy_id=record,
        currency=currency(cur, record),
        status=enum(SubscriptionStatus, status, record, "status"),
        created_at=ts(sub, "created", required=True),
        current_period_start=start,
        current_period_end=end,
        trial_start=trial_start,
        trial_end=trial_end,
        tax_rates=tuple(map_tax_rate(r, record) for r in rates),
        cancel_at_period_end=bool(sub.get("cancel_at_period_end")),
        cancel_at=cancel_at,
        collection_paused=paused,
        collection_resumes_at=resumes,
        canceled_at=ts(sub, "canceled_at"),
        ended_at=ts(sub, "ended_at"),
        items=items,
        metadata=metadata(sub),
    )


def raw_discounts(owner: Obj) -> list[Any]:
    """Discount objects of a subscription/customer: ``discounts`` (current) or ``discount``."""
    found: list[Any] = []
    if isinstance(owner.get("discounts"), list):
        found.extend(owner["discounts"])
    single = owner.get("discount")
    if isinstance(single, Mapping) and not any(
        isinstance(d, Mapping) and d.get("id") and d.get("id") == single.get("id") for d in found
    ):
        found.append(single)
    return found


def map_discount(
    disc: Any, *, subscription_id: str | None, coupons: Mapping[str, Obj] | None = None
) -> Discount:
    """Old discounts embed ``coupon`` and may lack an id; current ones use ``source.coupon``.

    An old-API discount without an id gets ``di_<owner>_<coupon>`` (stable across
    snapshots) so the reconciler can pair it.
    """
    if not isinstance(disc, Mapping):
        raise TransformError(
            "discount is not expanded (snapshot must expand discounts)",
            record=str(disc),
            field="discounts",
        )
    coupon = disc.get("coupon")
    field = "coupon"
    if coupon is None and isinstance(disc.get("source"), Mapping):
        coupon, field = disc["source"].get("coupon"), "source.coupon"
    if isinstance(coupon, str):
        coupon = (coupons or {}).get(coupon, coupon)
    owner = subscription_id or ref_id(disc.get("customer")) or "unknown"
    record = str(
        disc.get("id")
        or f"di_{owner}_{coupon.get('id') if isinstance(coupon, Mapping) else coupon}"
    )
    if not isinstance(coupon, Mapping):
        raise TransformError("coupon is missing or not expanded", record=record, field=field)
    c_id = rid(coupon)
    pct = coupon.get("percent_off")
    off = coupon.get("amount_off")
    if pct is None and off is None:
        raise TransformError(
            "coupon has neither percent_off nor amount_off", record=c_id, field="percent_off"
        )
    return build(
        Discount,
        record,
        id=record,
        legacy_id=record,
        subscription_id=subscription_id,
        coupon_code=c_id,
        percent_off_bp=None if pct is None else percent_to_bp(pct, c_id),
        amount_off=off,
        currency=currency(coupon["currency"], c_id) if off is not None else None,
        duration=req(coupon, "duration"),
        duration_in_months=coupon.get("duration_in_months"),
        starts_at=ts(disc, "start"),
        ends_at=ts(disc, "end"),
    )
