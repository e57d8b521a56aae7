"""Stripe objects (as JSON dicts) -> canonical records. Pure: no I/O, no ``stripe`` import.

Two generations of Stripe shapes reach us and both must map to the same canonical
record, because real accounts can be pinned to any API version while localstripe
speaks an old one:

* older (localstripe): ``plan`` on subscriptions and items, period dates on the
  subscription, one ``discount`` with an embedded ``coupon``, ``charge`` on the
  invoice, ``subscription`` on the invoice, ``account_balance`` on the customer;
* current: ``price`` (``unit_amount`` + ``recurring``), period dates on
  ``items.data[]``, ``discounts`` lists (ids or expanded objects, coupon under
  ``source.coupon``), ``parent.subscription_details.subscription``, invoice
  ``payments`` (``invoice_payment`` objects), ``balance``, customer balance
  transactions.

Rules: amounts are already minor units (never divided); currencies are
uppercased; unix seconds become aware UTC; ``percent_off`` goes through
``Decimal(str(x)) * 100`` and must land on a whole basis point; an unknown enum
value or a missing required field raises ``TransformError`` naming the record id
and the field, never a ``KeyError``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from core.canonical import (
    BillingHistory,
    Customer,
    Discount,
    Interval,
    Payment,
    Plan,
    Refund,
    Subscription,
    SubscriptionItem,
    SubscriptionStatus,
    System,
    TaxRate,
)
from core.errors import TransformError
from multiplexer.backends.stripe_fields import (
    META_CURRENCY,
    META_USER,
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
from multiplexer.backends.stripe_payments import (
    charge_invoice_index,
    is_live_refund,
    map_balance_transaction,
    map_charge,
    map_invoice,
    map_out_of_band,
    map_refund,
)

#: ``current``: real Stripe at the SDK's API version; ``localstripe``: the emulator's
#: older API *and its quirks* (docs/legacy-gaps.md). Only the readings that differ take it.
Dialect = Literal["current", "localstripe"]

# --- catalogue -----------------------------------------------------------------


def map_plan(obj: Obj) -> Plan:
    """A Plan (old API, localstripe) or a recurring Price (current API)."""
    record = rid(obj)
    product = obj.get("product")
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


# --- customer ------------------------------------------------------------------


def customer_currency(
    cus: Obj, subscriptions: Sequence[Obj] = (), invoices: Sequence[Obj] = ()
) -> str:
    """The customer's billing currency.

    Stripe's ``customer.currency`` is null until something is billed, and
    localstripe always answers ``eur`` for card customers, so it is the last
    resort: the newest subscription's currency, then the newest invoice's, then
    the currency twinbill stored in metadata when it created the customer.
    """
    record = rid(cus)
    embedded = (
        list_data(cus, "subscriptions", record)
        if isinstance(cus.get("subscriptions"), Mapping | list)
        else []
    )
    for sub in sorted(
        [*subscriptions, *embedded], key=lambda s: s.get("created") or 0, reverse=True
    ):
        cur = sub.get("currency") or _first_item_price(sub).get("currency")
        if cur:
            return currency(cur, rid(sub))
    for inv in sorted(invoices, key=lambda i: i.get("created") or 0, reverse=True):
        if inv.get("currency"):
            return currency(inv["currency"], rid(inv))
    meta = metadata(cus)
    if meta.get(META_CURRENCY):
        return currency(meta[META_CURRENCY], record, f"metadata.{META_CURRENCY}")
    return currency(cus.get("currency"), record)


def customer_balance(cus: Obj, *, dialect: Dialect = "current") -> int:
    """The customer's balance in Stripe's sign: negative is credit owed to the customer.

    ``balance`` (current API) and ``account_balance`` (old API) share that sign on
    Stripe. localstripe never returns ``balance`` and stores ``account_balance`` as
    *minus* the balance it was given (a credit of 500 reads ``account_balance: 500``,
    docs/legacy-gaps.md), so its dialect flips it back: a credit stays a credit.
    """
    record = rid(cus)
    if "balance" in cus and cus["balance"] is not None:
        return amount(cus, "balance", record=record)
    raw = amount(cus, "account_balance", default=0, record=record)
    return -raw if dialect == "localstripe" else raw


def map_customer(
    cus: Obj,
    subscriptions: Sequence[Obj] = (),
    invoices: Sequence[Obj] = (),
    *,
    dialect: Dialect = "current",
) -> Customer:
    """``user_id`` is metadata ``app_user_id`` or ``""`` (the caller decides what that means)."""
    record = rid(cus)
    meta = metadata(cus)
    balance = customer_balance(cus, dialect=dialect)
    pms: list[str] = []
    default_pm = ref_id((cus.get("invoice_settings") or {}).get("default_payment_method"))
    for pm in [default_pm, ref_id(cus.get("default_source"))]:
        if pm and pm not in pms:
            pms.append(pm)
    return build(
        Customer,
        record,
        id=record,
        legacy_id=record,
        user_id=meta.get(META_USER, ""),
        currency=customer_currency(cus, subscriptions, invoices),
        email=cus.get("email"),
        name=cus.get("name"),
        balance=balance,
        payment_method_ids=tuple(pms),
        created_at=ts(cus, "created"),
        metadata=meta,
    )


# --- subscriptions and discounts -------------------------------------------------


def _first_item_price(sub: Obj) -> Obj:
    items = sub.get("items")
    data = items.get("data") if isinstance(items, Mapping) else items
    if data:
        return _price_of(data[0])
    return sub.get("plan") or {}


def _price_of(item: Obj) -> Obj:
    """Prefer ``price`` (current); ``plan`` is the old name and a compat echo today."""
    price = item.get("price")
    if isinstance(price, Mapping):
        return price
    plan = item.get("plan")
    if isinstance(plan, Mapping):
        return plan
    raise TransformError(
        "item has neither an expanded price nor plan", record=rid(item), field="price"
    )


def map_item(item: Obj) -> SubscriptionItem:
    record = rid(item)
    plan = map_plan(_price_of(item))
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


def map_subscription(
    sub: Obj, *, dialect: Dialect = "current", now: datetime | None = None
) -> Subscription:
    """Period dates: on the subscription (old) or the items' span (current API).

    localstripe dialect: an ``incomplete`` subscription with ``trial_end`` in the future
    is ``trialing`` (its period runs to ``trial_end``, as on Stripe), so the next renewal
    is the trial's end and the renewal guard covers it.

    Not mapped: ``cancel_at`` (a dated cancellation other than period end; the
    canonical model has no field for it), billing anchors, collection settings.
    """
    record = rid(sub)
    status = req(sub, "status")
    trial = dialect == "localstripe" and _localstripe_trial(sub, now or datetime.now(UTC))
    raw_items = list_data(sub, "items", record)
    items = tuple(map_item(i) for i in raw_items)
    start, end = ts(sub, "current_period_start"), ts(sub, "current_period_end")
    if start is None or end is None:
        starts = [ts(i, "current_period_start", required=True, record=rid(i)) for i in raw_items]
        ends = [ts(i, "current_period_end", required=True, record=rid(i)) for i in raw_items]
        if not starts:
            raise TransformError(
                "no period dates on the subscription nor its items",
                record=record,
                field="current_period_start",
            )
        start, end = min(starts), max(ends)
    cur = sub.get("currency") or _first_item_price(sub).get("currency")
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


def map_objects(
    user_id: str,
    objects: Mapping[str, Any],
    *,
    dialect: Dialect = "current",
    now: datetime | None = None,
) -> BillingHistory:
    """A whole snapshot (``RawSnapshot.objects``) -> the user's legacy history.

    ``user_id`` is the routing table's (the snapshot was taken for that route): the
    customer's ``user_id`` is that, not metadata ``app_user_id``, which a legacy
    account linked by ``twinbill users import FILE.csv`` does not have.
    """
    cus = objects.get("customer")
    if not isinstance(cus, Mapping):
        raise TransformError("snapshot has no customer", record=user_id, field="customer")
    subs: list[Obj] = list(objects.get("subscriptions") or [])
    invoices: list[Obj] = list(objects.get("invoices") or [])
    coupons: Mapping[str, Obj] = objects.get("coupons") or {}
    discounts: dict[str, Discount] = {}
    for owner, sub_id in [*((s, rid(s)) for s in subs), (cus, None)]:
        for raw in raw_discounts(owner):
            d = map_discount(raw, subscription_id=sub_id, coupons=coupons)
            discounts.setdefault(d.id, d)
    index = charge_invoice_index(invoices)
    payments: list[Payment] = [map_charge(c, index) for c in objects.get("charges") or []]
    payments += [p for p in (map_out_of_band(i) for i in invoices) if p is not None]
    refunds_raw: dict[str, Obj] = {}
    for ch in objects.get("charges") or []:
        for rf in list_data(ch, "refunds") if isinstance(ch.get("refunds"), Mapping | list) else []:
            refunds_raw.setdefault(rid(rf), rf)
    for rf in objects.get("refunds") or []:
        refunds_raw.setdefault(rid(rf), rf)
    refunds = [map_refund(r) for r in refunds_raw.values() if is_live_refund(r)]
    for tx in objects.get("balance_transactions") or []:
        mapped = map_balance_transaction(tx)
        if isinstance(mapped, Payment):
            payments.append(mapped)
        elif isinstance(mapped, Refund):
            refunds.append(mapped)
    return BillingHistory(
        user_id=user_id,
        system=System.LEGACY,
        customer=map_customer(cus, subs, invoices, dialect=dialect).model_copy(
            update={"user_id": user_id}
        ),
        subscriptions=tuple(
            sorted(
                (map_subscription(s, dialect=dialect, now=now) for s in subs),
                key=lambda s: (s.created_at, s.id),
            )
        ),
        discounts=tuple(sorted(discounts.values(), key=lambda d: d.id)),
        invoices=tuple(
            sorted((map_invoice(i) for i in invoices), key=lambda i: (i.created_at, i.id))
        ),
        payments=tuple(sorted(payments, key=lambda p: (p.paid_at, p.id))),
        refunds=tuple(sorted(refunds, key=lambda r: (r.created_at, r.id))),
    )
