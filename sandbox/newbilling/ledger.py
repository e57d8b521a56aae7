"""Shared building blocks of native operations: who may be billed, invoices, proration.

Proration is integer arithmetic on whole seconds, rounded half-up:
``round_half_up(amount * remaining_seconds / period_seconds)`` computed as
``(2 * amount * remaining + period) // (2 * period)``, so there is never a float
between a price and an invoice line.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import models as m
from .errors import ApiError, FieldError
from .serialize import invoice_out, payment_out
from .webhooks import Outbox

BILLING_STATUSES = ("active", "trialing", "past_due")


def prorate_seconds(amount: int, left: int, period: int) -> int:
    """``amount * left / period`` rounded half-up, exactly, in integers (0 for empty periods)."""
    if period <= 0:
        return 0
    left = max(0, min(left, period))
    return (2 * amount * left + period) // (2 * period)


def prorate(amount: int, at: datetime, start: datetime, end: datetime) -> int:
    """The share of ``amount`` for the whole seconds of [start, end] still ahead of ``at``."""
    period = int((end - start).total_seconds())
    return prorate_seconds(amount, int((end - at).total_seconds()), period)


def customer_or_404(session: Session, user_id: str) -> m.Customer:
    customer = session.scalar(select(m.Customer).where(m.Customer.user_id == user_id))
    if customer is not None:
        return customer
    discarded = session.scalar(
        select(m.Import.id).where(m.Import.user_id == user_id, m.Import.status == "discarded")
    )
    hint = f" (its import {discarded} was discarded)" if discarded else ""
    raise ApiError(404, "user_not_found", f"user {user_id!r} has no customer{hint}")


def operable_customer(session: Session, user_id: str) -> m.Customer:
    """The customer, if native operations may change it: not while an import is pending."""
    customer = customer_or_404(session, user_id)
    if customer.import_id is not None:
        imp = session.get(m.Import, customer.import_id)
        if imp is not None and imp.status == "rolled_back":
            raise ApiError(
                409,
                "user_rolled_back",
                f"user {user_id!r} was rolled back to the legacy system ({imp.id}); its history "
                "here is read-only",
            )
        if imp is not None and imp.status == "pending":
            raise ApiError(
                409,
                "import_pending",
                f"user {user_id!r} has a pending import {imp.id}; activate or discard it before "
                "changing the user's billing",
            )
    return customer


def same_currency(customer: m.Customer, currency: str) -> None:
    if currency != customer.currency:
        raise ApiError(
            422,
            "currency_mismatch",
            f"currency {currency} differs from user {customer.user_id!r}'s currency "
            f"{customer.currency}",
            [FieldError("currency", f"must be {customer.currency}")],
        )


def refundable(session: Session, payment: m.Payment) -> int:
    refunded = session.scalar(
        select(func.coalesce(func.sum(m.Refund.amount), 0)).where(m.Refund.payment_id == payment.id)
    )
    return payment.amount - int(refunded or 0)


def charge_invoice(
    session: Session,
    outbox: Outbox,
    customer: m.Customer,
    sub: m.Subscription,
    lines: list[m.InvoiceLine],
    now: datetime,
) -> m.Invoice:
    """Invoice ``lines`` now and settle it: a simulated card charge, or a customer credit.

    A negative total (downgrade credit) is not paid out: it goes onto the customer's
    balance (negative balance = credit owed to the customer).
    """
    total = sum(line.amount for line in lines)
    for pos, line in enumerate(lines):
        line.id, line.position = m.new_id("il_nb"), pos
    invoice = m.Invoice(
        id=m.new_id("in_nb"),
        user_id=customer.user_id,
        subscription_id=sub.id,
        status="paid",
        currency=customer.currency,
        created_at=now,
        period_start=min(line.period_start for line in lines),
        period_end=max(line.period_end for line in lines),
        paid_at=now,
        subtotal=total,
        discount_total=0,
        tax=0,
        total=total,
        amount_paid=max(total, 0),
        amount_due=0,
        paid_out_of_band=False,
        lines=lines,
    )
    session.add(invoice)
    payment = None
    if total > 0:
        payment = m.Payment(
            id=m.new_id("py_nb"),
            user_id=customer.user_id,
            invoice_id=invoice.id,
            amount=total,
            currency=customer.currency,
            status="succeeded",
            method="card",
            payment_method_id=(customer.payment_method_ids or [None])[0],
            paid_at=now,
        )
        session.add(payment)
    else:
        customer.balance += total
    session.flush()
    uid = customer.user_id
    outbox.emit(session, user_id=uid, type_="invoice.created", obj=invoice_out(invoice))
    if payment is not None:
        outbox.emit(session, user_id=uid, type_="payment.succeeded", obj=payment_out(payment))
    outbox.emit(session, user_id=uid, type_="invoice.paid", obj=invoice_out(invoice))
    return invoice
