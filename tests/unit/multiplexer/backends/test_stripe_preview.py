"""Upcoming-invoice previews -> canonical NextCharges, per dialect; and the dialect readings
of trials and the balance sign (localstripe shapes as it answers; current-API fixture)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from core.canonical import BillingState, SubscriptionStatus
from core.errors import TransformError
from multiplexer.backends.newbilling_preview import map_preview
from multiplexer.backends.stripe import mapping as sm
from multiplexer.backends.stripe.preview import map_next_charges

NOW = datetime(2030, 1, 1, tzinfo=UTC)
T0 = int(NOW.timestamp())
DAY = 86400
FIXTURES = Path("/work/shared/stripe/fixtures3.json")


def ls_sub(**kw: Any) -> dict[str, Any]:
    """A subscription as localstripe answers it."""
    sub = {
        "id": "sub_1",
        "object": "subscription",
        "status": "active",
        "created": T0 - 5 * DAY,
        "start_date": T0 - 5 * DAY,
        "current_period_start": T0 - 5 * DAY,
        "current_period_end": T0 + 25 * DAY,
        "trial_start": None,
        "trial_end": None,
        "cancel_at_period_end": False,
        "plan": {"id": "plan_basic_monthly_eur", "currency": "eur", "amount": 990},
        "items": {"object": "list", "has_more": False, "data": []},
    }
    return {**sub, **kw}


def ls_upcoming(subtotal: int = 990, tax: int = 0, credit: int = 0, **kw: Any) -> dict[str, Any]:
    """localstripe's GET /v1/invoices/upcoming: total = subtotal + tax - account_balance."""
    total = max(0, subtotal + tax - credit)
    inv = {
        "object": "invoice",
        "id": None,
        "currency": "eur",
        "subtotal": subtotal,
        "tax": tax,
        "total": total,
        "amount_due": total,
        "starting_balance": credit,
        "date": T0 + 25 * DAY,
        "next_payment_attempt": T0 + 25 * DAY,
        "total_tax_amounts": [{"amount": tax, "inclusive": False, "tax_rate": "txr_1"}]
        if tax
        else [],
    }
    return {**inv, **kw}


def preview(subs, previews, *, dialect="localstripe", customer=None):  # type: ignore[no-untyped-def]
    cus = customer or {"id": "cus_1", "object": "customer", "account_balance": 0}
    return map_next_charges(
        "u1",
        cus,
        subs,
        previews,
        dialect=dialect,
        now=NOW,
        balance=sm.customer_balance(cus, dialect=dialect),
        currency="EUR",
    )


def test_localstripe_trial_is_charged_at_trial_end_not_at_period_end() -> None:
    sub = ls_sub(status="incomplete", trial_end=T0 + 10 * DAY)
    (charge,) = preview([sub], {"sub_1": ls_upcoming()}).charges
    assert charge.state is BillingState.TRIALING
    assert charge.charge_at == charge.until == datetime.fromtimestamp(T0 + 10 * DAY, UTC)
    assert (charge.total, charge.amount_due) == (990, 990)


def test_localstripe_credit_stays_a_credit() -> None:
    out = preview([ls_sub()], {"sub_1": ls_upcoming(credit=800)})
    (charge,) = out.charges
    assert out.balance == -800  # Stripe's sign: negative is credit
    assert (charge.total, charge.amount_due, charge.balance_applied) == (990, 190, 800)


def test_cancel_at_period_end_and_canceled_have_no_next_charge() -> None:
    subs = [ls_sub(cancel_at_period_end=True), ls_sub(id="sub_2", status="canceled")]
    canceling, over = preview(subs, {"sub_1": ls_upcoming(), "sub_2": None}).charges
    assert (canceling.state, canceling.charge_at, canceling.amount_due) == (
        BillingState.CANCELING,
        None,
        0,
    )
    assert canceling.until == datetime.fromtimestamp(T0 + 25 * DAY, UTC)
    assert over.state is BillingState.NONE


def test_an_active_subscription_the_server_will_not_invoice_has_no_charge() -> None:
    (charge,) = preview([ls_sub()], {"sub_1": None}).charges
    assert (charge.state, charge.charge_at) == (BillingState.NONE, None)


