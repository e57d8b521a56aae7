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
from datetime import datetime
from typing import Any

from core.canonical import (
    BillingHistory,
    Customer,
    Discount,
    Payment,
    Refund,
    System,
)
from core.errors import TransformError
from multiplexer.backends.stripe import shapes
from multiplexer.backends.stripe.dialect import DIALECTS, DialectName
from multiplexer.backends.stripe.fields import (
    META_CURRENCY,
    META_USER,
    Obj,
    amount,
    build,
    currency,
    list_data,
    metadata,
    ref_id,
    rid,
    ts,
)
from multiplexer.backends.stripe.offline_map import (
    map_balance_transaction,
    map_credit_note,
    map_out_of_band,
    map_payment_record,
)
from multiplexer.backends.stripe.payments import (
    charge_invoice_index,
    is_live_refund,
    map_charge,
    map_invoice,
    map_refund,
)
from multiplexer.backends.stripe.subscriptions import (  # noqa: F401 - one mapping API
    map_discount,
    map_item,
    map_plan,
    map_subscription,
    map_tax_rate,
    raw_discounts,
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
        cur = shapes.subscription_currency(sub)
        if cur:
            return currency(cur, rid(sub))
    for inv in sorted(invoices, key=lambda i: i.get("created") or 0, reverse=True):
        if inv.get("currency"):
            return currency(inv["currency"], rid(inv))
    meta = metadata(cus)
    if meta.get(META_CURRENCY):
        return currency(meta[META_CURRENCY], record, f"metadata.{META_CURRENCY}")
    return currency(cus.get("currency"), record)


def customer_balance(cus: Obj, *, dialect: DialectName = "current") -> int:
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
    return -raw if DIALECTS[dialect].account_balance_negated else raw


def map_customer(
    cus: Obj,
    subscriptions: Sequence[Obj] = (),
    invoices: Sequence[Obj] = (),
    *,
    dialect: DialectName = "current",
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


def map_objects(
    user_id: str,
    objects: Mapping[str, Any],
    *,
    dialect: DialectName = "current",
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
    products: Mapping[str, Obj] = objects.get("products") or {}
    discounts: dict[str, Discount] = {}
    owners: list[tuple[Obj, str | None]] = [(cus, None)]
    for s in subs:  # item-level discounts belong to their subscription; each read once (by id)
        owners += [(s, rid(s))] + [(i, rid(s)) for i in list_data(s, "items", rid(s))]
    for owner, sub_id in owners:
        for raw in raw_discounts(owner):
            d = map_discount(raw, subscription_id=sub_id, coupons=coupons)
            discounts.setdefault(d.id, d)
    index = charge_invoice_index(invoices)
    payments: list[Payment] = [map_charge(c, index) for c in objects.get("charges") or []]
    recorded = [map_payment_record(ip) for ip in objects.get("invoice_payments") or []]
    payments += [p for p in recorded if p is not None]
    payments += [p for p in (map_out_of_band(i, payments) for i in invoices) if p is not None]
    refunds_raw: dict[str, Obj] = {}
    for ch in objects.get("charges") or []:
        for rf in list_data(ch, "refunds") if isinstance(ch.get("refunds"), Mapping | list) else []:
            refunds_raw.setdefault(rid(rf), rf)
    for rf in objects.get("refunds") or []:
        refunds_raw.setdefault(rid(rf), rf)
    refunds = [map_refund(r) for r in refunds_raw.values() if is_live_refund(r)]
    refunds += [r for r in map(map_credit_note, objects.get("credit_notes") or []) if r]
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
                (map_subscription(s, products, dialect=dialect, now=now) for s in subs),
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
