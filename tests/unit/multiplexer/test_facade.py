"""``BillingMux`` as a library: routing per user, write guards, money checks, idempotency.

Both systems are ``FakeBillingBackend`` instances, so every write that reached
a system shows up in its state (customers, subscriptions, payments, refunds).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.audit import history
from core.canonical import Interval, Plan, RefundMode, System
from core.db import transaction
from core.errors import (
    CurrencyMismatch,
    InvalidAmount,
    InvalidInput,
    UnknownCurrency,
    UnknownUser,
    UserHeld,
    UserMigrating,
)
from core.money import Money
from multiplexer import routing
from multiplexer.backends.base import UserRef
from multiplexer.cache import LocalRouteCache, RouteInfo
from multiplexer.facade import MIGRATING_RETRY_AFTER, BillingMux
from multiplexer.placement import set_policy
from tests.fakes.billing import FakeBillingBackend

EUR_BASIC = Plan(
    id="plan_basic_eur",
    currency="EUR",
    product_name="Basic",
    unit_amount=990,
    interval=Interval.MONTH,
)
EUR_PRO = EUR_BASIC.model_copy(update={"id": "plan_pro_eur", "unit_amount": 1990})
JPY_BASIC = EUR_BASIC.model_copy(
    update={"id": "plan_basic_jpy", "currency": "JPY", "unit_amount": 1200}
)
PAID_AT = datetime(2025, 3, 1, 12, tzinfo=UTC)
CEILING_MAJOR = 1000


def state_of(backend: FakeBillingBackend) -> tuple[str, ...]:
    records = (backend.customers, backend.subs, backend.invoices, backend.payments, backend.refunds)
    return tuple(r.model_dump_json() for group in records for r in group.values())


class World:
    def __init__(self, sessions) -> None:
        self.sessions = sessions
        self.cache = LocalRouteCache()
        self.legacy = FakeBillingBackend("legacy", System.LEGACY)
        self.new = FakeBillingBackend("new", System.NEW)
        for plan in (EUR_BASIC, EUR_PRO, JPY_BASIC):
            self.legacy.plans[plan.id] = plan
        self.mux = BillingMux(
            sessions,
            self.cache,
            {"legacy": self.legacy, "new": self.new},
            max_amount_major=CEILING_MAJOR,
        )

    def backend(self, system: str) -> FakeBillingBackend:
        return self.legacy if system == "legacy" else self.new

    def user(self, user_id: str, system: str, *, currency: str = "EUR", state: str | None = None):
        backend = self.backend(system)
        cus = backend.create_customer(
            user_id, email=f"{user_id}@example.test", name=user_id, currency=currency,
            idempotency_key=f"cus-{user_id}",
        )  # fmt: skip
        ids = {f"{system}_customer_id": cus.id}
        with transaction(self.sessions) as s:
            routing.create_route(
                s, user_id, system=system, actor="test", reason="t", currency=currency, **ids
            )
        sub = backend.create_subscription(
            UserRef(user_id, ids.get("legacy_customer_id"), ids.get("new_customer_id")),
            EUR_BASIC if currency == "EUR" else JPY_BASIC,
            quantity=1,
            trial_days=None,
            idempotency_key=f"sub-{user_id}",
        )
        if state is not None:
            self.move(user_id, state)
        return sub

    def move(self, user_id: str, state: str) -> None:
        with transaction(self.sessions) as s:
            routing.transition(s, user_id, state, actor="test", reason="t", cache=self.cache)

    def writes(self) -> dict[str, tuple[str, ...]]:
        """Everything each system holds: a write to either one changes this."""
        return {name: state_of(b) for name, b in (("legacy", self.legacy), ("new", self.new))}

    def audit(self, user_id: str) -> list[str]:
        with self.sessions() as s:
            return [e.action for e in history(s, "user", user_id)]


@pytest.fixture
def world(sessions) -> World:
    w = World(sessions)
    w.user("u_legacy", "legacy")
    w.user("u_new", "new")
    return w


# -- routing ---------------------------------------------------------------------------


@pytest.mark.parametrize("system", ["legacy", "new"])
def test_reads_go_to_the_system_of_record(world, system):
    user = f"u_{system}"
    other = world.backend("new" if system == "legacy" else "legacy")
    other_calls = len(other.calls)
    subs = world.mux.list_subscriptions(user)
    invoices = world.mux.list_invoices(user)
    payments = world.mux.list_payments(user)
    summary = world.mux.summary(user)
    assert [s.id for s in subs] == [s.id for s in summary.subscriptions]
    assert len(invoices) == 1 and len(payments) == 1
    assert summary.system is System(system) and summary.currency == "EUR"
    assert summary.next_renewal_at == subs[0].current_period_end
    assert len(other.calls) == other_calls, "the other system was never asked"


@pytest.mark.parametrize("system", ["legacy", "new"])
def test_writes_go_to_the_system_of_record_and_are_audited(world, system):
    user = f"u_{system}"
    mine, other = world.backend(system), world.backend("new" if system == "legacy" else "legacy")
    before_other = world.writes()["new" if system == "legacy" else "legacy"]
    sub = world.mux.create_subscription(user, "plan_basic_eur", actor="token:app")
    assert sub.id in mine.subs
    changed = world.mux.change_plan(user, sub.id, "plan_pro_eur", actor="token:app")
    assert changed.items[0].plan_code == "plan_pro_eur"
    canceled = world.mux.cancel(user, sub.id, at_period_end=True, actor="token:app")
    assert canceled.cancel_at_period_end
    payment = next(iter(world.mux.list_payments(user)))
    refund = world.mux.refund_payment(
        user, payment.id, amount=Money("EUR", 100), reason="goodwill", actor="token:app"
    )
    assert refund.id in mine.refunds and refund.amount == 100
    assert world.writes()["new" if system == "legacy" else "legacy"] == before_other
    assert not (set(other.subs) & {sub.id})
    assert world.audit(user) == [
        "billing.subscription_created",
        "billing.plan_changed",
        "billing.subscription_canceled",
        "billing.payment_refunded",
    ]


def test_a_stale_cache_never_routes_a_write_to_the_old_system(world):
    """The cache still says legacy; the database says new: the write goes to new."""
    stale = world.mux.route("u_legacy")
    world.new.create_customer(
        "u_legacy", email=None, name=None, currency="EUR", idempotency_key="flip"
    )
    with transaction(world.sessions) as s:  # flip without telling the cache
        routing.transition(s, "u_legacy", "migrating", actor="t", reason="t")
        routing.transition(
            s, "u_legacy", "new", actor="t", reason="t", system="new", new_customer_id="c"
        )
    world.cache.put(stale)
    assert world.cache.get("u_legacy").system == "legacy"
    legacy_subs = dict(world.legacy.subs)
    sub = world.mux.create_subscription("u_legacy", "plan_basic_eur", actor="t")
    assert sub.id in world.new.subs and world.legacy.subs == legacy_subs
    assert world.cache.get("u_legacy").system == "new", "the write refreshed the cache"


def test_a_stale_cache_never_lets_a_write_through_for_a_migrating_user(world):
    stale = world.mux.route("u_legacy")
    with transaction(world.sessions) as s:
        routing.transition(s, "u_legacy", "migrating", actor="t", reason="t")
    world.cache.put(stale)
    before = world.writes()
    with pytest.raises(UserMigrating):
        world.mux.create_subscription("u_legacy", "plan_basic_eur", actor="t")
    assert world.writes() == before


def test_unknown_user(world):
    for call in (
        lambda: world.mux.summary("nobody"),
        lambda: world.mux.list_subscriptions("nobody"),
        lambda: world.mux.create_subscription("nobody", "plan_basic_eur", actor="t"),
    ):
        with pytest.raises(UnknownUser):
            call()


# -- write guards -------------------------------------------------------------------------


def _all_writes(world: World, user: str, sub_id: str, payment_id: str):
    return {
        "create_subscription": lambda: world.mux.create_subscription(
            user, "plan_basic_eur", actor="t"
        ),
        "change_plan": lambda: world.mux.change_plan(user, sub_id, "plan_pro_eur", actor="t"),
        "cancel": lambda: world.mux.cancel(user, sub_id, at_period_end=False, actor="t"),
        "refund": lambda: world.mux.refund_payment(
            user, payment_id, amount=None, reason=None, actor="t"
        ),
        "offline_payment": lambda: world.mux.record_offline_payment(
            user, Money("EUR", 500), reference="bank-1", paid_at=PAID_AT, actor="t"
        ),
        "offline_refund": lambda: world.mux.record_offline_refund(
            user, Money("EUR", 500), reference="bank-2", refunded_at=PAID_AT, actor="t"
        ),
    }


def test_migrating_refuses_every_write_with_retry_after_but_reads_work(sessions):
    world = World(sessions)
    sub = world.user("u1", "legacy", state="migrating")
    payment = next(iter(world.legacy.payments))
    before = world.writes()
    for name, write in _all_writes(world, "u1", sub.id, payment).items():
        with pytest.raises(UserMigrating) as err:
            write()
        assert err.value.retry_after == MIGRATING_RETRY_AFTER, name
    assert world.writes() == before
    assert world.audit("u1") == []
    assert [s.id for s in world.mux.list_subscriptions("u1")] == [sub.id]
    assert world.mux.summary("u1").subscriptions[0].id == sub.id


@pytest.mark.parametrize("state", ["held", "failed"])
def test_held_and_failed_users_are_read_only(sessions, state):
    world = World(sessions)
    path = {"held": ["held"], "failed": ["migrating", "failed"]}[state]
    sub = world.user("u1", "legacy")
    for step in path:
        world.move("u1", step)
    payment = next(iter(world.legacy.payments))
    before = world.writes()
    for write in _all_writes(world, "u1", sub.id, payment).values():
        with pytest.raises(UserHeld, match=state):
            write()
    assert world.writes() == before
    assert world.mux.list_invoices("u1") and world.mux.list_payments("u1")


@pytest.mark.parametrize(
    ("amount", "error", "message"),
    [
        (Money("EUR", 0), InvalidAmount, "greater than zero"),
        (Money("EUR", -100), InvalidAmount, "greater than zero"),
        (Money("EUR", CEILING_MAJOR * 100 + 1), InvalidAmount, "above the ceiling"),
        (Money("USD", 500), CurrencyMismatch, "billed in EUR, not USD"),
    ],
)
@pytest.mark.parametrize("system", ["legacy", "new"])
def test_bad_money_is_refused_before_any_write(world, system, amount, error, message):
    user = f"u_{system}"
    payment = next(iter(world.backend(system).payments))
    before = world.writes()
    calls = [
        lambda: world.mux.record_offline_payment(
            user, amount, reference="r1", paid_at=PAID_AT, actor="t"
        ),
        lambda: world.mux.record_offline_refund(
            user, amount, reference="r2", refunded_at=PAID_AT, actor="t"
        ),
        lambda: world.mux.refund_payment(user, payment, amount=amount, reason=None, actor="t"),
    ]
    for call in calls:
        with pytest.raises(error, match=message):
            call()
    assert world.writes() == before
    assert world.audit(user) == []


def test_the_ceiling_is_in_major_units_of_the_currency(sessions):
    world = World(sessions)
    world.user("u_jpy", "new", currency="JPY")
    ok = world.mux.record_offline_payment(
        "u_jpy", Money("JPY", CEILING_MAJOR), reference="r", paid_at=PAID_AT, actor="t"
    )
    assert ok.amount == CEILING_MAJOR
    with pytest.raises(InvalidAmount, match="ceiling"):
        world.mux.record_offline_payment(
            "u_jpy", Money("JPY", CEILING_MAJOR + 1), reference="r2", paid_at=PAID_AT, actor="t"
        )


def test_unknown_currency_is_refused():
    with pytest.raises(UnknownCurrency, match="XYZ"):
        Money("XYZ", 100)


def test_plan_in_another_currency_is_refused(world):
    before = world.writes()
    with pytest.raises(CurrencyMismatch, match="JPY"):
        world.mux.create_subscription("u_new", "plan_basic_jpy", actor="t")
    assert world.writes() == before


@pytest.mark.parametrize("reference", ["", "   ", "x" * 121])
def test_offline_money_needs_a_reference(world, reference):
    before = world.writes()
    with pytest.raises(InvalidInput, match="reference"):
        world.mux.record_offline_payment(
            "u_new", Money("EUR", 500), reference=reference, paid_at=PAID_AT, actor="t"
        )
    assert world.writes() == before


# -- idempotency ---------------------------------------------------------------------------


@pytest.mark.parametrize("system", ["legacy", "new"])
def test_offline_payment_double_submit_records_one_payment(world, system):
    user = f"u_{system}"
    backend = world.backend(system)
    count = len(backend.payments)
    first = world.mux.record_offline_payment(
        user, Money("EUR", 2500), reference=" BANK-42 ", paid_at=PAID_AT, actor="support:a"
    )
    again = world.mux.record_offline_payment(
        user, Money("EUR", 2500), reference="BANK-42", paid_at=PAID_AT, actor="support:b"
    )
    assert first.id == again.id and first.reference == "BANK-42"
    assert len(backend.payments) == count + 1
    other = world.mux.record_offline_payment(
        user, Money("EUR", 2500), reference="BANK-43", paid_at=PAID_AT, actor="support:a"
    )
    assert other.id != first.id and len(backend.payments) == count + 2


def test_an_explicit_idempotency_key_makes_a_retry_safe(world):
    one = world.mux.create_subscription("u_new", "plan_basic_eur", actor="t", idempotency_key="k1")
    two = world.mux.create_subscription("u_new", "plan_basic_eur", actor="t", idempotency_key="k1")
    assert one.id == two.id
    assert sum(1 for s in world.new.subs if world.new.owner[s] == "u_new") == 2  # seed + one


# -- new users ---------------------------------------------------------------------------


@pytest.mark.parametrize(("percent", "system"), [("0", "legacy"), ("100", "new")])
def test_create_user_places_by_the_rollout_policy(world, percent, system):
    with transaction(world.sessions) as s:
        set_policy(s, actor="test", new_users_percent=percent)
    cus = world.mux.create_user(
        "fresh", email="f@example.test", name="F", currency="eur", actor="token:app"
    )
    assert "fresh" in world.backend(system).customers
    assert "fresh" not in world.backend("new" if system == "legacy" else "legacy").customers
    info = world.mux.route("fresh")
    assert info == RouteInfo(
        user_id="fresh",
        system=system,
        state=system,
        version=1,
        legacy_customer_id=cus.id if system == "legacy" else None,
        new_customer_id=cus.id if system == "new" else None,
        currency="EUR",
    )
    with pytest.raises(InvalidInput, match="already exists"):
        world.mux.create_user("fresh", email=None, name=None, currency="EUR", actor="t")


def test_create_user_with_an_unknown_currency_writes_nothing(world):
    before = world.writes()
    with pytest.raises(UnknownCurrency):
        world.mux.create_user("fresh", email=None, name=None, currency="XYZ", actor="t")
    assert world.writes() == before
    with pytest.raises(UnknownUser):
        world.mux.route("fresh")


def test_cancel_now_with_refund_mode_reaches_the_backend(world):
    sub = next(iter(world.new.subs.values()))
    done = world.mux.cancel(
        "u_new", sub.id, at_period_end=False, refund=RefundMode.PRORATED, actor="t"
    )
    assert done.status == "canceled"
    assert world.audit("u_new")[-1] == "billing.subscription_canceled"
