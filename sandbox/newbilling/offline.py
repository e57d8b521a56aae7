"""Payments and refunds that happened outside the system (bank transfers), recorded by support.

Idempotent twice over: by ``Idempotency-Key`` (a retried request) and by
``(user, reference)`` (the same bank transfer entered twice by two people), in
which case the first record is returned with 200 instead of 201.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import models as m
from .clock import utcnow
from .errors import ApiError, FieldError, not_found
from .idempotency import WriteResult
from .ledger import operable_customer, refundable, same_currency
from .schemas import OfflinePaymentCreate, OfflineRefundCreate
from .serialize import invoice_out, payment_out, refund_out
from .webhooks import Outbox


def _ceiling(amount: int, max_amount: int) -> None:
    if amount > max_amount:
        raise ApiError(
            422,
            "amount_too_large",
            f"amount {amount} exceeds the ceiling of {max_amount} minor units "
            "(NEWBILLING_MAX_AMOUNT); split it or raise the ceiling",
            [FieldError("amount", f"must be <= {max_amount}")],
        )


def record_payment(
    session: Session, outbox: Outbox, user_id: str, b: OfflinePaymentCreate, max_amount: int
) -> WriteResult:
    customer = operable_customer(session, user_id)
    same_currency(customer, b.currency)
    _ceiling(b.amount, max_amount)
    existing = session.scalar(
        select(m.Payment).where(
            m.Payment.user_id == user_id,
            m.Payment.method == "offline",
            m.Payment.reference == b.reference,
        )
    )
    if existing is not None:
        return 200, payment_out(existing)
    invoice = None
    if b.invoice_id is not None:
        invoice = session.get(m.Invoice, b.invoice_id, with_for_update=True)
        if invoice is None or invoice.user_id != user_id:
            raise not_found("invoice", b.invoice_id)
        if invoice.status != "open":
            raise ApiError(409, "invoice_not_open", f"invoice {invoice.id} is {invoice.status}")
        if b.amount > invoice.amount_due:
            raise ApiError(
                422,
                "amount_exceeds_due",
                f"invoice {invoice.id} has {invoice.amount_due} due, payment is {b.amount}",
                [FieldError("amount", f"must be <= {invoice.amount_due}")],
            )
    now = utcnow()
    payment = m.Payment(
        id=m.new_id("py_nb"),
        user_id=user_id,
        external_id=None,
        invoice_id=invoice.id if invoice else None,
        invoice_external_id=invoice.external_id if invoice else None,
        amount=b.amount,
        currency=b.currency,
        status="succeeded",
        method="offline",
        reference=b.reference,
        offline_reference=b.reference,
        note=b.note,
        paid_at=b.paid_at or now,
    )
    session.add(payment)
    session.flush()
    body = payment_out(payment)
    outbox.emit(session, user_id=user_id, type_="offline_payment.recorded", obj=body)
    if invoice is not None:
        invoice.amount_paid += b.amount
        invoice.amount_due -= b.amount
        if invoice.amount_due == 0:
            invoice.status, invoice.paid_at, invoice.paid_out_of_band = (
                "paid",
                payment.paid_at,
                True,
            )
            session.flush()
            outbox.emit(session, user_id=user_id, type_="invoice.paid", obj=invoice_out(invoice))
    return 201, body


def record_refund(
    session: Session, outbox: Outbox, user_id: str, b: OfflineRefundCreate, max_amount: int
) -> WriteResult:
    customer = operable_customer(session, user_id)
    same_currency(customer, b.currency)
    _ceiling(b.amount, max_amount)
    existing = session.scalar(
        select(m.Refund).where(
            m.Refund.user_id == user_id,
            m.Refund.method == "offline",
            m.Refund.reference == b.reference,
        )
    )
    if existing is not None:
        return 200, refund_out(existing)
    payment = None
    if b.payment_id is not None:
        payment = session.get(m.Payment, b.payment_id, with_for_update=True)
        if payment is None or payment.user_id != user_id:
            raise not_found("payment", b.payment_id)
        if payment.status != "succeeded":
            raise ApiError(
                409, "payment_not_refundable", f"payment {payment.id} is {payment.status}"
            )
        left = refundable(session, payment)
        if b.amount > left:
            raise ApiError(
                422,
                "amount_exceeds_refundable",
                f"payment {payment.id} has {left} left to refund, asked for {b.amount}",
                [FieldError("amount", f"must be <= {left}")],
            )
    refund = m.Refund(
        id=m.new_id("re_nb"),
        user_id=user_id,
        external_id=None,
        payment_id=payment.id if payment else None,
        payment_external_id=payment.external_id if payment else None,
        amount=b.amount,
        currency=b.currency,
        reason=b.reason,
        method="offline",
        reference=b.reference,
        offline_reference=b.reference,
        created_at=b.refunded_at or utcnow(),
    )
    session.add(refund)
    session.flush()
    body = refund_out(refund)
    outbox.emit(session, user_id=user_id, type_="offline_refund.recorded", obj=body)
    return 201, body
