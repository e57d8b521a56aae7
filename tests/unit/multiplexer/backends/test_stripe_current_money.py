"""Offline money in the current dialect, on the in-process Stripe double.

What Stripe will charge the customer is read from the double's own state (the
customer balance, the invoice's amount remaining), not from our mapping.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.errors import BackendRejected
from core.money import Money
from multiplexer.backends.base import UserRef
from multiplexer.backends.stripe_legacy import StripeLegacyBackend
from tests.stripe_current import configurations, shapes
from tests.stripe_current.double import StripeDouble, client_for

pytestmark = pytest.mark.skipif(not shapes.available(), reason="Stripe's fixtures are missing")

BANK_DAY = datetime(2025, 12, 20, 9, 30, tzinfo=UTC)  # the operator's date, before "now"


@pytest.fixture
def world() -> tuple[StripeDouble, StripeLegacyBackend, UserRef]:
    double = StripeDouble()
    cid = configurations.seed_plain(double)
    return (
        double,
        StripeLegacyBackend(client_for(double), dialect="current"),
        UserRef("u-plain", legacy_customer_id=cid),
    )


def open_invoice(double: StripeDouble, amount: int = 1250) -> str:
    cus = "cus_plain"
    inv = shapes.invoice(
        "in_open",
        cus,
        currency="eur",
        lines=[
            shapes.line(
                "il_open",
                "in_open",
                amount,
                "eur",
                price_id="price_basic_month_eur",
                sub_id="sub_plain",
                start=shapes.T0,
                end=shapes.T0 + 30 * shapes.DAY,
            )
        ],
        subtotal=amount,
        total=amount,
        status="open",
        sub_id="sub_plain",
        created=shapes.T0,
    )
    double.put("invoice", inv)
    return inv["id"]


def pay(backend, ref, amount, key, invoice_id="in_open"):
    return backend.record_offline_payment(
        ref,
        Money("EUR", amount),
        reference="SEPA-77",
        paid_at=BANK_DAY,
        invoice_id=invoice_id,
        note=None,
        idempotency_key=key,
    )


def test_offline_refund_never_raises_what_stripe_charges(world) -> None:
    double, backend, ref = world
    [card] = backend.list_payments(ref)
    refund = backend.record_offline_refund(
        ref,
        Money("EUR", 500),
        reference="BACK-1",
        refunded_at=BANK_DAY,
        payment_id=card.id,
        reason="goodwill",
        idempotency_key="rf-1",
    )
    assert double.get("customer", "cus_plain")["balance"] == 0  # nothing to add to next invoice
    assert not any(t["amount"] > 0 for t in double.all("customer_balance_transaction"))
    [cn] = double.all("credit_note")
    assert (cn["out_of_band_amount"], cn["invoice"]) == (500, "in_plain")
    history = backend.get_history(ref)
    assert [(r.id, r.amount, r.method, r.payment_id, r.created_at) for r in history.refunds] == [
        (refund.id, 500, "offline", card.id, BANK_DAY)
    ]
    again = backend.record_offline_refund(
        ref,
        Money("EUR", 500),
        reference="BACK-1",
        refunded_at=BANK_DAY,
        payment_id=card.id,
        reason="goodwill",
        idempotency_key="rf-1",
    )
    assert again.id == refund.id and len(double.all("credit_note")) == 1


@pytest.mark.parametrize("payment_id", [None, "ch_unknown"])
def test_offline_refund_without_an_invoice_backed_payment_is_refused(world, payment_id) -> None:
    double, backend, ref = world
    before = len(double.writes)
    with pytest.raises(BackendRejected, match="balance debit"):
        backend.record_offline_refund(
            ref,
            Money("EUR", 500),
            reference="BACK-2",
            refunded_at=BANK_DAY,
            payment_id=payment_id,
            reason=None,
            idempotency_key="rf-2",
        )
    assert len(double.writes) == before


def test_offline_refund_above_what_is_left_is_refused(world) -> None:
    double, backend, ref = world
    [card] = backend.list_payments(ref)
    with pytest.raises(BackendRejected, match="more than"):
        backend.record_offline_refund(
            ref,
            Money("EUR", 1251),
            reference="BACK-3",
            refunded_at=BANK_DAY,
            payment_id=card.id,
            reason=None,
            idempotency_key="rf-3",
        )
    assert double.all("credit_note") == []


def test_partial_offline_payment_pays_exactly_the_amount(world) -> None:
    double, backend, ref = world
    open_invoice(double)
    payment = pay(backend, ref, 500, "op-1")
    inv = double.get("invoice", "in_open")
    assert (inv["status"], inv["amount_paid"], inv["amount_remaining"]) == ("open", 500, 750)
    assert (payment.amount, payment.invoice_id, payment.method, payment.paid_at) == (
        500,
        "in_open",
        "offline",
        BANK_DAY,
    )
    assert payment.reference == "SEPA-77"
    history = backend.get_history(ref)
    mapped = {i.id: i for i in history.invoices}["in_open"]
    assert (mapped.amount_paid, mapped.amount_due, mapped.paid_out_of_band) == (500, 750, True)
    assert [p.id for p in history.payments if p.method == "offline"] == [payment.id]


def test_offline_over_payment_is_refused_and_writes_nothing(world) -> None:
    double, backend, ref = world
    open_invoice(double)
    pay(backend, ref, 500, "op-1")
    before = len(double.writes)
    with pytest.raises(BackendRejected, match="more than invoice in_open still owes"):
        pay(backend, ref, 751, "op-2")
    assert len(double.writes) == before
    assert double.get("invoice", "in_open")["amount_remaining"] == 750


def test_offline_payment_retry_after_stripe_marked_it_paid(world) -> None:
    double, backend, ref = world
    open_invoice(double)
    first = pay(backend, ref, 1250, "op-full")
    assert double.get("invoice", "in_open")["status"] == "paid"
    again = pay(backend, ref, 1250, "op-full")  # the caller never saw the first answer
    assert again == first
    assert len(double.all("payment_record")) == 1
    history = backend.get_history(ref)
    offline = [p for p in history.payments if p.invoice_id == "in_open"]
    assert [(p.id, p.amount) for p in offline] == [(first.id, 1250)]  # no oob_ double count


def test_offline_payment_retry_after_a_lost_attach_answer(world) -> None:
    """The record was reported but attaching failed: the retry replays the record under
    its key and attaches it, once."""
    double, backend, ref = world
    open_invoice(double)
    double.fail_next["POST /v1/invoices/([^/]+)/attach_payment"] = 500
    with pytest.raises(Exception):  # noqa: B017 - BackendUnavailable from the 500
        pay(backend, ref, 1250, "op-lost")
    payment = pay(backend, ref, 1250, "op-lost")
    assert len(double.all("payment_record")) == 1
    assert double.get("invoice", "in_open")["status"] == "paid" and payment.amount == 1250


def test_invoice_paid_out_of_band_elsewhere_carries_a_payment() -> None:
    """Marked paid outside Stripe by someone else (no twinbill record): the part of
    ``amount_paid_off_stripe`` nothing explains is one offline payment."""
    from multiplexer.backends.stripe_offline_map import map_out_of_band

    inv = shapes.invoice(
        "in_x",
        "cus_x",
        currency="eur",
        lines=[],
        subtotal=900,
        total=900,
        amount_paid_off_stripe=900,
    )
    payment = map_out_of_band(inv)
    assert payment is not None
    assert (payment.id, payment.amount, payment.method, payment.invoice_id) == (
        "oob_in_x",
        900,
        "offline",
        "in_x",
    )


def test_prepayment_keeps_the_operator_date(world) -> None:
    double, backend, ref = world
    payment = pay(backend, ref, 4999, "pre-1", invoice_id=None)
    assert double.get("customer", "cus_plain")["balance"] == -4999  # credit for next invoice
    [listed] = [p for p in backend.list_payments(ref) if p.method == "offline"]
    assert (listed.id, listed.paid_at, listed.amount) == (payment.id, BANK_DAY, 4999)
