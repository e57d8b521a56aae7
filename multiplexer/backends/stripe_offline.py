"""Money that moved outside Stripe (bank transfers), recorded on the legacy side.

Real Stripe offers two honest records: an open invoice marked
``paid_out_of_band`` (when the payment settles a known invoice) and a customer
balance transaction (credit for a payment, debit for a refund) tagged with
twinbill metadata so the mapping reads it back as a payment/refund. Stripe keeps
no date for either: the operator's date survives only in metadata.

localstripe has neither (no balance transactions; ``paid_out_of_band`` answers
500), so with that dialect both operations refuse with ``BackendRejected``
instead of faking a charge: see docs/legacy-gaps.md.
"""

from __future__ import annotations

from datetime import datetime

from core.canonical import Payment, Refund
from core.errors import BackendRejected
from core.money import Money
from multiplexer.backends.stripe_fields import (
    META_OFFLINE_PAYMENT,
    META_OFFLINE_REFUND,
    META_PAYMENT,
    META_REASON,
    META_REFERENCE,
)
from multiplexer.backends.stripe_payments import map_balance_transaction, map_out_of_band
from multiplexer.backends.stripe_transport import StripeCalls


def _unsupported(calls: StripeCalls, what: str) -> None:
    if calls.dialect == "localstripe":
        raise BackendRejected(
            f"{what} cannot be recorded in localstripe: it has no customer balance "
            "transactions and answers 500 to paid_out_of_band (docs/legacy-gaps.md)",
            backend="stripe",
            field="offline",
        )


def record_offline_payment(
    calls: StripeCalls,
    customer_id: str,
    amount: Money,
    *,
    reference: str,
    paid_at: datetime,
    invoice_id: str | None,
    note: str | None,
    idempotency_key: str,
) -> Payment:
    _unsupported(calls, "an offline payment")
    meta = {
        META_OFFLINE_PAYMENT: "1",
        META_REFERENCE: reference,
        "twinbill_paid_at": paid_at.isoformat(),
    }
    if note:
        meta["twinbill_note"] = note
    v1 = calls.client.v1
    if invoice_id:
        calls.write(
            "tag invoice",
            v1.invoices.update,
            invoice_id,
            key=f"{idempotency_key}:tag",
            params={"metadata": meta},
        )
        inv = calls.write(
            "pay out of band",
            v1.invoices.pay,
            invoice_id,
            key=f"{idempotency_key}:pay",
            params={"paid_out_of_band": True},
        )
        payment = map_out_of_band(inv)
        if payment is None:
            raise BackendRejected(
                f"invoice {invoice_id} was not paid out of band (status {inv.get('status')})",
                backend="stripe",
            )
        return payment
    tx = calls.write(
        "credit balance",
        v1.customers.balance_transactions.create,
        customer_id,
        key=idempotency_key,
        params={
            "amount": -amount.amount,
            "currency": amount.currency.lower(),
            "description": f"offline payment {reference}",
            "metadata": meta,
        },
    )
    mapped = map_balance_transaction(tx)
    if not isinstance(mapped, Payment):
        raise BackendRejected(f"balance transaction {tx.get('id')} lost its tags", backend="stripe")
    return mapped


def record_offline_refund(
    calls: StripeCalls,
    customer_id: str,
    amount: Money,
    *,
    reference: str,
    refunded_at: datetime,
    payment_id: str | None,
    reason: str | None,
    idempotency_key: str,
) -> Refund:
    _unsupported(calls, "an offline refund")
    meta = {
        META_OFFLINE_REFUND: "1",
        META_REFERENCE: reference,
        META_PAYMENT: payment_id or "",
        META_REASON: reason or "",
        "twinbill_refunded_at": refunded_at.isoformat(),
    }
    tx = calls.write(
        "debit balance",
        calls.client.v1.customers.balance_transactions.create,
        customer_id,
        key=idempotency_key,
        params={
            "amount": amount.amount,
            "currency": amount.currency.lower(),
            "description": f"offline refund {reference}",
            "metadata": meta,
        },
    )
    mapped = map_balance_transaction(tx)
    if not isinstance(mapped, Refund):
        raise BackendRejected(f"balance transaction {tx.get('id')} lost its tags", backend="stripe")
    return mapped