def test_tax_breakdown_and_a_credit_applied_once_over_two_subscriptions() -> None:
    later = ls_sub(id="sub_2", created=T0 - DAY, current_period_end=T0 + 40 * DAY)
    previews = {
        "sub_1": ls_upcoming(tax=188, credit=500),
        "sub_2": ls_upcoming(credit=500, next_payment_attempt=T0 + 40 * DAY),
    }
    first, second = preview([ls_sub(), later], previews).charges
    assert (first.tax, first.total, first.amount_due) == (188, 1178, 678)
    assert [t.tax_rate_id for t in first.tax_breakdown] == ["txr_1"]
    assert second.amount_due == 990  # the credit was used by the earlier charge


def test_current_api_preview_shape() -> None:
    data = json.loads(FIXTURES.read_text())["resources"]
    inv = copy.deepcopy(data["invoice"])
    inv["starting_balance"] = -300
    inv["amount_due"] = inv["total"] - 300
    inv["total_taxes"] = [
        {"amount": 0, "tax_behavior": "exclusive", "tax_rate_details": {"tax_rate": "txr_9"}}
    ]
    sub = copy.deepcopy(data["subscription"])
    sub.update(status="active", trial_end=None, cancel_at_period_end=False, pause_collection=None)
    out = preview(
        [sub], {sub["id"]: inv}, dialect="current", customer={"id": "cus_1", "balance": -300}
    )
    (charge,) = out.charges
    assert out.balance == -300
    assert charge.currency == "USD" and charge.state is BillingState.RENEWING
    assert charge.balance_applied == 300
    assert charge.charge_at == datetime.fromtimestamp(inv["next_payment_attempt"], UTC)
    assert [t.tax_rate_id for t in charge.tax_breakdown] == ["txr_9"]


@pytest.mark.parametrize(
    ("change", "field"),
    [({"currency": "euro"}, "currency"), ({"amount_due": "1.90"}, "amount_due")],
)
def test_a_malformed_legacy_preview_is_a_data_error_naming_the_field(
    change: dict[str, Any], field: str
) -> None:
    with pytest.raises(TransformError) as err:
        preview([ls_sub()], {"sub_1": ls_upcoming(**change)})
    assert err.value.kind == "data" and err.value.field == field


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"currency": "EURO"}, "currency"),
        ({"charge_at": "tomorrow"}, "charge_at"),
        ({"amount_due": 1.5}, "amount_due"),
    ],
)
def test_a_malformed_new_preview_is_a_data_error_naming_the_field(
    change: dict[str, Any], field: str
) -> None:
    charge = {
        "id": "sub_nb_1", "external_id": "sub_1", "currency": "EUR", "state": "renewing",
        "until": None, "charge_at": "2030-01-26T00:00:00Z", "subtotal": 990, "discount": 0,
        "tax": 0, "tax_breakdown": [], "total": 990, "balance_applied": 0, "amount_due": 990,
    }  # fmt: skip
    body = {"import_id": "imp_1", "user_id": "u1", "currency": "EUR", "balance": 0}
    assert map_preview({**body, "subscriptions": [charge]}).charges[0].amount_due == 990
    with pytest.raises(TransformError) as err:
        map_preview({**body, "subscriptions": [{**charge, **change}]})
    assert err.value.kind == "data" and field in err.value.field


