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
from multiplexer.backends.stripe import shapes
from multiplexer.backends.stripe.fields import (
    META_REASON,
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
from multiplexer.backends.stripe.preview import tax_breakdown


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


def _inclusive_tax(line: Obj) -> int:
    """VAT already inside a tax-inclusive line's amount (current API ``taxes[]``)."""
    taxes = line.get("taxes") or []
    return sum(
        int(t.get("amount") or 0)
        for t in taxes
        if isinstance(t, Mapping) and t.get("tax_behavior") == "inclusive"
    )


def map_line(line: Obj) -> InvoiceLine:
    """Canonical line amounts are net of tax, so that lines add up to the canonical
    subtotal and subtotal - discounts + tax = total holds for tax-inclusive prices too
    (Stripe's line amount includes inclusive VAT; it is taken out here, once)."""
    record = rid(line)
    period = line.get("period") or {}
    return build(
        InvoiceLine,
        record,
        id=record,
        legacy_id=record,
        description=line.get("description"),
        amount=amount(line, "amount") - _inclusive_tax(line),
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
    ``amount_due`` by the credit (``starting_balance`` -> ``ending_balance``);
    localstripe lowers ``total`` itself (and flips the sign of
    ``starting_balance``). Both come out as the same canonical invoice: ``total``
    is the invoice's value, ``balance_applied`` the credit used.
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
    start, end = inv.get("starting_balance"), inv.get("ending_balance")
    if isinstance(start, int) and isinstance(end, int):  # current API, finalised invoice
        return max(end - start, 0) if start < 0 else 0
    due = amount(inv, "amount_due", default=0)
    credited = amount(inv, "pre_payment_credit_notes_amount", default=0)
    return max(stripe_total - due - credited, 0) if stripe_total > 0 else 0


def invoice_amounts(inv: Obj) -> tuple[int, int, int, int]:
    """(subtotal, discount_total, tax, total) with total = subtotal - discounts + tax.

    Old API (``tax``): Stripe's own subtotal and tax, discounts from
    ``total_discount_amounts``. Current API (``total_taxes``): Stripe's ``subtotal``
    already has item-level discounts taken off and includes *inclusive* tax, so it
    is not the canonical subtotal; the canonical one is derived from Stripe's
    ``total`` (subtotal - invoice-level discounts + exclusive tax): every discount
    is subtracted once and inclusive VAT is not added again.
    """
    discount_total = _sum(inv.get("total_discount_amounts"))
    if "total_taxes" not in inv:  # old API (localstripe): ``tax``, no item discounts
        tax = inv["tax"] if inv.get("tax") is not None else 0
        subtotal = amount(inv, "subtotal")
        return subtotal, discount_total, tax, subtotal - discount_total + tax
    taxes = [t for t in inv["total_taxes"] or [] if isinstance(t, Mapping)]
    for t in taxes:
        if t.get("tax_behavior") not in ("inclusive", "exclusive"):
            raise TransformError(
                f"unknown tax_behavior {t.get('tax_behavior')!r}",
                record=rid(inv),
                field="total_taxes.tax_behavior",
            )
    tax = _sum(taxes)
    total = amount(inv, "total")
    return total + discount_total - tax, discount_total, tax, total


def map_invoice(inv: Obj) -> Invoice:
    """Not mapped: hosted URLs, tax details beyond the total, collection settings.
    Out-of-band money: the old ``paid_out_of_band`` flag or the current
    ``amount_paid_off_stripe`` (an includable field the snapshot asks for)."""
    record = rid(inv)
    subtotal, discount_total, tax, expected_total = invoice_amounts(inv)
    transitions = inv.get("status_transitions") or {}
    applied = balance_applied(inv, expected_total)
    return build(
        Invoice,
        record,
        id=record,
        legacy_id=record,
        number=inv.get("number"),
        currency=currency(inv.get("currency"), record),
        subscription_id=shapes.invoice_subscription(inv),
        status=enum(InvoiceStatus, req(inv, "status"), record, "status"),
        created_at=ts(inv, "created", required=True),
        period_start=ts(inv, "period_start"),
        period_end=ts(inv, "period_end"),
        due_at=ts(inv, "due_date"),
        paid_at=ts(transitions, "paid_at", record=record),
        subtotal=subtotal,
        discount_total=discount_total,
        tax=tax,
        tax_breakdown=tax_breakdown(inv, record),
        total=expected_total,
        amount_paid=amount(inv, "amount_paid", default=0),
        amount_due=remaining_due(inv),
        balance_applied=applied,
        paid_out_of_band=bool(inv.get("paid_out_of_band") or inv.get("amount_paid_off_stripe")),
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
