"""Ownership and money guards of the facade, checked before any write.

Every id that arrives with a user (a subscription, a payment, an invoice) is resolved
through *that user's own records* as the user's system of record lists them; an id
that is not among them is ``NotFound`` (404), whoever it really belongs to, and the
refusal is audited. Since only the path user's own records pass, the write locks
(``migrating``, ``held``, ``failed``) checked on the path user are the target's owner's.

Money guards twinbill checks itself instead of trusting a backend to refuse
(localstripe accepts a refund above the charge, docs/legacy-gaps.md): the refundable
remainder of a payment, and the currency of a plan on every change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from core.canonical import Invoice, Payment, PaymentStatus, Plan, Subscription
from core.errors import CurrencyMismatch, InvalidAmount, InvalidInput, NotFound
from core.money import Money
from multiplexer.backends.base import BillingBackend, UserRef
from multiplexer.cache import RouteInfo

R = TypeVar("R", Subscription, Payment, Invoice)

#: Called with (what was attempted, the foreign id's kind and value) to audit a refusal.
Refuse = Callable[[str, dict[str, Any]], None]


def _own(records: Iterable[R], record_id: str, kind: str, info: RouteInfo, refuse: Refuse,
         attempted: str) -> R:  # fmt: skip
    for rec in records:
        if rec.id == record_id:
            return rec
    refuse(attempted, {kind: record_id})
    # the same answer whether the id exists for someone else or nowhere: no oracle
    raise NotFound(f"user {info.user_id!r} has no {kind} {record_id!r}", backend=info.system)


def own_subscription(
    backend: BillingBackend,
    ref: UserRef,
    info: RouteInfo,
    subscription_id: str,
    *,
    refuse: Refuse,
    attempted: str,
) -> Subscription:
    return _own(
        backend.list_subscriptions(ref), subscription_id, "subscription", info, refuse, attempted
    )


def own_payment(
    backend: BillingBackend,
    ref: UserRef,
    info: RouteInfo,
    payment_id: str,
    *,
    refuse: Refuse,
    attempted: str,
) -> Payment:
    return _own(backend.list_payments(ref), payment_id, "payment", info, refuse, attempted)


def own_invoice(
    backend: BillingBackend,
    ref: UserRef,
    info: RouteInfo,
    invoice_id: str,
    *,
    refuse: Refuse,
    attempted: str,
) -> Invoice:
    return _own(backend.list_invoices(ref), invoice_id, "invoice", info, refuse, attempted)


def refundable(payment: Payment, amount: Money | None) -> int:
    """The minor units a refund of ``amount`` (None: the rest) may take from ``payment``."""
    if payment.status is not PaymentStatus.SUCCEEDED:
        raise InvalidInput(f"payment {payment.id} is {payment.status.value}: nothing to refund")
    remainder = payment.amount - payment.amount_refunded
    money = Money(payment.currency.upper(), remainder) if remainder > 0 else None
    if money is None:
        raise InvalidAmount(f"payment {payment.id} is already refunded in full")
    if amount is None:
        return remainder
    if amount.currency != payment.currency.upper():
        raise CurrencyMismatch(
            f"payment {payment.id} is in {payment.currency.upper()}, not {amount.currency}"
        )
    if amount.amount > remainder:
        raise InvalidAmount(
            f"refund of {amount.format()} is above what is left to refund on payment "
            f"{payment.id}: {money.format()}"
        )
    return amount.amount


def plan_currency(plan: Plan, info: RouteInfo, subscription: Subscription | None = None) -> None:
    """A plan must be priced in the user's currency (and the subscription's, on a change)."""
    plan_cur = plan.currency.upper()
    if info.currency and plan_cur != info.currency.upper():
        raise CurrencyMismatch(
            f"plan {plan.id!r} is in {plan_cur}, user {info.user_id!r} is billed in "
            f"{info.currency.upper()}"
        )
    if subscription is not None and plan_cur != subscription.currency.upper():
        raise CurrencyMismatch(
            f"plan {plan.id!r} is in {plan_cur}, subscription {subscription.id} is billed "
            f"in {subscription.currency.upper()}"
        )
