"""Money that moved outside Stripe (bank transfers), recorded on the legacy side.

Current API (what each record is, and why it is safe):

* **payment against an invoice**: a Payment Record (``payment_records.report_payment``,
  custom processor, outcome ``guaranteed``) for exactly the amount given, attached to
  the invoice (``invoices.attach_payment``, retried under a fresh key: see there).
  Partial payments leave the invoice open with less due; more than the invoice
  still owes is refused before anything is written. A retry finds the record it
  already attached (by its idempotency key in metadata) and returns it instead of
  failing on a now-paid invoice.
* **payment without an invoice** (prepayment): a customer balance *credit*
  transaction; Stripe takes it off the next invoice.
* **refund**: a credit note with ``out_of_band_amount`` on the paid invoice the
  returned payment settled. It records money returned outside Stripe and changes
  neither what the invoice asks nor the customer balance, so Stripe never charges
  the customer for it (a positive balance transaction would: Stripe adds a debit
  balance to the next invoice). A refund that names no invoice-backed payment is
  refused (docs/legacy-gaps.md).

Every record carries the operator's date in metadata (Stripe keeps none).

localstripe has none of these endpoints, so with that dialect both operations
refuse with ``BackendRejected`` instead of faking a charge.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from core.canonical import BillingHistory, InvoiceStatus, Payment, Refund
from core.errors import BackendRejected
from core.money import Money
from multiplexer.backends.stripe_fields import (
    META_INVOICE,
    META_OFFLINE_PAYMENT,
    META_OFFLINE_REFUND,
    META_PAYMENT,
    META_REASON,
    META_REFERENCE,
    ref_id,
)
from multiplexer.backends.stripe_offline_map import (
    META_PAID_AT,
    META_REFUNDED_AT,
    map_balance_transaction,
    map_credit_note,
    map_payment_record,
)
from multiplexer.backends.stripe_transport import StripeCalls, to_plain

META_KEY = "twinbill_idempotency_key"


def _refuse(message: str, field: str = "offline") -> BackendRejected:
    return BackendRejected(message, backend="stripe", field=field)


def refuse_on_localstripe(calls: StripeCalls, what: str) -> None:
    if not calls.wire.offline_money:
        raise _refuse(
            f"{what} cannot be recorded in localstripe: it has no payment records, credit "
            "notes or customer balance transactions (docs/legacy-gaps.md)"
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
    refuse_on_localstripe(calls, "an offline payment")
    meta = {
        META_OFFLINE_PAYMENT: "1",
        META_REFERENCE: reference,
        META_PAID_AT: paid_at.isoformat(),
        META_KEY: idempotency_key,
    }
    if note:
        meta["twinbill_note"] = note
    if invoice_id:
        return _pay_invoice(calls, customer_id, amount, invoice_id, meta, paid_at, idempotency_key)
    tx = calls.write(
        "credit balance",
        calls.client.v1.customers.balance_transactions.create,
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
        raise _refuse(f"balance transaction {tx.get('id')} lost its tags")
    return mapped


def _recorded(calls: StripeCalls, invoice_id: str, key: str) -> Payment | None:
    """The payment record this write already attached to the invoice, if any."""
    for ip in calls.pages(
        "list invoice payments",
        calls.client.v1.invoice_payments.list,
        params={"invoice": invoice_id, "expand": ["data.payment.payment_record"]},
    ):
        pr = (ip.get("payment") or {}).get("payment_record")
        if isinstance(pr, dict) and (pr.get("metadata") or {}).get(META_KEY) == key:
            return map_payment_record(ip)
    return None


def _pay_invoice(
    calls: StripeCalls,
    customer_id: str,
    amount: Money,
    invoice_id: str,
    meta: dict[str, str],
    paid_at: datetime,
    key: str,
) -> Payment:
    v1 = calls.client.v1
    done = _recorded(calls, invoice_id, key)
    if done is not None:
        return done
    inv: dict[str, Any] = to_plain(calls.call("retrieve invoice", v1.invoices.retrieve, invoice_id))
    if ref_id(inv.get("customer")) != customer_id:
        raise _refuse(f"invoice {invoice_id} does not belong to this customer", "invoice_id")
    if str(inv.get("currency", "")).upper() != amount.currency:
        raise _refuse(f"invoice {invoice_id} is in {inv.get('currency')}", "currency")
    if inv.get("status") != "open":
        raise _refuse(f"invoice {invoice_id} is {inv.get('status')}, not open", "invoice_id")
    remaining = int(inv.get("amount_remaining") or 0)
    if amount.amount > remaining:
        raise _refuse(
            f"{amount.amount} is more than invoice {invoice_id} still owes ({remaining})",
            "amount",
        )
    at = int(paid_at.timestamp())
    record = calls.write(
        "report offline payment",
        v1.payment_records.report_payment,
        key=f"{key}:record",
        params={
            "amount_requested": {"currency": amount.currency.lower(), "value": amount.amount},
            "initiated_at": at,
            "outcome": "guaranteed",
            "guaranteed": {"guaranteed_at": at},
            "customer_details": {"customer": customer_id},
            "payment_method_details": {
                "type": "custom",
                "custom": {"display_name": "Bank transfer (outside Stripe)"},
            },
            "processor_details": {
                "type": "custom",
                "custom": {"payment_reference": meta[META_REFERENCE]},
            },
            "metadata": {**meta, META_INVOICE: invoice_id},
        },
    )
    # Attaching is idempotent by Stripe's own rule (a record attaches to one invoice,
    # once; ``_recorded`` above returns it when it already is), so each attempt gets a
    # fresh key: a retry must not replay a 500 Stripe saved under the previous one.
    calls.write(
        "attach offline payment",
        v1.invoices.attach_payment,
        invoice_id,
        key=f"{key}:attach:{uuid.uuid4().hex[:12]}",
        params={"payment_record": record["id"]},
    )
    done = _recorded(calls, invoice_id, key)
    if done is None:
        raise _refuse(f"payment record {record['id']} is not on invoice {invoice_id}")
    return done


def record_offline_refund(
    calls: StripeCalls,
    history: BillingHistory,
    amount: Money,
    *,
    reference: str,
    refunded_at: datetime,
    payment_id: str | None,
    reason: str | None,
    idempotency_key: str,
) -> Refund:
    refuse_on_localstripe(calls, "an offline refund")
    payment = next((p for p in history.payments if p.id == payment_id), None)
    if payment is not None and payment.invoice_id:
        for cn in calls.pages(
            "list credit notes",
            calls.client.v1.credit_notes.list,
            params={"invoice": payment.invoice_id},
        ):
            if (cn.get("metadata") or {}).get(META_KEY) == idempotency_key:
                done = map_credit_note(cn)  # a retry of a write Stripe already made
                if done is not None:
                    return done
    payment = next((p for p in history.payments if p.id == payment_id), None)
    if payment is None or payment.invoice_id is None:
        raise _refuse(
            "an offline refund must name a payment that settled a Stripe invoice: without "
            "one it could only be a customer balance debit, which Stripe would charge on "
            "the next invoice",
            "payment_id",
        )
    invoice = next((i for i in history.invoices if i.id == payment.invoice_id), None)
    if invoice is None or invoice.status is not InvoiceStatus.PAID:
        raise _refuse(f"invoice {payment.invoice_id} is not paid", "payment_id")
    if amount.currency != payment.currency:
        raise _refuse(f"payment {payment.id} is in {payment.currency}", "currency")
    returned = sum(r.amount for r in history.refunds if r.payment_id == payment.id)
    if amount.amount > payment.amount - max(returned, payment.amount_refunded):
        raise _refuse(f"more than what is left of payment {payment.id} to refund", "amount")
    meta = {
        META_OFFLINE_REFUND: "1",
        META_REFERENCE: reference,
        META_PAYMENT: payment.id,
        META_REASON: reason or "",
        META_REFUNDED_AT: refunded_at.isoformat(),
        META_KEY: idempotency_key,
    }
    cn = calls.write(
        "credit note out of band",
        calls.client.v1.credit_notes.create,
        key=idempotency_key,
        params={
            "invoice": invoice.id,
            "amount": amount.amount,
            "out_of_band_amount": amount.amount,
            "memo": f"offline refund {reference}",
            "metadata": meta,
        },
    )
    mapped = map_credit_note(cn)
    if mapped is None:
        raise _refuse(f"credit note {cn.get('id')} has no out-of-band amount")
    return mapped
