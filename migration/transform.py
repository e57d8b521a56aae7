"""Legacy history (canonical) -> the new service's import payload. Pure: no I/O.

Every legacy record ends up either in the payload or in ``skipped`` with a
reason, so nothing disappears silently. Validation refuses what would import
wrong (currencies that disagree, invoices whose lines do not add up) with a
``TransformError`` naming the record and the field.

``BUGS`` holds deliberately broken mappings for ``twinbill demo --inject-bug``:
a newcomer watches the reconciler catch them. They are never applied unless
asked for by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from core.canonical import BillingHistory, Invoice, Subscription, SubscriptionStatus, TaxRate
from core.errors import TransformError
from core.money import exponent


@dataclass(frozen=True)
class Transformed:
    payload: dict[str, Any]
    skipped: list[dict[str, str]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def _ts(value: datetime | None) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_currency(expected: str, record: str, got: str | None) -> None:
    if got is not None and got.upper() != expected:
        raise TransformError(
            f"currency {got} differs from the customer's {expected}",
            record=record,
            field="currency",
        )


def _check_invoice(inv: Invoice) -> None:
    lines = sum(line.amount for line in inv.lines)
    if inv.lines and lines != inv.subtotal:
        raise TransformError(
            f"lines add up to {lines}, subtotal is {inv.subtotal}", record=inv.id, field="subtotal"
        )
    if inv.subtotal - inv.discount_total + inv.tax != inv.total:
        raise TransformError(
            f"subtotal {inv.subtotal} - discount {inv.discount_total} + tax {inv.tax} "
            f"!= total {inv.total}",
            record=inv.id,
            field="total",
        )


def _tax_rate(rate: TaxRate) -> dict[str, Any]:
    return {
        "external_id": rate.id,
        "display_name": rate.display_name,
        "percentage": str(rate.percentage),  # exact decimal string, never a float
        "inclusive": rate.inclusive,
        "jurisdiction": rate.jurisdiction,
        "country": rate.country,
    }


def _subscription(sub: Subscription) -> dict[str, Any]:
    return {
        "external_id": sub.id,
        "status": sub.status.value,
        "currency": sub.currency,
        "created_at": _ts(sub.created_at),
        "current_period_start": _ts(sub.current_period_start),
        "current_period_end": _ts(sub.current_period_end),
        "trial_start": _ts(sub.trial_start),
        "trial_end": _ts(sub.trial_end),
        "cancel_at_period_end": sub.cancel_at_period_end,
        "canceled_at": _ts(sub.canceled_at),
        "ended_at": _ts(sub.ended_at),
        "metadata": dict(sub.metadata),
        "items": [
            {
                "external_id": item.id,
                "plan_code": item.plan_code,
                "product_name": item.product_name,
                "unit_amount": item.unit_amount,
                "quantity": item.quantity,
                "interval": item.interval.value,
                "interval_count": item.interval_count,
            }
            for item in sub.items
        ],
        "tax_rates": [_tax_rate(rate) for rate in sub.tax_rates],
    }


def _invoice(inv: Invoice) -> dict[str, Any]:
    return {
        "external_id": inv.id,
        "number": inv.number,
        "subscription_external_id": inv.subscription_id,
        "status": inv.status.value,
        "currency": inv.currency,
        "created_at": _ts(inv.created_at),
        "period_start": _ts(inv.period_start or inv.created_at),
        "period_end": _ts(inv.period_end or inv.created_at),
        "due_at": _ts(inv.due_at),
        "paid_at": _ts(inv.paid_at),
        "subtotal": inv.subtotal,
        "discount_total": inv.discount_total,
        "tax": inv.tax,
        "tax_breakdown": [
            {
                "tax_rate_external_id": t.tax_rate_id,
                "amount": t.amount,
                "inclusive": t.inclusive,
                "percentage": None if t.percentage is None else str(t.percentage),
            }
            for t in inv.tax_breakdown
        ],
        "total": inv.total,
        "amount_paid": inv.amount_paid,
        "amount_due": inv.amount_due,
        "balance_applied": inv.balance_applied,
        "paid_out_of_band": inv.paid_out_of_band,
        "metadata": dict(inv.metadata),
        "lines": [
            {
                "external_id": line.id,
                "description": line.description,
                "amount": line.amount,
                "quantity": line.quantity,
                "period_start": _ts(line.period_start or inv.period_start or inv.created_at),
                "period_end": _ts(line.period_end or inv.period_end or inv.created_at),
                "proration": line.proration,
                "plan_code": line.plan_code,
            }
            for line in inv.lines
        ],
    }


def build_payload(
    history: BillingHistory, *, source_ref: str, bug: str | None = None
) -> Transformed:
    """Map one user's legacy history to an import payload, validating as it goes."""
    if history.customer is None:
        raise TransformError("no legacy customer", record=history.user_id, field="customer")
    if bug is not None:
        history = BUGS[bug](history)
    cus = history.customer
    cur = cus.currency
    skipped: list[dict[str, str]] = []

    for sub in history.subscriptions:
        _check_currency(cur, sub.id, sub.currency)
    for inv in history.invoices:
        _check_currency(cur, inv.id, inv.currency)
        _check_invoice(inv)
    invoice_ids = {i.id for i in history.invoices}
    sub_ids = {s.id for s in history.subscriptions}

    payments = []
    for p in history.payments:
        _check_currency(cur, p.id, p.currency)
        invoice = p.invoice_id if p.invoice_id in invoice_ids else None
        if p.invoice_id and invoice is None:
            skipped.append(
                {
                    "record": p.id,
                    "field": "invoice_id",
                    "reason": f"invoice {p.invoice_id} not in the snapshot; "
                    "payment imported without its invoice link",
                }
            )
        payments.append(
            {
                "external_id": p.id,
                "invoice_external_id": invoice,
                "amount": p.amount,
                "currency": p.currency,
                "status": p.status.value,
                "method": p.method,
                "payment_method_id": p.payment_method_id,
                "reference": p.reference,
                "paid_at": _ts(p.paid_at),
            }
        )
    payment_ids = {p["external_id"] for p in payments}

    refunds = []
    for r in history.refunds:
        _check_currency(cur, r.id, r.currency)
        if r.payment_id not in payment_ids:
            raise TransformError(
                f"refund of unknown payment {r.payment_id}", record=r.id, field="payment_id"
            )
        refunds.append(
            {
                "external_id": r.id,
                "payment_external_id": r.payment_id,
                "amount": r.amount,
                "currency": r.currency,
                "reason": r.reason,
                "method": r.method,
                "reference": r.reference,
                "created_at": _ts(r.created_at),
            }
        )

    discounts = []
    for d in history.discounts:
        if d.subscription_id is not None and d.subscription_id not in sub_ids:
            skipped.append(
                {
                    "record": d.id,
                    "field": "subscription_id",
                    "reason": f"discount on subscription {d.subscription_id} outside the snapshot",
                }
            )
            continue
        discounts.append(
            {
                "external_id": d.id,
                "subscription_external_id": d.subscription_id,
                "coupon_code": d.coupon_code,
                "percent_off_bp": d.percent_off_bp,
                "amount_off": d.amount_off,
                "currency": d.currency,
                "duration": d.duration,
                "duration_in_months": d.duration_in_months,
                "starts_at": _ts(d.starts_at),
                "ends_at": _ts(d.ends_at),
            }
        )

    payload = {
        "user_id": history.user_id,
        "source": "stripe",
        "source_ref": source_ref,
        "customer": {
            "external_id": cus.id,
            "email": cus.email,
            "name": cus.name,
            "currency": cur,
            "balance": cus.balance,
            "payment_method_ids": list(cus.payment_method_ids),
            "metadata": dict(cus.metadata),
        },
        "subscriptions": [_subscription(s) for s in history.subscriptions],
        "discounts": discounts,
        "invoices": [_invoice(i) for i in history.invoices],
        "payments": payments,
        "refunds": refunds,
    }
    counts = {
        k: len(payload[k])
        for k in ("subscriptions", "discounts", "invoices", "payments", "refunds")
    }
    return Transformed(payload, skipped, counts)


