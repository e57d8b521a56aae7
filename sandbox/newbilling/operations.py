"""Native billing operations: customers, subscriptions, plan changes, cancels, refunds.

These serve brand-new users and migrated users whose import is active. Card
charges are simulated (always succeed): only subscription/invoice logic lives in
this service, card processing stays with the payment provider.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import models as m
from .clock import add_interval, utcnow
from .errors import ApiError, FieldError, not_found
from .idempotency import WriteResult
from .ledger import (
    BILLING_STATUSES,
    charge_invoice,
    customer_or_404,
    operable_customer,
    prorate,
    refundable,
    same_currency,
)
from .schemas import Cancel, ChangePlan, CustomerCreate, RefundCreate, SubscriptionCreate
from .serialize import (
    customer_out,
    invoice_out,
    payment_with_refunds,
    refund_out,
    subscription_out,
)
from .webhooks import Outbox


def create_customer(
    session: Session, outbox: Outbox, user_id: str, b: CustomerCreate
) -> WriteResult:
    if session.scalar(select(m.Customer.id).where(m.Customer.user_id == user_id)):
        raise ApiError(409, "user_already_exists", f"user {user_id!r} already has a customer")
    customer = m.Customer(
        id=m.new_id("cus_nb"),
        user_id=user_id,
        external_id=None,
        email=b.email,
        name=b.name,
        currency=b.currency,
        balance=0,
        payment_method_ids=list(b.payment_method_ids),
        metadata_=dict(b.metadata),
        created_at=utcnow(),
    )
    session.add(customer)
    session.flush()
    body = customer_out(customer)
    outbox.emit(session, user_id=user_id, type_="customer.created", obj=body)
    return 201, body


def create_subscription(
    session: Session, outbox: Outbox, user_id: str, b: SubscriptionCreate
) -> WriteResult:
    customer = operable_customer(session, user_id)
    same_currency(customer, b.currency)
    now = utcnow()
    trial_end = now + timedelta(days=b.trial_days) if b.trial_days else None
    period_end = trial_end or add_interval(now, b.interval, b.interval_count)
    sub = m.Subscription(
        id=m.new_id("sub_nb"),
        user_id=user_id,
        external_id=None,
        status="trialing" if trial_end else "active",
        currency=b.currency,
        created_at=now,
        current_period_start=now,
        current_period_end=period_end,
        trial_start=now if trial_end else None,
        trial_end=trial_end,
        cancel_at_period_end=False,
        next_renewal_at=period_end,
        metadata_={},
    )
    sub.items = [_item(b.plan_code, b.product_name, b.unit_amount, b.quantity, b)]
    session.add(sub)
    session.flush()
    outbox.emit(session, user_id=user_id, type_="subscription.created", obj=subscription_out(sub))
    if trial_end is None:
        line = _line(
            f"{b.quantity} x {b.product_name or b.plan_code}",
            b.unit_amount * b.quantity,
            b.quantity,
            now,
            period_end,
            False,
            b.plan_code,
        )
        charge_invoice(session, outbox, customer, sub, [line], now)
    return 201, subscription_out(sub)


def _item(plan: str, product: str | None, unit: int, qty: int, b: Any) -> m.SubscriptionItem:
    return m.SubscriptionItem(
        id=m.new_id("si_nb"),
        external_id=None,
        position=0,
        plan_code=plan,
        product_name=product,
        unit_amount=unit,
        quantity=qty,
        interval=b.interval,
        interval_count=b.interval_count,
    )


def _line(
    desc: str, amount: int, qty: int, start: Any, end: Any, proration: bool, plan: str | None
) -> m.InvoiceLine:
    return m.InvoiceLine(
        external_id=None,
        description=desc,
        amount=amount,
        quantity=qty,
        period_start=start,
        period_end=end,
        proration=proration,
        plan_code=plan,
    )


def list_for_user(session: Session, user_id: str, kind: str) -> dict[str, Any]:
    customer_or_404(session, user_id)
    if kind == "subscriptions":
        rows = session.scalars(
            select(m.Subscription)
            .where(m.Subscription.user_id == user_id)
            .order_by(m.Subscription.created_at, m.Subscription.id)
        ).all()
        return {"data": [subscription_out(s) for s in rows]}
    if kind == "invoices":
        invoices = session.scalars(
            select(m.Invoice)
            .where(m.Invoice.user_id == user_id)
            .order_by(m.Invoice.created_at, m.Invoice.id)
        ).all()
        return {"data": [invoice_out(i) for i in invoices]}
    payments = session.scalars(
        select(m.Payment)
        .where(m.Payment.user_id == user_id)
        .order_by(m.Payment.paid_at, m.Payment.id)
    ).all()
    refunds = session.scalars(
        select(m.Refund)
        .where(m.Refund.user_id == user_id)
        .order_by(m.Refund.created_at, m.Refund.id)
    ).all()
    return {"data": [payment_with_refunds(p, refunds) for p in payments]}


def _subscription(session: Session, sub_id: str) -> tuple[m.Subscription, m.Customer]:
    sub = session.get(m.Subscription, sub_id, with_for_update=True)
    if sub is None:
        raise not_found("subscription", sub_id)
    return sub, operable_customer(session, sub.user_id)


def change_plan(session: Session, outbox: Outbox, sub_id: str, b: ChangePlan) -> WriteResult:
    """Swap the price; with ``prorate`` invoice the difference for the rest of the period now.

    Same interval: credit the unused share of the old amount, debit the same share of
    the new one, period unchanged. Different interval: credit the unused share and
    start a new period now at the full new price (the billing anchor resets).
    """
    sub, customer = _subscription(session, sub_id)
    if b.currency != sub.currency:
        raise ApiError(
            422,
            "currency_mismatch",
            f"plan {b.plan_code} is priced in {b.currency}, subscription {sub.id} is billed "
            f"in {sub.currency}",
            [FieldError("currency", f"must be {sub.currency}")],
        )
    if sub.status not in BILLING_STATUSES:
        raise ApiError(409, "subscription_not_active", f"subscription {sub.id} is {sub.status}")
    at = b.proration_date or utcnow()
    start, end = sub.current_period_start, sub.current_period_end
    if not start <= at <= end:
        raise ApiError(
            422,
            "validation_error",
            "proration_date must lie in the current period",
            [FieldError("proration_date", "outside current_period_start..end")],
        )
    old = sub.items[0]
    old_amount = sum(i.unit_amount * i.quantity for i in sub.items)
    qty = old.quantity
    new_amount = b.unit_amount * qty
    same_cycle = (old.interval, old.interval_count) == (b.interval, b.interval_count)
    sub.items = [_item(b.plan_code, b.product_name, b.unit_amount, qty, b)]
    lines: list[m.InvoiceLine] = []
    if sub.status != "trialing":
        credit = prorate(old_amount, at, start, end) if b.prorate else 0
        if credit:
            lines.append(
                _line(f"Unused time on {old.plan_code}", -credit, qty, at, end, True, old.plan_code)
            )
        if same_cycle:
            debit = prorate(new_amount, at, start, end) if b.prorate else 0
            if debit:
                lines.append(
                    _line(
                        f"Remaining time on {b.plan_code}", debit, qty, at, end, True, b.plan_code
                    )
                )
        else:
            new_end = add_interval(at, b.interval, b.interval_count)
            sub.current_period_start, sub.current_period_end = at, new_end
            sub.next_renewal_at = new_end
            lines.append(
                _line(
                    f"{qty} x {b.product_name or b.plan_code}",
                    new_amount,
                    qty,
                    at,
                    new_end,
                    False,
                    b.plan_code,
                )
            )
    session.flush()
    invoice = charge_invoice(session, outbox, customer, sub, lines, at) if lines else None
    out = subscription_out(sub)
    outbox.emit(session, user_id=sub.user_id, type_="subscription.updated", obj=out)
    return 200, {"subscription": out, "invoice": invoice_out(invoice) if invoice else None}


def end_now(sub: m.Subscription, now: Any) -> None:
    """Over at ``now``: no renewal left (a cancel, a rollback)."""
    sub.status, sub.canceled_at, sub.ended_at = "canceled", now, now
    sub.next_renewal_at, sub.cancel_at_period_end = None, False


def cancel(session: Session, outbox: Outbox, sub_id: str, b: Cancel) -> WriteResult:
    sub, customer = _subscription(session, sub_id)
    if sub.status in ("canceled", "incomplete_expired"):
        raise ApiError(
            409, "subscription_canceled", f"subscription {sub.id} is already {sub.status}"
        )
    if b.at_period_end:
        if b.refund != "none":
            raise ApiError(
                422,
                "validation_error",
                "no refund when cancelling at period end",
                [FieldError("refund", "must be 'none' with at_period_end")],
            )
        sub.cancel_at_period_end = True
        out = subscription_out(sub)
        outbox.emit(session, user_id=sub.user_id, type_="subscription.updated", obj=out)
        return 200, {"subscription": out, "refund": None}
    now = utcnow()
    refund = None
    if b.refund != "none":
        refund = _refund_last_payment(session, outbox, sub, b.refund, now)
    end_now(sub, now)
    session.flush()
    out = subscription_out(sub)
    outbox.emit(session, user_id=sub.user_id, type_="subscription.canceled", obj=out)
    return 200, {"subscription": out, "refund": refund_out(refund) if refund else None}


def _refund_last_payment(
    session: Session, outbox: Outbox, sub: m.Subscription, mode: str, now: Any
) -> m.Refund | None:
    payment = session.scalar(
        select(m.Payment)
        .join(m.Invoice, m.Invoice.id == m.Payment.invoice_id)
        .where(m.Invoice.subscription_id == sub.id, m.Payment.status == "succeeded")
        .order_by(m.Payment.paid_at.desc(), m.Payment.id.desc())
        .limit(1)
    )
    if payment is None:
        return None
    left = refundable(session, payment)
    amount = left
    if mode == "prorated":
        amount = min(
            left, prorate(payment.amount, now, sub.current_period_start, sub.current_period_end)
        )
    if amount <= 0:
        return None
    return _record_refund(session, outbox, payment, amount, "canceled", now)


def _record_refund(
    session: Session, outbox: Outbox, payment: m.Payment, amount: int, reason: str | None, now: Any
) -> m.Refund:
    refund = m.Refund(
        id=m.new_id("re_nb"),
        user_id=payment.user_id,
        payment_id=payment.id,
        payment_external_id=payment.external_id,
        amount=amount,
        currency=payment.currency,
        reason=reason,
        method="card" if payment.method == "card" else "offline",
        created_at=now,
    )
    session.add(refund)
    session.flush()
    refunds = session.scalars(select(m.Refund).where(m.Refund.payment_id == payment.id)).all()
    outbox.emit(
        session,
        user_id=payment.user_id,
        type_="payment.refunded",
        obj=payment_with_refunds(payment, refunds),
    )
    return refund


def refund_payment(
    session: Session, outbox: Outbox, payment_id: str, b: RefundCreate
) -> WriteResult:
    payment = session.get(m.Payment, payment_id, with_for_update=True)
    if payment is None:
        raise not_found("payment", payment_id)
    operable_customer(session, payment.user_id)
    if payment.status != "succeeded":
        raise ApiError(409, "payment_not_refundable", f"payment {payment.id} is {payment.status}")
    left = refundable(session, payment)
    amount = left if b.amount is None else b.amount
    if amount <= 0 or amount > left:
        raise ApiError(
            422,
            "amount_exceeds_refundable",
            f"payment {payment.id} has {left} left to refund, asked for {amount}",
            [FieldError("amount", f"must be 1..{left}")],
        )
    refund = _record_refund(session, outbox, payment, amount, b.reason, utcnow())
    return 201, refund_out(refund)