def test_localstripe_dialect_readings_of_trials_and_balance() -> None:
    cus = {"id": "cus_1", "object": "customer", "account_balance": 500}
    assert sm.customer_balance(cus, dialect="localstripe") == -500
    assert sm.customer_balance(cus, dialect="current") == 500  # Stripe's own sign
    assert sm.customer_balance({"id": "c", "balance": -500}, dialect="localstripe") == -500
    raw = ls_sub(status="incomplete", trial_end=T0 + 10 * DAY)
    raw["items"]["data"] = [
        {
            "id": "si_1",
            "object": "subscription_item",
            "quantity": 1,
            "plan": {"id": "p", "amount": 990, "currency": "eur", "interval": "month"},
        }
    ]
    trial = sm.map_subscription(raw, dialect="localstripe", now=NOW)
    assert trial.status is SubscriptionStatus.TRIALING
    assert trial.next_renewal_at == datetime.fromtimestamp(T0 + 10 * DAY, UTC)
    assert trial.trial_start == datetime.fromtimestamp(T0 - 5 * DAY, UTC)
    assert sm.map_subscription(raw, dialect="current", now=NOW).status.value == "incomplete"
    ended = sm.map_subscription(raw, dialect="localstripe", now=datetime(2031, 1, 1, tzinfo=UTC))
    assert ended.status is SubscriptionStatus.INCOMPLETE  # a trial in the past bills nobody


def test_a_stored_snapshot_is_read_as_of_when_it_was_taken() -> None:
    """Continuous reconciliation re-maps old snapshots: a trial then is still a trial."""
    from multiplexer.backends.base import RawSnapshot
    from multiplexer.backends.stripe.backend import StripeLegacyBackend

    raw = ls_sub(status="incomplete", trial_end=T0 + 10 * DAY)
    raw["items"]["data"] = [
        {
            "id": "si_1",
            "object": "subscription_item",
            "quantity": 1,
            "plan": {"id": "p", "amount": 990, "currency": "eur", "interval": "month"},
        }
    ]
    objects = {
        "customer": {"id": "cus_1", "object": "customer", "metadata": {}},
        "subscriptions": [raw],
    }
    backend = StripeLegacyBackend(None, dialect="localstripe")  # type: ignore[arg-type]
    history = backend.map_snapshot(RawSnapshot("u1", "cus_1", objects, taken_at=NOW))
    assert history.subscriptions[0].status is SubscriptionStatus.TRIALING
    assert history.customer is not None and history.customer.user_id == "u1"  # from the route


def current_two_period_sub(**kw: Any) -> dict[str, Any]:
    """Current API: no subscription-level period; a yearly item (listed first) and a
    monthly one, each with its own period."""

    def item(iid: str, end: int, interval: str) -> dict[str, Any]:
        price = {"id": f"price_{interval}", "object": "price", "currency": "eur"}
        price.update(unit_amount=990, recurring={"interval": interval, "interval_count": 1})
        return {
            "id": iid,
            "object": "subscription_item",
            "price": price,
            "quantity": 1,
            "current_period_start": T0 - DAY,
            "current_period_end": end,
        }

    sub = {
        "id": "sub_mixed",
        "object": "subscription",
        "status": "active",
        "currency": "eur",
        "created": T0 - 5 * DAY,
        "cancel_at_period_end": False,
        "items": {
            "object": "list",
            "has_more": False,
            "data": [item("si_y", T0 + 364 * DAY, "year"), item("si_m", T0 + 29 * DAY, "month")],
        },
    }
    return {**sub, **kw}


def test_mixed_item_periods_preview_and_mapping_agree_on_the_next_billing() -> None:
    """The preview read the latest item period end (the yearly one) where the mapping
    reads the one that ends first (the monthly renewal): a canceling subscription's end
    and an undated preview's charge date were a year late, so prove compared a charge
    the legacy side dates in a month with one it dated in a year."""
    first_end = datetime.fromtimestamp(T0 + 29 * DAY, UTC)
    canceling_sub = current_two_period_sub(cancel_at_period_end=True)
    assert sm.map_subscription(canceling_sub, dialect="current").current_period_end == first_end
    (canceling,) = preview([canceling_sub], {"sub_mixed": None}, dialect="current").charges
    assert (canceling.state, canceling.until) == (BillingState.CANCELING, first_end)
    undated = {"object": "invoice", "currency": "eur", "subtotal": 1980, "total": 1980}
    undated.update(amount_due=1980, lines={"object": "list", "has_more": False, "data": []})
    out = preview([current_two_period_sub()], {"sub_mixed": undated}, dialect="current")
    (renewing,) = out.charges
    assert (renewing.state, renewing.charge_at) == (BillingState.RENEWING, first_end)