# -- deliberately wrong mappings (demo only) -------------------------------------------------


def _bug_timestamp(h: BillingHistory) -> BillingHistory:
    """Reads period starts as Europe/Berlin wall-clock time: every one lands an hour off."""
    subs = tuple(
        s.model_copy(update={"current_period_start": s.current_period_start + timedelta(hours=1)})
        for s in h.subscriptions
    )
    return h.model_copy(update={"subscriptions": subs})


def _bug_zero_decimal(h: BillingHistory) -> BillingHistory:
    """Treats every currency as having cents: yen amounts come out 100x too large."""
    if h.customer is None or exponent(h.customer.currency) != 0:
        return h
    invoices = tuple(
        i.model_copy(
            update={
                "subtotal": i.subtotal * 100,
                "total": i.total * 100,
                "amount_paid": i.amount_paid * 100,
                "amount_due": i.amount_due * 100,
                "balance_applied": i.balance_applied * 100,
                "discount_total": i.discount_total * 100,
                "tax": i.tax * 100,
                "lines": tuple(
                    line.model_copy(update={"amount": line.amount * 100}) for line in i.lines
                ),
            }
        )
        for i in h.invoices
    )
    payments = tuple(p.model_copy(update={"amount": p.amount * 100}) for p in h.payments)
    refunds = tuple(r.model_copy(update={"amount": r.amount * 100}) for r in h.refunds)
    return h.model_copy(update={"invoices": invoices, "payments": payments, "refunds": refunds})


