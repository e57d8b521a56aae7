"""Stripe invoices, charges, refunds and offline money -> canonical records (pure).

Reads both invoice generations: ``subscription``/``charge``/``tax`` (old API,
localstripe) and ``parent.subscription_details``/``payments``/``total_taxes``
(current API). Payments are charges; refunds come from ``charge.refunds`` and
the refunds list; twinbill's offline money lives in customer balance
transactions (current API) or out-of-band paid invoices.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.canonical import Invoice, InvoiceLine, InvoiceStatus, Payment, PaymentStatus, Refund
from core.errors import TransformError
from multiplexer.backends.stripe_fields import (
    META_INVOICE,
    META_OFFLINE_PAYMENT,
    META_OFFLINE_REFUND,
    META_PAYMENT,
    META_REASON,
    META_REFERENCE,
    Obj,
    amount,
    build,
    currency,
    enum,
    list_data,
    metadata,
    ref_id,
    req,
    rid,
    ts,
)
from multiplexer.backends.stripe_preview import tax_breakdown


def invoice_subscription(inv: Obj) -> str | None:
    parent = inv.get("parent") or {}
    details = parent.get("subscription_details") or {}
    return ref_id(inv.get("subscription")) or ref_id(details.get("subscription"))


def _line_proration(line: Obj) -> bool:
    if "proration" in line:
        return bool(line["proration"])
    parent = line.get("parent") or {}
    kind = parent.get("type")
    details = parent.get(kind) if isinstance(kind, str) else None
    return bool(isinstance(details, Mapping) and details.get("proration"))


def _line_plan(line: Obj) -> str | None:
    plan = ref_id(line.get("price")) or ref_id(line.get("plan"))
    pricing = line.get("pricing") or {}
    details = pricing.get("price_details") or {}
    return plan or ref_id(details.get("price"))


def map_line(line: Obj) -> InvoiceLine:
    record = rid(line)
    period = line.get("period") or {}
    return build(
        InvoiceLine,
        record,
        id=record,
        legacy_id=record,
        description=line.get("description"),
        amount=amount(line, "amount"),
        quantity=line.get("quantity") if line.get("quantity") is not None else 1,
        period_start=ts(period, "start", record=record),
        period_end=ts(period, "end", record=record),
        proration=_line_proration(line),
        plan_code=_line_plan(line),
    )


def _sum(items: Any) -> int:
    return sum(int(x.get("amount") or 0) for x in items or [] if isinstance(x, Mapping))


def remaining_due(inv: Obj) -> int:
    """Canonical ``amount_due`` is what is still owed. Stripe's ``amount_due`` is what was
    due when the invoice was finalised and stays put after payment; ``amount_remaining``
    (absent on localstripe) is the canonical meaning."""
    if inv.get("amount_remaining") is not None:
        return amount(inv, "amount_remaining")
    if inv.get("status") in ("paid", "void", "uncollectible"):
        return 0
    return max(amount(inv, "amount_due", default=0) - amount(inv, "amount_paid", default=0), 0)


def balance_applied(inv: Obj, expected_total: int) -> int:
    """Customer credit that settled part of the invoice.

    Current Stripe keeps ``total`` = subtotal - discounts + tax and lowers
    ``amount_due`` by the credit; localstripe lowers ``total`` itself (and flips the
    sign of ``starting_balance``). Both come out as the same canonical invoice:
    ``total`` is the invoice's value, ``balance_applied`` the credit used.
    """
    stripe_total = amount(inv, "total")
    if stripe_total != expected_total:  # localstripe: credit taken off the total
        applied = expected_total - stripe_total
        if applied < 0 or not inv.get("starting_balance"):
            raise TransformError(
                f"total {stripe_total} != subtotal - discounts + tax = {expected_total} and no "
                "customer balance explains it",
                record=rid(inv),
                field="total",
            )
        return applied
    due = amount(inv, "amount_due", default=0)
    return max(stripe_total - due, 0) if stripe_total > 0 else 0


def map_invoice(inv: Obj) -> Invoice:
    """Not mapped: ``starting_balance``/``ending_balance`` (customer credit shows up in
    ``total`` vs ``subtotal`` and in the customer balance), hosted URLs, tax details
    beyond the total, collection settings."""
    record = rid(inv)
    tax = inv["tax"] if inv.get("tax") is not None else _sum(inv.get("total_taxes"))
    discount_total = _sum(inv.get("total_discount_amounts"))
    transitions = inv.get("status_transitions") or {}
    expected_total = amount(inv, "subtotal") - discount_total + tax
    applied = balance_applied(inv, expected_total)
    return build(
        Invoice,
        record,
        id=record,
        legacy_id=record,
        number=inv.get("number"),
        currency=currency(inv.get("currency"), record),
        subscription_id=invoice_subscription(inv),
        status=enum(InvoiceStatus, req(inv, "status"), record, "status"),
        created_at=ts(inv, "created", required=True),
        period_start=ts(inv, "period_start"),
        period_end=ts(inv, "period_end"),
        due_at=ts(inv, "due_date"),
        paid_at=ts(transitions, "paid_at", record=record),
        subtotal=amount(inv, "subtotal"),
        discount_total=discount_total,
        tax=tax,
        tax_breakdown=tax_breakdown(inv, record),
        total=expected_total,
        amount_paid=amount(inv, "amount_paid", default=0),
        amount_due=remaining_due(inv),
        balance_applied=applied,
        paid_out_of_band=bool(inv.get("paid_out_of_band")),
        metadata=metadata(inv),
        lines=tuple(map_line(li) for li in list_data(inv, "lines", record)),
    )


def charge_invoice_index(invoices: list[Obj]) -> dict[str, str]:
    """charge/payment-intent id -> invoice id, from either invoice generation.

    Old invoices name their ``charge`` (localstripe never fills ``charge.invoice``);
    current invoices list ``payments`` of ``invoice_payment`` objects.
    """
    index: dict[str, str] = {}
    for inv in invoices:
        for key in ("charge", "payment_intent"):
            pid = ref_id(inv.get(key))
            if pid:
                index[pid] = rid(inv)
        for ip in (
            list_data(inv, "payments") if isinstance(inv.get("payments"), Mapping | list) else []
        ):
            payment = ip.get("payment") or {}
            for key in ("charge", "payment_intent"):
                pid = ref_id(payment.get(key))
                if pid:
                    index[pid] = rid(inv)
    return index


def map_charge(ch: Obj, invoice_index: Mapping[str, str] | None = None) -> Payment:
    record = rid(ch)
    index = invoice_index or {}
    invoice_id = (
        ref_id(ch.get("invoice"))
        or index.get(record)
        or index.get(ref_id(ch.get("payment_intent")) or "")
    )
    details = ch.get("payment_method_details") or {}
    pm = ref_id(ch.get("payment_method")) or ref_id(ch.get("source"))
    method = "card" if details.get("type", "card") == "card" and pm else "other"
    return build(
        Payment,
        record,
        id=record,
        legacy_id=record,
        currency=currency(ch.get("currency"), record),
        invoice_id=invoice_id,
        amount=amount(ch, "amount"),
        status=enum(PaymentStatus, req(ch, "status"), record, "status"),
        method=method,
        payment_method_id=pm,
        paid_at=ts(ch, "created", required=True),
        amount_refunded=amount(ch, "amount_refunded", default=0),
    )


def map_refund(rf: Obj) -> Refund:
    record = rid(rf)
    meta = metadata(rf)
    return build(
        Refund,
        record,
        id=record,
        legacy_id=record,
        currency=currency(rf.get("currency"), record),
        payment_id=ref_id(rf.get("charge")),
        amount=amount(rf, "amount"),
        reason=meta.get(META_REASON) or rf.get("reason"),
        method="card",
        created_at=ts(rf, "created", required=True),
    )


def is_live_refund(rf: Obj) -> bool:
    """Failed/canceled refunds moved no money: left out of the history on purpose."""
    return rf.get("status") not in ("failed", "canceled")


def map_balance_transaction(tx: Obj) -> Payment | Refund | None:
    """Offline money twinbill recorded as a customer balance transaction (current API).

    Only transactions twinbill marked are payments/refunds; any other balance
    movement (credit notes, invoice application, manual adjustments) is already
    reflected in ``customer.balance`` and is deliberately not a payment.
    """
    record = rid(tx)
    meta = metadata(tx)
    cur = currency(tx.get("currency"), record)
    created = ts(tx, "created", required=True)
    if meta.get(META_OFFLINE_PAYMENT):
        return build(
            Payment,
            record,
            id=record,
            legacy_id=record,
            currency=cur,
            invoice_id=meta.get(META_INVOICE) or None,
            amount=-amount(tx, "amount"),
            status=PaymentStatus.SUCCEEDED,
            method="offline",
            reference=meta.get(META_REFERENCE),
            paid_at=created,
        )
    if meta.get(META_OFFLINE_REFUND):
        return build(
            Refund,
            record,
            id=record,
            legacy_id=record,
            currency=cur,
            payment_id=meta.get(META_PAYMENT) or None,
            amount=amount(tx, "amount"),
            reason=meta.get(META_REASON),
            method="offline",
            reference=meta.get(META_REFERENCE),
            created_at=created,
        )
    return None


def map_out_of_band(inv: Obj) -> Payment | None:
    """An invoice paid outside Stripe has no charge: it becomes an ``oob_<invoice>`` payment."""
    if not inv.get("paid_out_of_band") or inv.get("status") != "paid":
        return None
    record = f"oob_{rid(inv)}"
    meta = metadata(inv)
    paid = amount(inv, "amount_paid", default=0) or amount(inv, "total")
    when = ts(inv.get("status_transitions") or {}, "paid_at", record=rid(inv))
    return build(
        Payment,
        record,
        id=record,
        legacy_id=record,
        currency=currency(inv.get("currency"), rid(inv)),
        invoice_id=rid(inv),
        amount=paid,
        status=PaymentStatus.SUCCEEDED,
        method="offline",
        reference=meta.get(META_REFERENCE),
        paid_at=when or ts(inv, "created", required=True),
    )
