"""The staging population, read back through the stripe SDK, configuration by configuration."""

from __future__ import annotations

import time
from typing import Any

import legacy_fixtures
import pytest
import stripe

from sandbox.legacy.configurations import CONFIGURATIONS, GIFT_MONTHS, plan_amount
from sandbox.legacy.launcher import LocalStripe
from sandbox.legacy.population import SeededUser, read_back, seed

pytestmark = pytest.mark.localstripe

# Shared fixtures live in legacy_fixtures.py (conftest.py belongs to another suite).
seeded_population = legacy_fixtures.seeded_population
POPULATION, SEED = legacy_fixtures.POPULATION, legacy_fixtures.SEED

Population = tuple[stripe.StripeClient, list[SeededUser]]


@pytest.fixture(scope="module")
def states(seeded_population: Population) -> dict[str, list[tuple[SeededUser, dict[str, Any]]]]:
    client, users = seeded_population
    grouped: dict[str, list[tuple[SeededUser, dict[str, Any]]]] = {}
    for user in users:
        grouped.setdefault(user.config, []).append((user, read_back(client, user.customer_id)))
    return grouped


def _subs(state: dict[str, Any]) -> list[dict[str, Any]]:
    return state["subscriptions"]


def test_every_configuration_and_currency_is_covered(seeded_population: Population) -> None:
    _, users = seeded_population
    assert len(users) == POPULATION
    assert {u.config for u in users} == set(CONFIGURATIONS)
    assert {u.currency for u in users} == {"eur", "usd", "gbp", "jpy"}
    assert len({u.app_user_id for u in users}) == POPULATION
    assert len({u.customer_id for u in users}) == POPULATION


def test_every_customer_is_tagged_and_has_a_default_card(states: dict) -> None:
    for config, entries in states.items():
        for user, state in entries:
            cus = state["customer"]
            assert cus["metadata"]["app_user_id"] == user.app_user_id
            assert cus["metadata"]["twinbill_config"] == config
            first, last = cus["name"].lower().split(" ")
            assert cus["email"].startswith(f"{first}.{last}")
            assert cus["email"].endswith("@example.test")
            default_pm = cus["invoice_settings"]["default_payment_method"]
            assert default_pm in {pm["id"] for pm in state["payment_methods"]}
            assert sorted(s["id"] for s in _subs(state)) == sorted(user.subscription_ids)
            for sub in _subs(state):
                assert sub["metadata"]["app_user_id"] == user.app_user_id
                assert sub["plan"]["currency"] == user.currency


def test_simple_monthly(states: dict) -> None:
    for user, state in states["simple_monthly"]:
        (sub,) = _subs(state)
        assert sub["status"] == "active"
        assert sub["plan"]["interval"] == "month"
        (invoice,) = state["invoices"]
        assert invoice["status"] == "paid"
        assert invoice["amount_paid"] == plan_amount("basic", "month", user.currency)


def test_yearly(states: dict) -> None:
    for _, state in states["yearly"]:
        (sub,) = _subs(state)
        assert sub["plan"]["interval"] == "year"
        assert sub["current_period_end"] - sub["current_period_start"] >= 365 * 86400


def test_trialing(states: dict) -> None:
    now = time.time()
    for _, state in states["trialing"]:
        (sub,) = _subs(state)
        assert sub["trial_end"] > now
        assert sub["trial_end"] < now + 31 * 86400
        assert state["invoices"] == [] and state["charges"] == []
        # localstripe gap: a trial is "incomplete", never "trialing"
        assert sub["status"] in ("trialing", "incomplete")


def test_gifted(states: dict) -> None:
    now = time.time()
    for _, state in states["gifted"]:
        (sub,) = _subs(state)
        assert sub["metadata"]["twinbill_gift"] == "true"
        assert sub["metadata"]["twinbill_gift_months"] == str(GIFT_MONTHS)
        assert now + 85 * 86400 < sub["trial_end"] < now + 95 * 86400
        assert state["charges"] == []


def test_upgraded_proration(states: dict) -> None:
    for user, state in states["upgraded_proration"]:
        (sub,) = _subs(state)
        assert sub["plan"]["id"] == f"plan_pro_monthly_{user.currency}"
        lines = [line for inv in state["invoices"] for line in inv["lines"]["data"]]
        prorations = [line for line in lines if line["proration"]]
        assert prorations and all(line["amount"] < 0 for line in prorations)
        assert all(inv["status"] == "paid" for inv in state["invoices"])
        assert len(state["invoices"]) == 2


def test_cancel_at_period_end(states: dict) -> None:
    for _, state in states["cancel_at_period_end"]:
        (sub,) = _subs(state)
        assert sub["cancel_at_period_end"] is True
        assert sub["status"] == "active"