def _bug_drop_refund(h: BillingHistory) -> BillingHistory:
    """Forgets refunds entirely."""
    return h.model_copy(update={"refunds": ()})


def _bug_cancel_flag(h: BillingHistory) -> BillingHistory:
    """Forgets that a subscription was set to cancel at period end."""
    subs = tuple(s.model_copy(update={"cancel_at_period_end": False}) for s in h.subscriptions)
    return h.model_copy(update={"subscriptions": subs})


def _bug_credit_sign(h: BillingHistory) -> BillingHistory:
    """Reads the customer balance with the wrong sign: a credit arrives as a debt."""
    if h.customer is None or not h.customer.balance:
        return h
    return h.model_copy(
        update={"customer": h.customer.model_copy(update={"balance": -h.customer.balance})}
    )


def _bug_trial_state(h: BillingHistory) -> BillingHistory:
    """Takes a trial for an unpaid first invoice: imported ``incomplete``, billed by nobody."""
    subs = tuple(
        s.model_copy(update={"status": SubscriptionStatus.INCOMPLETE})
        if s.status is SubscriptionStatus.TRIALING
        else s
        for s in h.subscriptions
    )
    return h.model_copy(update={"subscriptions": subs})


def _bug_tax_rate(h: BillingHistory) -> BillingHistory:
    """Forgets the subscriptions' tax rates: the next renewal has nothing to tax with."""
    subs = tuple(s.model_copy(update={"tax_rates": ()}) for s in h.subscriptions)
    return h.model_copy(update={"subscriptions": subs})


BUGS: dict[str, Callable[[BillingHistory], BillingHistory]] = {
    "timestamp": _bug_timestamp,
    "zero-decimal": _bug_zero_decimal,
    "drop-refund": _bug_drop_refund,
    "cancel-flag": _bug_cancel_flag,
    "credit-sign": _bug_credit_sign,
    "trial-state": _bug_trial_state,
    "tax-rate": _bug_tax_rate,
}
