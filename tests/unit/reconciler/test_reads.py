"""Two answers to one application read, compared under the reconciler's rules (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.canonical import (
    BillingHistory,
    BillingSummary,
    Customer,
    Invoice,
    InvoiceStatus,
    Subscription,
    SubscriptionStatus,
    System,
)
from reconciler.reads import compare_read

T = datetime(2026, 1, 1, tzinfo=UTC)


def _sub(sid: str, legacy_id: str | None = None) -> Subscription:
    return Subscription(
        id=sid,
        legacy_id=legacy_id or sid,
        status=SubscriptionStatus.ACTIVE,
        currency="EUR",
        created_at=T,
        current_period_start=T,
        current_period_end=T + timedelta(days=30),
    )


def _invoice(iid: str, sub: str, *, legacy_id: str | None = None, total: int = 999) -> Invoice:
    return Invoice(
        id=iid,
        legacy_id=legacy_id or iid,
        subscription_id=sub,
        status=InvoiceStatus.PAID,
        currency="EUR",
        created_at=T,
        subtotal=total,
        total=total,
        amount_paid=total,
        amount_due=0,
    )


def test_an_invoice_list_matches_the_new_history_with_references_resolved() -> None:
    legacy = [_invoice("in_1", "sub_1")]
    new = BillingHistory(
        user_id="u1",
        system=System.NEW,
        customer=None,
        subscriptions=(_sub("nb_s", "sub_1"),),
        invoices=(_invoice("nb_i", "nb_s", legacy_id="in_1"),),
    )
    assert compare_read("list_invoices", "u1", legacy, new) == []
    wrong = new.model_copy(
        update={"invoices": (_invoice("nb_i", "nb_s", legacy_id="in_1", total=1),)}
    )
    fields = {d.field for d in compare_read("list_invoices", "u1", legacy, wrong)}
    assert {"total", "subtotal", "amount_paid"} <= fields


def test_a_summary_names_the_field_that_differs_and_ignores_the_system() -> None:
    cus = Customer(id="cus_1", legacy_id="cus_1", user_id="u1", currency="EUR", created_at=T)
    legacy = BillingSummary(
        user_id="u1",
        system=System.LEGACY,
        customer=cus,
        subscriptions=(),
        next_renewal_at=T,
        open_invoices=0,
        balance=-500,
        currency="EUR",
    )
    same = legacy.model_copy(update={"system": System.NEW})
    assert compare_read("summary", "u1", legacy, same) == []
    flipped = same.model_copy(update={"balance": 500})
    (d,) = [d for d in compare_read("summary", "u1", legacy, flipped) if d.record_type == "summary"]
    assert (d.field, d.legacy_value, d.new_value) == ("balance", -500, 500)
