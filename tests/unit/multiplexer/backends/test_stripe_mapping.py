"""Stripe -> canonical mapping on Stripe's published examples and on a recorded localstripe run."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from core.canonical import Interval, InvoiceStatus, SubscriptionStatus
from core.errors import TransformError
from multiplexer.backends import stripe_mapping as sm
from multiplexer.backends import stripe_offline_map as so
from multiplexer.backends import stripe_payments as sp
from multiplexer.backends.stripe_fields import percent_to_bp

FIXTURES = Path("/work/shared/stripe/fixtures3.json")
DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def stripe_examples() -> dict[str, Any]:
    if not FIXTURES.exists():
        pytest.skip(f"Stripe's published example objects are not at {FIXTURES}")
    return json.loads(FIXTURES.read_text())["resources"]


@pytest.fixture
def ex(stripe_examples: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(stripe_examples)


@pytest.fixture(scope="module")
def recorded() -> dict[str, Any]:
    return json.loads((DATA / "localstripe_snapshot.json").read_text())


# --- current API shapes (Stripe's examples) ----------------------------------------------


def test_price_maps_to_plan(ex: dict[str, Any]) -> None:
    p = sm.map_plan(ex["price"])
    assert (p.id, p.currency, p.unit_amount, p.interval, p.interval_count) == (
        "price_1PgafmB7WZ01zgkW6dKueIc5",
        "USD",
        2000,
        Interval.MONTH,
        1,
    )


def test_current_subscription_reads_price_and_item_periods(ex: dict[str, Any]) -> None:
    sub = sm.map_subscription(ex["subscription"])
    assert sub.status is SubscriptionStatus.ACTIVE and sub.currency == "USD"
    [item] = sub.items
    assert (item.plan_code, item.unit_amount) == ("price_1PgafmB7WZ01zgkW6dKueIc5", 2000)
    # period dates come from items.data[] (the example's values, whatever their order)
    assert sub.current_period_start == datetime.fromtimestamp(1896570518, UTC)
    assert sub.current_period_end == datetime.fromtimestamp(976287773, UTC)
    assert sub.created_at.tzinfo is not None and sub.cancel_at_period_end


def test_customer_balance_and_currency(ex: dict[str, Any]) -> None:
    cus = ex["customer"]
    cus["balance"] = -500
    c = sm.map_customer(cus)
    assert (c.currency, c.balance, c.user_id) == ("USD", -500, "")


def test_discount_with_source_coupon(ex: dict[str, Any]) -> None:
    disc = ex["discount"]
    disc["source"]["coupon"] = ex["coupon"]
    d = sm.map_discount(disc, subscription_id="sub_1")
    assert (d.coupon_code, d.percent_off_bp, d.duration) == ("Z4OV52SU", 2550, "forever")


def test_discount_without_coupon_names_field(ex: dict[str, Any]) -> None:
    with pytest.raises(TransformError) as err:
        sm.map_discount(ex["discount"], subscription_id=None)
    assert err.value.record == "di_1Pgc6rB7WZ01zgkW7Al8Fal9"
    assert err.value.field == "source.coupon"


@pytest.mark.parametrize(("pct", "bp"), [(12.5, 1250), (25.5, 2550), (100, 10000), (0.01, 1)])
def test_percent_off_is_exact(pct: float, bp: int) -> None:
    assert percent_to_bp(pct, "co_1") == bp


def test_percent_off_refuses_fraction_of_bp() -> None:
    with pytest.raises(TransformError):
        percent_to_bp(12.345, "co_1")


def test_current_invoice_reads_parent_and_line_proration(ex: dict[str, Any]) -> None:
    inv = ex["invoice"]
    inv["parent"]["subscription_details"]["subscription"] = "sub_123"
    i = sp.map_invoice(inv)
    assert (i.subscription_id, i.status, i.currency, i.total, i.tax) == (
        "sub_123",
        InvoiceStatus.DRAFT,
        "USD",
        1000,
        0,
    )
    assert i.lines[0].proration is True and i.lines[0].amount == 1000


def test_invoice_payments_link_charge_to_invoice(ex: dict[str, Any]) -> None:
    inv = ex["invoice"]
    ip = ex["invoice_payment"]
    ip["payment"] = {"type": "charge", "charge": ex["charge"]["id"]}
    inv["payments"] = {"object": "list", "has_more": False, "data": [ip]}
    index = sp.charge_invoice_index([inv])
    pay = sp.map_charge(ex["charge"], index)
    assert (pay.invoice_id, pay.amount, pay.currency, pay.method) == (inv["id"], 100, "USD", "card")


def test_refund_and_credit_balance_transaction(ex: dict[str, Any]) -> None:
    r = sp.map_refund(ex["refund"])
    assert (r.payment_id, r.amount, r.currency) == ("ch_1PgafuB7WZ01zgkWXYmPNZs8", 100, "USD")
    tx = ex["customer_balance_transaction"]
    assert so.map_balance_transaction(tx) is None  # untagged adjustment: not a payment
    tx["metadata"] = {"twinbill_offline_payment": "1", "twinbill_reference": "SEPA-1"}
    pay = so.map_balance_transaction(tx)
    assert pay is not None and (pay.amount, pay.method) == (500, "offline")


def test_unknown_status_names_record_and_field(ex: dict[str, Any]) -> None:
    ex["subscription"]["status"] = "frozen"
    with pytest.raises(TransformError) as err:
        sm.map_subscription(ex["subscription"])
    assert (err.value.record, err.value.field) == ("sub_1Pgc6rB7WZ01zgkWNy0Cn5nw", "status")


def test_missing_required_field(ex: dict[str, Any]) -> None:
    del ex["invoice"]["created"]
    with pytest.raises(TransformError) as err:
        sp.map_invoice(ex["invoice"])
    assert err.value.field == "created"


def test_truncated_list_is_refused(ex: dict[str, Any]) -> None:
    ex["invoice"]["lines"]["has_more"] = True
    with pytest.raises(TransformError):
        sp.map_invoice(ex["invoice"])


# --- old shapes (recorded from localstripe) --------------------------------------------


def test_localstripe_snapshot_maps(recorded: dict[str, Any]) -> None:
    h = sm.map_objects("u1", recorded)
    assert h.customer is not None and h.customer.user_id == "u1"
    assert h.customer.currency == "EUR"
    [sub] = h.subscriptions
    assert sub.status is SubscriptionStatus.CANCELED and sub.items[0].plan_code == "max-eur-month"
    assert sub.current_period_end == datetime.fromtimestamp(1797966885, UTC)
    assert {i.id for i in h.invoices} == {"in_yGDdNHNTVMSzZo", "in_A2KVOqwTYGPBT8"}
    proration = next(i for i in h.invoices if i.id == "in_yGDdNHNTVMSzZo")
    assert [(li.amount, li.proration) for li in proration.lines] == [(2500, False), (-1250, True)]
    assert proration.subscription_id == sub.id
    charges = {p.id: p for p in h.payments}
    assert charges["ch_rBRuexzjz08XDQ"].invoice_id == "in_A2KVOqwTYGPBT8"  # via invoice.charge
    assert charges["ch_rBRuexzjz08XDQ"].amount_refunded == 300
    assert [(r.id, r.amount) for r in h.refunds] == [("re_tMuWSMsedUsQ9P", 300)]


def test_jpy_amounts_are_never_divided(recorded: dict[str, Any]) -> None:
    plan = sm.map_plan(
        {
            "id": "p",
            "object": "plan",
            "amount": 1200,
            "currency": "jpy",
            "interval": "month",
            "interval_count": 1,
        }
    )
    assert (plan.currency, plan.unit_amount) == ("JPY", 1200)


def test_old_single_discount_without_id(recorded: dict[str, Any]) -> None:
    sub = copy.deepcopy(recorded["subscriptions"][0])
    sub["discount"] = {
        "object": "discount",
        "start": 1795374885,
        "end": None,
        "coupon": {
            "id": "SPRING",
            "percent_off": 12.5,
            "amount_off": None,
            "currency": None,
            "duration": "repeating",
            "duration_in_months": 3,
        },
    }
    [raw] = sm.raw_discounts(sub)
    d = sm.map_discount(raw, subscription_id=sub["id"])
    assert (d.id, d.percent_off_bp, d.duration_in_months) == (f"di_{sub['id']}_SPRING", 1250, 3)


def test_customer_currency_prefers_billing_over_localstripe_default(
    recorded: dict[str, Any],
) -> None:
    cus = copy.deepcopy(recorded["customer"])
    cus["metadata"]["twinbill_currency"] = "JPY"  # localstripe still answers currency "eur"
    assert sm.map_customer(cus).currency == "JPY"
