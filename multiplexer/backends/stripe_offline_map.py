"""Money that moved outside Stripe, read back as canonical payments and refunds (pure).

Where twinbill records it (``stripe_offline``), and how it comes back:

* a payment against an invoice: a Payment Record (``report_payment``) attached to the
  invoice; the snapshot lists the invoice's ``invoice_payment`` objects with the
  record expanded -> ``map_payment_record``;
* an invoice marked paid outside Stripe by someone else (dashboard, old
  ``paid_out_of_band``): whatever part of ``amount_paid_off_stripe`` no record
  explains -> one ``oob_<invoice>`` payment (``map_out_of_band``);
* a prepayment without an invoice: a customer balance *credit* transaction;
* a refund made outside Stripe: a credit note with ``out_of_band_amount`` on the
  paid invoice (``map_credit_note``), which changes neither the invoice's amount due
  nor the customer balance.

Stripe keeps no operator date for any of them: twinbill writes it in metadata
(``twinbill_paid_at`` / ``twinbill_refunded_at``) and reads it back here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from core.canonical import Payment, PaymentStatus, Refund
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
    metadata,
    ref_id,
    rid,
    ts,
)

META_PAID_AT = "twinbill_paid_at"
META_REFUNDED_AT = "twinbill_refunded_at"


def operator_date(meta: Mapping[str, str], key: str, record: str, fallback: Any) -> Any:
    """The date the operator gave (ISO 8601 in metadata), else Stripe's own time."""
    raw = meta.get(key)
    if not raw:
        return fallback
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise TransformError(f"not an ISO 8601 date: {raw!r}", record=record, field=key) from None
    if when.tzinfo is None:
        raise TransformError("date has no time zone", record=record, field=key)
    return when


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
            paid_at=operator_date(meta, META_PAID_AT, record, created),
        )
    if meta.get(META_OFFLINE_REFUND):  # written by older twinbill versions only
        return build(
            Refund,
            record,
            id=record,
            legacy_id=record,
            currency=cur,
            payment_id=meta.get(META_PAYMENT) or None,
            amount=amount(tx, "amount"),
            reason=meta.get(META_REASON) or None,
            method="offline",
            reference=meta.get(META_REFERENCE),
            created_at=operator_date(meta, META_REFUNDED_AT, record, created),
        )
    return None


def map_payment_record(ip: Obj) -> Payment | None:
    """An ``invoice_payment`` whose payment is an expanded Payment Record (money reported
    to Stripe from outside). Charges and PaymentIntents are read from the charges list."""
    payment = ip.get("payment") or {}
    if payment.get("type") != "payment_record":
        return None
    pr = payment.get("payment_record")
    if not isinstance(pr, Mapping):
        raise TransformError(
            "payment record is not expanded (snapshot must expand data.payment.payment_record)",
            record=rid(ip),
            field="payment.payment_record",
        )
    record = rid(pr)
    meta = metadata(pr)
    if ip.get("status") not in ("paid", None):
        return None  # an open or canceled record moved no money
    paid = ip.get("amount_paid")
    if paid is None:
        paid = amount(pr.get("amount_guaranteed") or {}, "value", record=record)
    transitions = ip.get("status_transitions") or {}
    when = ts(transitions, "paid_at", record=rid(ip)) or ts(pr, "created", required=True)
    return build(
        Payment,
        record,
        id=record,
        legacy_id=record,
        currency=currency(ip.get("currency") or (pr.get("amount") or {}).get("currency"), record),
        invoice_id=ref_id(ip.get("invoice")),
        amount=paid,
        status=PaymentStatus.SUCCEEDED,
        method="offline",
        reference=meta.get(META_REFERENCE)
        or ((pr.get("processor_details") or {}).get("custom") or {}).get("payment_reference"),
        paid_at=operator_date(meta, META_PAID_AT, record, when),
    )


def map_out_of_band(inv: Obj, known: Sequence[Payment] = ()) -> Payment | None:
    """The part of an invoice paid outside Stripe that no payment record explains.

    Old API: ``paid_out_of_band`` -> the whole ``amount_paid``. Current API:
    ``amount_paid_off_stripe`` minus the offline payments already read for this
    invoice (twinbill's own payment records).
    """
    record = f"oob_{rid(inv)}"
    meta = metadata(inv)
    if "amount_paid_off_stripe" in inv:
        mine = [p for p in known if p.invoice_id == rid(inv) and p.method == "offline"]
        explained = sum(p.amount for p in mine)
        paid = (inv.get("amount_paid_off_stripe") or 0) - explained
    elif inv.get("paid_out_of_band") and inv.get("status") == "paid":
        paid = amount(inv, "amount_paid", default=0) or amount(inv, "total")
    else:
        return None
    if paid <= 0:
        return None
    when = ts(inv.get("status_transitions") or {}, "paid_at", record=rid(inv))
    when = when or ts(inv, "created", required=True)
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
        paid_at=operator_date(meta, META_PAID_AT, rid(inv), when),
    )


def map_credit_note(cn: Obj) -> Refund | None:
    """A credit note's out-of-band part is money returned outside Stripe: an offline
    refund. Its ``refund_amount`` part is a Stripe refund (read from the refunds list)
    and its ``credit_amount`` part sits in the customer balance."""
    if cn.get("status") == "void":
        return None
    off = cn.get("out_of_band_amount") or 0
    if off <= 0:
        return None
    record = rid(cn)
    meta = metadata(cn)
    created = ts(cn, "created", required=True)
    return build(
        Refund,
        record,
        id=record,
        legacy_id=record,
        currency=currency(cn.get("currency"), record),
        payment_id=meta.get(META_PAYMENT) or None,
        amount=off,
        reason=meta.get(META_REASON) or cn.get("reason"),
        method="offline",
        reference=meta.get(META_REFERENCE),
        created_at=operator_date(meta, META_REFUNDED_AT, record, created),
    )
