"""The service's own JSON representation of its rows.

Every response and webhook goes through these functions, so a record looks the
same in the bundle, the export, a list endpoint and an event.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import models as m
from .clock import fmt


def import_out(imp: m.Import) -> dict[str, Any]:
    return {
        "id": imp.id,
        "status": imp.status,
        "user_id": imp.user_id,
        "source": imp.source,
        "source_ref": imp.source_ref,
        "created_at": fmt(imp.created_at),
        "activated_at": fmt(imp.activated_at),
        "discarded_at": fmt(imp.discarded_at),
        "rolled_back_at": fmt(imp.rolled_back_at),
        "counts": dict(imp.counts),
    }


def customer_out(c: m.Customer) -> dict[str, Any]:
    return {
        "id": c.id,
        "user_id": c.user_id,
        "external_id": c.external_id,
        "email": c.email,
        "name": c.name,
        "currency": c.currency,
        "balance": c.balance,
        "payment_method_ids": list(c.payment_method_ids),
        "metadata": dict(c.metadata_),
        "created_at": fmt(c.created_at),
    }


def item_out(i: m.SubscriptionItem) -> dict[str, Any]:
    return {
        "id": i.id,
        "external_id": i.external_id,
        "plan_code": i.plan_code,
        "product_name": i.product_name,
        "unit_amount": i.unit_amount,
        "quantity": i.quantity,
        "interval": i.interval,
        "interval_count": i.interval_count,
    }


def subscription_out(s: m.Subscription) -> dict[str, Any]:
    return {
        "id": s.id,
        "user_id": s.user_id,
        "external_id": s.external_id,
        "status": s.status,
        "currency": s.currency,
        "created_at": fmt(s.created_at),
        "current_period_start": fmt(s.current_period_start),
        "current_period_end": fmt(s.current_period_end),
        "trial_start": fmt(s.trial_start),
        "trial_end": fmt(s.trial_end),
        "cancel_at_period_end": s.cancel_at_period_end,
        "canceled_at": fmt(s.canceled_at),
        "ended_at": fmt(s.ended_at),
        "next_renewal_at": fmt(s.next_renewal_at),
        "metadata": dict(s.metadata_),
        "items": [item_out(i) for i in s.items],
        "tax_rates": [dict(t) for t in s.tax_rates or []],
    }


def discount_out(d: m.Discount) -> dict[str, Any]:
    return {
        "id": d.id,
        "external_id": d.external_id,
        "subscription_id": d.subscription_id,
        "subscription_external_id": d.subscription_external_id,
        "coupon_code": d.coupon_code,
        "percent_off_bp": d.percent_off_bp,
        "amount_off": d.amount_off,
        "currency": d.currency,
        "duration": d.duration,
        "duration_in_months": d.duration_in_months,
        "starts_at": fmt(d.starts_at),
        "ends_at": fmt(d.ends_at),
    }


def line_out(li: m.InvoiceLine) -> dict[str, Any]:
    return {
        "id": li.id,
        "external_id": li.external_id,
        "description": li.description,
        "amount": li.amount,
        "quantity": li.quantity,
        "period_start": fmt(li.period_start),
        "period_end": fmt(li.period_end),
        "proration": li.proration,
        "plan_code": li.plan_code,
    }


def invoice_out(i: m.Invoice) -> dict[str, Any]:
    return {
        "id": i.id,
        "external_id": i.external_id,
        "number": i.number,
        "subscription_id": i.subscription_id,
        "subscription_external_id": i.subscription_external_id,
        "status": i.status,
        "currency": i.currency,
        "created_at": fmt(i.created_at),
        "period_start": fmt(i.period_start),
        "period_end": fmt(i.period_end),
        "due_at": fmt(i.due_at),
        "paid_at": fmt(i.paid_at),
        "subtotal": i.subtotal,
        "discount_total": i.discount_total,
        "tax": i.tax,
        "tax_breakdown": [dict(t) for t in i.tax_breakdown or []],
        "total": i.total,
        "amount_paid": i.amount_paid,
        "amount_due": i.amount_due,
        "balance_applied": i.balance_applied,
        "paid_out_of_band": i.paid_out_of_band,
        "metadata": dict(i.metadata_ or {}),
        "lines": [line_out(li) for li in i.lines],
    }


def payment_out(p: m.Payment) -> dict[str, Any]:
    return {
        "id": p.id,
        "external_id": p.external_id,
        "invoice_id": p.invoice_id,
        "invoice_external_id": p.invoice_external_id,
        "amount": p.amount,
        "currency": p.currency,
        "status": p.status,
        "method": p.method,
        "payment_method_id": p.payment_method_id,
        "reference": p.reference,
        "note": p.note,
        "paid_at": fmt(p.paid_at),
    }


def refund_out(r: m.Refund) -> dict[str, Any]:
    return {
        "id": r.id,
        "external_id": r.external_id,
        "payment_id": r.payment_id,
        "payment_external_id": r.payment_external_id,
        "amount": r.amount,
        "currency": r.currency,
        "reason": r.reason,
        "method": r.method,
        "reference": r.reference,
        "created_at": fmt(r.created_at),
    }


def payment_with_refunds(p: m.Payment, refunds: Sequence[m.Refund]) -> dict[str, Any]:
    out = payment_out(p)
    out["refunds"] = [refund_out(r) for r in refunds if r.payment_id == p.id]
    return out


def bundle(session: Session, customer: m.Customer) -> dict[str, Any]:
    """Everything the service holds for one user, lists ordered by (time, id)."""
    uid = customer.user_id
    imp = session.get(m.Import, customer.import_id) if customer.import_id else None
    subs = session.scalars(
        select(m.Subscription)
        .where(m.Subscription.user_id == uid)
        .order_by(m.Subscription.created_at, m.Subscription.id)
    ).all()
    discounts = session.scalars(
        select(m.Discount)
        .where(m.Discount.user_id == uid)
        .order_by(m.Discount.starts_at, m.Discount.id)
    ).all()
    invoices = session.scalars(
        select(m.Invoice)
        .where(m.Invoice.user_id == uid)
        .order_by(m.Invoice.created_at, m.Invoice.id)
    ).all()
    payments = session.scalars(
        select(m.Payment).where(m.Payment.user_id == uid).order_by(m.Payment.paid_at, m.Payment.id)
    ).all()
    refunds = session.scalars(
        select(m.Refund).where(m.Refund.user_id == uid).order_by(m.Refund.created_at, m.Refund.id)
    ).all()
    return {
        "user_id": uid,
        "import": {"id": imp.id, "status": imp.status} if imp else None,
        "customer": customer_out(customer),
        "subscriptions": [subscription_out(s) for s in subs],
        "discounts": [discount_out(d) for d in discounts],
        "invoices": [invoice_out(i) for i in invoices],
        "payments": [payment_out(p) for p in payments],
        "refunds": [refund_out(r) for r in refunds],
    }
