"""Current-API invoices and money objects (see ``shapes`` for where they come from).

Imported through ``shapes`` (which re-exports every builder here); import ``shapes``,
not this module, first.
"""

from __future__ import annotations

import copy
from typing import Any

from tests.stripe_current.shapes import DAY, T0, _examples, example, listed

# --- invoices and money -----------------------------------------------------------------


def line(
    lid: str,
    inv_id: str,
    amount: int,
    currency: str,
    *,
    price_id: str | None,
    sub_id: str | None,
    start: int,
    end: int,
    description: str = "1 × Basic",
    proration: bool = False,
    discount_amounts: list[Any] | None = None,
    taxes: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    parent: dict[str, Any]
    if sub_id:
        parent = {
            "type": "subscription_item_details",
            "invoice_item_details": None,
            "subscription_item_details": {
                "invoice_item": None,
                "proration": proration,
                "proration_details": {"credited_items": None},
                "subscription": sub_id,
                "subscription_item": f"si_{sub_id}",
            },
        }
    else:
        parent = {
            "type": "invoice_item_details",
            "subscription_item_details": None,
            "invoice_item_details": {
                "invoice_item": f"ii_{lid}",
                "proration": proration,
                "proration_details": {"credited_items": None},
                "subscription": None,
            },
        }
    return example(
        "line_item",
        id=lid,
        invoice=inv_id,
        amount=amount,
        currency=currency,
        description=description,
        quantity=1,
        period={"start": start, "end": end},
        parent=parent,
        pricing={
            "type": "price_details",
            "price_details": {"price": price_id, "product": "p"},
            "unit_amount_decimal": str(amount),
        },
        discount_amounts=discount_amounts or [],
        discounts=[],
        subtotal=amount,
        taxes=taxes or [],
    )


def tax(amount: int, behavior: str, taxable: int, rate: str = "txr_vat") -> dict[str, Any]:
    return {
        "amount": amount,
        "tax_behavior": behavior,
        "tax_rate_details": {"tax_rate": rate},
        "taxability_reason": "standard_rated",
        "taxable_amount": taxable,
        "type": "tax_rate_details",
    }


def invoice(
    iid: str,
    cid: str,
    *,
    currency: str,
    lines: list[dict[str, Any]],
    subtotal: int,
    total: int,
    status: str = "paid",
    sub_id: str | None = None,
    paid: int | None = None,
    taxes: list[dict[str, Any]] | None = None,
    discounts: list[Any] | None = None,
    discount_amounts: list[dict[str, Any]] | None = None,
    created: int = T0 - 30 * DAY,
    starting_balance: int = 0,
    payments: list[dict[str, Any]] | None = None,
    payments_more: bool = False,
    **more: Any,
) -> dict[str, Any]:
    due = max(total + starting_balance, 0)
    paid_amount = (due if status == "paid" else 0) if paid is None else paid
    fields: dict[str, Any] = {
        "id": iid,
        "customer": cid,
        "currency": currency,
        "number": f"{iid.upper()}-0001",
        "status": status,
        "created": created,
        "effective_at": created,
        "period_start": created - 30 * DAY,
        "period_end": created,
        "due_date": None,
        "next_payment_attempt": None,
        "attempt_count": 1 if status != "draft" else 0,
        "attempted": status != "draft",
        "auto_advance": status == "open",
        "billing_reason": "subscription_cycle" if sub_id else "manual",
        "subtotal": subtotal,
        "subtotal_excluding_tax": subtotal
        - sum(t["amount"] for t in taxes or [] if t["tax_behavior"] == "inclusive"),
        "total": total,
        "total_excluding_tax": total - sum(t["amount"] for t in taxes or []),
        "total_taxes": taxes or [],
        "total_discount_amounts": discount_amounts or [],
        "discounts": discounts or [],
        "amount_due": due,
        "amount_paid": paid_amount,
        "amount_remaining": max(due - paid_amount, 0),
        "amount_overpaid": 0,
        "amount_shipping": 0,
        "starting_balance": starting_balance,
        "ending_balance": min(starting_balance + total, 0) if status != "draft" else None,
        "status_transitions": {
            "finalized_at": created if status != "draft" else None,
            "marked_uncollectible_at": None,
            "paid_at": created if status == "paid" else None,
            "voided_at": None,
        },
        "lines": listed(lines, f"/v1/invoices/{iid}/lines"),
        "metadata": {},
        "parent": {
            "type": "subscription_details",
            "quote_details": None,
            "subscription_details": {"metadata": {}, "subscription": sub_id},
        }
        if sub_id
        else None,
        "from_invoice": None,
        "last_finalization_error": None,
        "webhooks_delivered_at": created,
        "shipping_cost": None,
        "customer_email": None,
        "customer_name": None,
    }
    if payments is not None:
        fields["payments"] = listed(payments, f"/v1/invoices/{iid}/payments", payments_more)
    fields.update(more)
    return example("invoice", **fields)


def invoice_payment(
    ipid: str,
    inv_id: str,
    amount: int,
    currency: str,
    *,
    payment: dict[str, Any],
    status: str = "paid",
    created: int = T0,
) -> dict[str, Any]:
    return example(
        "invoice_payment",
        id=ipid,
        invoice=inv_id,
        amount_paid=amount if status == "paid" else None,
        amount_requested=amount,
        currency=currency,
        is_default=payment.get("type") == "payment_intent",
        livemode=False,
        payment={"charge": None, "payment_intent": None, "payment_record": None, **payment},
        status=status,
        created=created,
        status_transitions={"canceled_at": None, "paid_at": created if status == "paid" else None},
    )


def charge(
    chid: str,
    cid: str,
    amount: int,
    currency: str,
    *,
    pi: str,
    created: int,
    status: str = "succeeded",
    refunded: int = 0,
    refunds: list[Any] | None = None,
    method: str = "card",
) -> dict[str, Any]:
    details = copy.deepcopy(_examples()["charge"]["payment_method_details"])
    if method == "sepa_debit":
        details = {
            "type": "sepa_debit",
            "sepa_debit": {
                "bank_code": "37040044",
                "country": "DE",
                "last4": "3000",
                "mandate": "mandate_1",
            },
        }
    else:
        details["type"] = "card"
    return example(
        "charge",
        id=chid,
        customer=cid,
        amount=amount,
        amount_captured=amount if status == "succeeded" else 0,
        amount_refunded=refunded,
        refunded=refunded == amount,
        captured=status == "succeeded",
        paid=status == "succeeded",
        currency=currency,
        status=status,
        created=created,
        payment_intent=pi,
        payment_method=f"pm_{cid}",
        payment_method_details=details,
        failure_code="card_declined" if status == "failed" else None,
        refunds=listed(refunds or [], f"/v1/charges/{chid}/refunds"),
        description=None,
        transfer_data=None,
    )


def refund(
    reid: str, chid: str, amount: int, currency: str, *, created: int, reason: str | None = None
) -> dict[str, Any]:
    return example(
        "refund",
        id=reid,
        charge=chid,
        amount=amount,
        currency=currency,
        created=created,
        reason=reason,
        status="succeeded",
    )


def payment_record(
    prid: str,
    cid: str,
    amount: int,
    currency: str,
    *,
    reference: str,
    metadata: dict[str, str] | None = None,
    created: int = T0,
) -> dict[str, Any]:
    money = {"currency": currency, "value": amount}
    zero = {"currency": currency, "value": 0}
    base = _examples()["payment_record"]
    return example(
        "payment_record",
        id=prid,
        amount=money,
        amount_authorized=money,
        amount_guaranteed=money,
        amount_requested=money,
        amount_canceled=zero,
        amount_failed=zero,
        amount_refunded=zero,
        created=created,
        customer_details={**base["customer_details"], "customer": cid},
        metadata=metadata or {},
        payment_method_details={
            **base["payment_method_details"],
            "type": "custom",
            "custom": {"display_name": "Bank transfer", "type": None},
        },
        processor_details={"type": "custom", "custom": {"payment_reference": reference}},
        reported_by="self",
    )


def credit_note(
    cnid: str,
    inv_id: str,
    cid: str,
    currency: str,
    *,
    amount: int,
    kind: str = "post_payment",
    out_of_band: int | None = None,
    refund_amount: int = 0,
    credit: int = 0,
    metadata: dict[str, str] | None = None,
    created: int = T0,
) -> dict[str, Any]:
    return example(
        "credit_note",
        id=cnid,
        invoice=inv_id,
        customer=cid,
        currency=currency,
        amount=amount,
        subtotal=amount,
        subtotal_excluding_tax=amount,
        total=amount,
        total_excluding_tax=amount,
        type=kind,
        out_of_band_amount=out_of_band,
        pre_payment_amount=amount if kind == "pre_payment" else 0,
        post_payment_amount=amount if kind == "post_payment" else 0,
        refunds=[],
        status="issued",
        voided_at=None,
        created=created,
        effective_at=created,
        metadata=metadata or {},
        customer_balance_transaction=f"cbtxn_{cnid}" if credit else None,
        lines=listed([], f"/v1/credit_notes/{cnid}/lines"),
        shipping_cost=None,
        reason=None,
    )


def balance_transaction(
    txid: str,
    cid: str,
    amount: int,
    currency: str,
    *,
    ending: int,
    metadata: dict[str, str] | None = None,
    created: int = T0,
    kind: str = "adjustment",
) -> dict[str, Any]:
    return example(
        "customer_balance_transaction",
        id=txid,
        customer=cid,
        amount=amount,
        currency=currency,
        ending_balance=ending,
        metadata=metadata,
        created=created,
        type=kind,
    )
