"""Facets computed from canonical legacy data, and the filters that read them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.canonical import (
    BillingHistory,
    Customer,
    Discount,
    Interval,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    Refund,
    Subscription,
    SubscriptionItem,
    SubscriptionStatus,
    System,
)
from core.errors import InvalidInput
from multiplexer import facets
from multiplexer.facets import LegacyFeatures

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
CARD = LegacyFeatures(payment_method="card")


def _sub(sid="sub_1", status=SubscriptionStatus.ACTIVE, interval=Interval.MONTH, **kw):
    return Subscription(
        id=sid,
        currency="EUR",
        status=status,
        created_at=NOW - timedelta(days=40),
        current_period_start=NOW - timedelta(days=10),
        current_period_end=kw.pop("end", NOW + timedelta(days=20)),
        items=(
            SubscriptionItem(
                id=f"si_{sid}",
                plan_code="plan_basic",
                unit_amount=990,
                quantity=kw.pop("quantity", 1),
                interval=interval,
            ),
        ),
        **kw,
    )


def _invoice(iid="in_1", status=InvoiceStatus.PAID, due=0, proration=False):
    return Invoice(
        id=iid,
        currency="EUR",
        status=status,
        created_at=NOW - timedelta(days=10),
        subtotal=990,
        total=990,
        amount_due=due,
        lines=(InvoiceLine(id=f"il_{iid}", amount=990, proration=proration),),
    )


def _history(*subs, invoices=(), balance=0, **kw):
    return BillingHistory(
        user_id="u1",
        system=System.LEGACY,
        customer=Customer(id="cus_1", user_id="u1", currency="EUR", balance=balance),
        subscriptions=subs,
        invoices=invoices,
        **kw,
    )


def test_a_plain_monthly_card_subscription_is_complexity_zero():
    f = facets.compute(_history(_sub(), invoices=(_invoice(),)), CARD)
    assert f["subscriptions"] == 1 and f["status"] == "active" and f["interval"] == "month"
    assert (f["trial"], f["paused"], f["scheduled_cancel"], f["dunning"]) == (
        False,
        False,
        "none",
        "none",
    )
    assert (f["payment_method"], f["invoices"], f["refunds"], f["credit_balance"]) == (
        "card",
        1,
        0,
        0,
    )
    assert f["complexity"] == 0
    assert facets.live(f, NOW)["renewal_days"] == 20


def test_every_feature_adds_to_the_complexity_and_shows_as_a_facet():
    trial = _sub("sub_t", SubscriptionStatus.TRIALING, trial_end=NOW + timedelta(days=5))
    yearly = _sub("sub_y", interval=Interval.YEAR, cancel_at_period_end=True, quantity=5)
    history = _history(
        trial,
        yearly,
        invoices=(_invoice("in_1", InvoiceStatus.OPEN, due=990, proration=True),),
        balance=-500,
        discounts=(
            Discount(id="di_1", coupon_code="GIFT", percent_off_bp=10_000, duration="once"),
        ),
        refunds=(Refund(id="re_1", currency="EUR", amount=100, created_at=NOW),),
    )
    f = facets.compute(history, LegacyFeatures(payment_method="sepa_debit", pending_items=1))
    assert f["subscriptions"] == 2 and f["status"] == "active+trialing"
    assert f["interval"] == "mixed" and f["trial"] is True
    assert f["scheduled_cancel"] == "period_end" and f["dunning"] == "open_invoice"
    assert (f["discounts"], f["refunds"], f["credit_balance"], f["seats"]) == (1, 1, 500, 5)
    assert f["prorations"] is True and f["pending_items"] == 1
    assert f["payment_method"] == "sepa_debit"
    # the trial ends first: that is the next renewal
    assert facets.live(f, NOW)["renewal_days"] == 5
    assert f["complexity"] == sum(
        facets.WEIGHTS[k]
        for k in (
            "extra_subscription",
            "trial",
            "scheduled_cancel",
            "dunning",
            "discount",
            "payment_method",
            "refunds",
            "credit_balance",
            "pending_items",
            "seats",
            "prorations",
        )
    )


def test_past_due_and_canceled_users_read_as_such():
    past_due = facets.compute(_history(_sub(status=SubscriptionStatus.PAST_DUE)), CARD)
    assert past_due["dunning"] == "past_due" and past_due["status"] == "past_due"
    gone = facets.compute(_history(_sub(status=SubscriptionStatus.CANCELED)), CARD)
    assert (gone["subscriptions"], gone["status"], gone["interval"]) == (0, "canceled", "none")
    assert facets.live(gone, NOW)["renewal_days"] is None


def test_an_unreadable_user_still_has_facets_and_says_why():
    f = facets.compute(None, CARD, currency="EUR", problem="price_1.unit_amount: tiered")
    assert f["readable"] is False and f["problem"].startswith("price_1")
    assert f["complexity"] >= facets.WEIGHTS["unreadable"]


@pytest.mark.parametrize(
    ("name", "value", "wanted", "hit"),
    [
        ("trial", True, {"true"}, True),
        ("trial", False, {"yes"}, False),
        ("currency", "EUR", {"eur"}, True),
        ("invoices", 7, {"6+"}, True),
        ("invoices", 3, {"1-2"}, False),
        ("subscriptions", 2, {"2"}, True),
        ("renewal_days", None, {"none"}, True),
        ("renewal_days", None, {"0"}, False),
        ("credit_balance", -300, {"-300"}, True),
    ],
)
def test_filters_read_values_by_the_facet_kind(name, value, wanted, hit):
    assert facets.matches(name, value, wanted) is hit


def test_unknown_facets_and_bad_values_are_refused_by_name():
    assert facets.parse_where(["trial=true", "currency=eur,usd", "invoices=2+"]) == {
        "trial": {"true"},
        "currency": {"eur", "usd"},
        "invoices": {"2+"},
    }
    with pytest.raises(InvalidInput, match="unknown facet 'configuration'"):
        facets.parse_where(["configuration=simple_monthly"])
    with pytest.raises(InvalidInput, match="expected true or false"):
        facets.parse_where(["trial=maybe"])
    with pytest.raises(InvalidInput, match="expected a number"):
        facets.parse_where(["invoices=lots"])
    with pytest.raises(InvalidInput, match="unknown facet"):
        facets.check_fields(["colour"])


def test_buckets_group_counts_by_edges():
    assert [facets.bucket("invoices", n) for n in (0, 1, 3, 7, 40)] == [
        "0",
        "1",
        "2-5",
        "6-24",
        "25+",
    ]
    assert facets.bucket("trial", True) == "yes" and facets.bucket("currency", "JPY") == "JPY"
    assert facets.bucket("renewal_days", None) == "none"


def test_production_code_never_reads_the_sandbox_tag():
    """``twinbill_config`` is written only by the sandbox seeder; a real account has none."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    readers = [
        str(p.relative_to(root))
        for pkg in ("core", "multiplexer", "migration", "reconciler", "admin")
        for p in (root / pkg).rglob("*.py")
        if "twinbill_config" in p.read_text(encoding="utf-8")
    ]
    assert readers == []
