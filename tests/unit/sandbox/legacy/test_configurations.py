"""The pure population plan: rotation, determinism, amounts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox.legacy.configurations import (
    CONFIGURATIONS,
    DEFAULT_CURRENCIES,
    PLAN_AMOUNTS,
    app_user_id,
    configuration_order,
    plan_catalogue,
    plan_users,
    refund_amount,
)
from sandbox.legacy.population import RECIPES


def test_thirteen_configurations_each_with_a_recipe() -> None:
    assert len(CONFIGURATIONS) == 13
    assert set(RECIPES) == set(CONFIGURATIONS)


@given(n=st.integers(min_value=len(CONFIGURATIONS), max_value=80), seed=st.integers())
def test_any_n_from_13_covers_every_configuration(n: int, seed: int) -> None:
    assert {u.config for u in plan_users(n, seed)} == set(CONFIGURATIONS)


@given(seed=st.integers(), start=st.integers(min_value=0, max_value=50))
def test_any_13_consecutive_users_cover_every_configuration(seed: int, start: int) -> None:
    users = plan_users(start + 13, seed)[start:]
    assert sorted(u.config for u in users) == sorted(CONFIGURATIONS)


@given(seed=st.integers())
def test_same_seed_same_plan(seed: int) -> None:
    assert plan_users(30, seed) == plan_users(30, seed)
    assert configuration_order(seed) == configuration_order(seed)


def test_different_seeds_differ() -> None:
    assert plan_users(30, 1) != plan_users(30, 2)


def test_prefix_is_stable() -> None:
    """Seeding more users never changes the first ones."""
    assert plan_users(40, 7)[:13] == plan_users(13, 7)


def test_app_user_ids_and_emails() -> None:
    users = plan_users(60, 3)
    assert [u.app_user_id for u in users[:2]] == ["u_000001", "u_000002"]
    assert app_user_id(42) == "u_000042"
    assert len({u.email for u in users}) == 60
    for u in users:
        local = u.email.split("@")[0]
        assert local.startswith(f"{u.first_name}.{u.last_name}")
        assert u.email.endswith("@example.test")
        assert u.name == f"{u.first_name.title()} {u.last_name.title()}"


def test_currencies_rotate_within_each_configuration() -> None:
    users = plan_users(52, 11)
    assert {u.currency for u in users[:4]} == set(DEFAULT_CURRENCIES)
    for config in CONFIGURATIONS:
        assert len({u.currency for u in users if u.config == config}) == 4


def test_only_the_configuration_that_needs_it_gets_a_parameter() -> None:
    for u in plan_users(26, 5):
        assert (u.trial_days > 0) == (u.config == "trialing")
        assert (u.refund_ratio > 0) == (u.config == "canceled_refunded")
        assert (u.credit > 0) == (u.config == "credit_balance")
        assert (u.quantity > 1) == (u.config == "multi_seat")
        assert (u.one_off_amount > 0) == (u.config == "pending_invoice_item")
        if u.credit:
            assert u.credit < PLAN_AMOUNTS[u.currency][("basic", "month")]


def test_unknown_currency_is_refused() -> None:
    with pytest.raises(ValueError, match="chf"):
        plan_users(3, 1, ("chf",))


def test_catalogue() -> None:
    plans = plan_catalogue(("eur", "jpy"))
    assert len(plans) == 6
    ids = {p.id for p in plans}
    assert {"plan_basic_monthly_eur", "plan_basic_yearly_jpy", "plan_pro_monthly_jpy"} <= ids
    jpy_monthly = next(p for p in plans if p.id == "plan_basic_monthly_jpy")
    assert jpy_monthly.amount == 1200  # zero-decimal: ¥1200


@given(amount=st.integers(min_value=2, max_value=10**7), ratio=st.sampled_from([0.25, 0.5, 0.75]))
def test_refund_is_strictly_partial(amount: int, ratio: float) -> None:
    assert 0 < refund_amount(amount, ratio) < amount