def test_canceled_refunded(states: dict) -> None:
    for _, state in states["canceled_refunded"]:
        (sub,) = _subs(state)
        assert sub["status"] == "canceled"
        assert sub["ended_at"] is not None
        (charge,) = state["charges"]
        (refund,) = state["refunds"]
        assert refund["charge"] == charge["id"]
        assert 0 < refund["amount"] < charge["amount"]
        assert charge["amount_refunded"] == refund["amount"]


def test_past_due(states: dict) -> None:
    for _, state in states["past_due"]:
        (sub,) = _subs(state)
        assert sub["status"] == "past_due"
        statuses = sorted(inv["status"] for inv in state["invoices"])
        assert statuses == ["open", "paid"]
        failed = [c for c in state["charges"] if c["status"] == "failed"]
        assert failed and all(c["failure_code"] == "card_declined" for c in failed)


def test_two_subscriptions(states: dict) -> None:
    for _, state in states["two_subscriptions"]:
        subs = _subs(state)
        assert len(subs) == 2
        assert {s["plan"]["interval"] for s in subs} == {"month", "year"}
        assert all(s["status"] == "active" for s in subs)


def test_paid_offline(states: dict) -> None:
    for _, state in states["paid_offline"]:
        (invoice,) = state["invoices"]
        assert invoice["status"] == "paid"
        assert invoice["metadata"]["twinbill_paid_out_of_band"] == "true"
        assert invoice["charge"] is None and state["charges"] == []
        assert state["customer"]["metadata"]["twinbill_balance"] == "0"


def test_credit_balance(states: dict) -> None:
    for user, state in states["credit_balance"]:
        balance = int(state["customer"]["metadata"]["twinbill_balance"])
        assert balance < 0  # Stripe convention: negative = credit
        assert "balance" not in state["customer"]  # localstripe gap
        (invoice,) = state["invoices"]
        price = plan_amount("basic", "month", user.currency)
        assert invoice["amount_paid"] == price + balance


def test_multi_seat(states: dict) -> None:
    for user, state in states["multi_seat"]:
        (sub,) = _subs(state)
        assert sub["quantity"] > 1
        (invoice,) = state["invoices"]
        assert invoice["total"] == sub["quantity"] * plan_amount("basic", "month", user.currency)


def test_pending_invoice_item(states: dict) -> None:
    for _, state in states["pending_invoice_item"]:
        (item,) = state["pending_invoice_items"]
        assert item["invoice"] is None
        assert item["amount"] > 0


def test_jpy_amounts_are_whole_yen(states: dict) -> None:
    seen = 0
    for entries in states.values():
        for user, state in entries:
            if user.currency != "jpy":
                continue
            seen += 1
            amounts = [c["amount"] for c in state["charges"]]
            amounts += [inv["total"] for inv in state["invoices"]]
            assert all(isinstance(a, int) for a in amounts)
            # ¥1200 is amount=1200, not 120000 (zero-decimal currency).
            assert {s["plan"]["amount"] for s in _subs(state)} <= {1200, 2400, 12000}
            assert all(abs(a) < 100_000 for a in amounts)
    assert seen >= 4


def _fingerprint(client: stripe.StripeClient, users: list[SeededUser]) -> list[tuple]:
    out = []
    for user in users:
        state = read_back(client, user.customer_id)
        cus = state["customer"]
        out.append(
            (
                user.app_user_id,
                user.config,
                user.currency,
                cus["name"],
                cus["email"],
                tuple(sorted((s["plan"]["id"], s["quantity"], s["status"]) for s in _subs(state))),
                tuple(sorted(inv["total"] for inv in state["invoices"])),
                tuple(sorted(c["amount"] for c in state["charges"])),
                tuple(sorted(r["amount"] for r in state["refunds"])),
                tuple(sorted(i["amount"] for i in state["pending_invoice_items"])),
            )
        )
    return out


def test_same_seed_same_population_on_fresh_instances() -> None:
    prints = []
    for _ in range(2):
        with LocalStripe() as server:
            client = server.client()
            prints.append(_fingerprint(client, seed(client, 13, SEED)))
    assert prints[0] == prints[1]
    with LocalStripe() as server:
        client = server.client()
        assert _fingerprint(client, seed(client, 13, SEED + 1)) != prints[0]


def test_catalogue_is_idempotent(seeded_population: Population) -> None:
    client, _ = seeded_population
    from sandbox.legacy.population import ensure_catalogue

    ensure_catalogue(client, ("eur", "usd", "gbp", "jpy"))
    plans = list(client.v1.plans.list({"limit": 100}).auto_paging_iter())
    assert len(plans) == 12
    assert "plan_basic_monthly_eur" in {p.id for p in plans}
