"""The readiness report: buckets, preflight verdicts (the migration's own rules), rendering."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.canonical import (
    BillingHistory,
    Customer,
    Interval,
    Invoice,
    InvoiceStatus,
    Subscription,
    SubscriptionItem,
    SubscriptionStatus,
    System,
)
from migration import readiness
from multiplexer.backends.base import InventoryEntry, RawSnapshot
from multiplexer.facets import LegacyFeatures

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def _entry(user_id, *, renew_in=timedelta(days=20), open_invoice=False):
    sub = Subscription(
        id=f"sub_{user_id}",
        currency="EUR",
        status=SubscriptionStatus.ACTIVE,
        created_at=NOW - timedelta(days=40),
        current_period_start=NOW - timedelta(days=10),
        current_period_end=NOW + renew_in,
        items=(SubscriptionItem(id="si", plan_code="p", unit_amount=990, interval=Interval.MONTH),),
    )
    invoices = ()
    if open_invoice:
        invoices = (
            Invoice(
                id=f"in_{user_id}",
                currency="EUR",
                status=InvoiceStatus.OPEN,
                created_at=NOW - timedelta(days=1),
                subtotal=990,
                total=990,
                amount_due=990,
            ),
        )
    history = BillingHistory(
        user_id=user_id,
        system=System.LEGACY,
        customer=Customer(id=f"cus_{user_id}", user_id=user_id, currency="EUR"),
        subscriptions=(sub,),
        invoices=invoices,
    )
    return InventoryEntry(
        customer_id=f"cus_{user_id}",
        user_id=user_id,
        customer=history.customer,
        history=history,
        features=LegacyFeatures(payment_method="card"),
        snapshot=RawSnapshot(user_id, f"cus_{user_id}", {"history": {}}),
    )


def test_the_assessor_uses_preflights_own_rules():
    assess = readiness.assessor(renewal_guard=timedelta(hours=2), now=NOW)
    assert assess(_entry("u1"))["preflight"] == "ok"
    soon = assess(_entry("u2", renew_in=timedelta(minutes=30)))
    assert soon["preflight"] == "renewal inside safety window"
    assert "safety window" in soon["preflight_reason"]
    dunning = assess(_entry("u3", open_invoice=True))
    assert dunning["preflight"] == "open invoice" and dunning["unmapped"] == []


def _rows():
    return [
        ("u1", {"currency": "EUR", "trial": False, "complexity": 0, "preflight": "ok"}),
        ("u2", {"currency": "EUR", "trial": True, "complexity": 1, "preflight": "open invoice"}),
        (
            "u3",
            {
                "currency": "<b>JPY</b>",
                "trial": False,
                "complexity": 3,
                "preflight": "ok",
                "unmapped": ["subscription.pause_collection"],
            },
        ),
        ("u4", {"currency": "EUR"}),  # linked by CSV, never synced
    ]


def test_the_report_counts_buckets_ready_deferred_and_unmapped():
    r = readiness.build(_rows(), now=NOW)
    assert (r.users, r.ready, r.not_assessed, r.with_unmapped) == (4, 1, 1, 1)
    assert r.deferred == {"open invoice": 1}
    assert r.unmapped == {"subscription.pause_collection": 1}
    eur = next(b for b in r.buckets if (b.facet, b.value) == ("currency", "EUR"))
    assert (eur.users, eur.ready, dict(eur.deferred)) == (2, 1, {"open invoice": 1})
    findings = r.findings()
    assert any("deferred by preflight: open invoice (e.g. u2)" in f for f in findings)
    assert any("never assessed" in f for f in findings)


def test_html_is_self_contained_svg_and_escapes_billing_data():
    from admin.inventory_render import render_html, render_json

    page = render_html(readiness.build(_rows(), now=NOW))
    assert "<svg" in page and "<script" not in page and "<b>JPY" not in page
    assert "&lt;b&gt;JPY&lt;/b&gt;" in page
    assert '"ready": 1' in render_json(readiness.build(_rows(), now=NOW))
