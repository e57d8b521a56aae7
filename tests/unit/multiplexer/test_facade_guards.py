"""Ownership and money guards of ``BillingMux`` (issue 11): foreign ids, over-refunds,
plan currency on a change, offline money replays and lost answers. Fakes only here; the
same cases run against localstripe + newbilling in tests/integration/multiplexer."""

from __future__ import annotations

import pytest
from test_facade import EUR_PRO, JPY_BASIC, PAID_AT, World

from core.canonical import Interval, Plan
from core.errors import BackendUnavailable, CurrencyMismatch, InvalidAmount, InvalidInput, NotFound
from core.money import Money
from multiplexer import offline_ledger
from multiplexer.models import OfflineMoney


@pytest.fixture
def world(sessions) -> World:
    w = World(sessions)
    w.user("u_a", "new")
    w.user("u_b", "new")
    w.user("u_la", "legacy")
    w.user("u_lb", "legacy")
    return w


def _sub_of(world: World, user: str) -> str:
    return next(s.id for s in world.mux.list_subscriptions(user))


def _pay(world: World, user: str, amount: int = 899) -> str:
    return world.mux.record_offline_payment(
        user, Money("EUR", amount), reference=f"seed-{user}", paid_at=PAID_AT, actor="t"
    ).id


@pytest.mark.parametrize(("a", "b"), [("u_a", "u_b"), ("u_la", "u_lb"), ("u_a", "u_lb")])
def test_another_users_ids_are_404_write_nothing_and_are_audited(world, a, b):
    sub_b, pay_b = _sub_of(world, b), _pay(world, b)
    before = world.writes()
    attempts = [
        lambda: world.mux.cancel(a, sub_b, at_period_end=False, actor="token:app"),
        lambda: world.mux.change_plan(a, sub_b, EUR_PRO.id, actor="token:app"),
        lambda: world.mux.refund_payment(a, pay_b, amount=None, reason=None, actor="token:app"),
        lambda: world.mux.record_offline_refund(
            a, Money("EUR", 100), reference="r1", refunded_at=PAID_AT, payment_id=pay_b,
            actor="token:app",
        ),
        lambda: world.mux.record_offline_payment(
            a, Money("EUR", 100), reference="r2", paid_at=PAID_AT, invoice_id="in_of_b",
            actor="token:app",
        ),
    ]  # fmt: skip
    for attempt in attempts:
        with pytest.raises(NotFound, match=a):
            attempt()
    assert world.writes() == before
    assert world.audit(a).count("security.foreign_id_refused") == len(attempts)
    assert "security.foreign_id_refused" not in world.audit(b)
    with world.sessions() as s:  # no offline decision left behind either
        assert s.query(OfflineMoney).filter_by(user_id=a).count() == 0


@pytest.mark.parametrize("state", ["held", "migrating"])
def test_a_locked_users_records_cannot_be_reached_through_another_user(world, state):
    sub_b, pay_b = _sub_of(world, "u_lb"), _pay(world, "u_lb")
    world.move("u_lb", state)
    before = world.writes()
    with pytest.raises(NotFound):
        world.mux.cancel("u_la", sub_b, at_period_end=False, actor="t")
    with pytest.raises(NotFound):
        world.mux.refund_payment("u_la", pay_b, amount=None, reason=None, actor="t")
    assert world.writes() == before


@pytest.mark.parametrize("system", ["legacy", "new"])
def test_a_refund_above_the_refundable_remainder_is_refused(world, system):
    user = "u_a" if system == "new" else "u_la"
    if system == "legacy":  # the fake refuses offline money on neither side: card-less seed
        pay = world.legacy.record_offline_payment(
            world.mux._ref(world.mux.route(user)), Money("EUR", 899), reference="x",
            paid_at=PAID_AT, invoice_id=None, note=None, idempotency_key="seed",
        ).id  # fmt: skip
    else:
        pay = _pay(world, user)
    before = world.writes()
    with pytest.raises(InvalidAmount, match="left to refund"):
        world.mux.refund_payment(user, pay, amount=Money("EUR", 99_900), reason=None, actor="t")
    with pytest.raises(InvalidAmount, match="left to refund"):
        world.mux.refund_payment(user, pay, amount=Money("EUR", 900), reason=None, actor="t")
    assert world.writes() == before
    world.mux.refund_payment(user, pay, amount=Money("EUR", 899), reason=None, actor="t")
    with pytest.raises(InvalidAmount, match="in full"):
        world.mux.refund_payment(user, pay, amount=None, reason=None, actor="t")


def test_an_offline_refund_on_a_payment_is_held_to_its_remainder(world):
    pay = _pay(world, "u_a", 500)
    with pytest.raises(InvalidAmount, match="left to refund"):
        world.mux.record_offline_refund(
            "u_a", Money("EUR", 501), reference="rf", refunded_at=PAID_AT, payment_id=pay,
            actor="t",
        )  # fmt: skip


def test_change_plan_to_a_plan_in_another_currency_is_refused(world):
    sub = _sub_of(world, "u_a")
    before = world.writes()
    with pytest.raises(CurrencyMismatch, match="JPY"):
        world.mux.change_plan("u_a", sub, JPY_BASIC.id, actor="t")
    assert world.writes() == before


def test_change_plan_refuses_a_plan_unlike_the_subscriptions_currency(world, sessions):
    usd = Plan(id="plan_usd", currency="USD", unit_amount=100, interval=Interval.MONTH)
    world.legacy.plans[usd.id] = usd
    with sessions.begin() as s:  # a route whose currency was never learnt
        s.get(__import__("multiplexer.models").models.Route, "u_a").currency = None
    world.cache.invalidate("u_a")
    with pytest.raises(CurrencyMismatch, match="subscription"):
        world.mux.change_plan("u_a", _sub_of(world, "u_a"), usd.id, actor="t")


def test_identical_offline_payment_without_paid_at_is_a_replay(world):
    kw = dict(reference="BANK-7", paid_at=None, actor="token:app")
    first = world.mux.record_offline_payment("u_a", Money("EUR", 4200), **kw)
    again = world.mux.record_offline_payment(
        "u_a", Money("EUR", 4200), idempotency_key="client-key", **kw
    )
    assert again.id == first.id
    assert sum(1 for p in world.new.payments.values() if p.reference == "BANK-7") == 1


def test_same_reference_with_other_details_is_refused(world):
    world.mux.record_offline_payment(
        "u_a", Money("EUR", 4200), reference="BANK-8", paid_at=None, actor="t"
    )
    before = world.writes()
    with pytest.raises(InvalidInput, match="different details"):
        world.mux.record_offline_payment(
            "u_a", Money("EUR", 4300), reference="BANK-8", paid_at=None, actor="t"
        )
    assert world.writes() == before


def test_a_lost_answer_is_recovered_once(world, monkeypatch):
    real = world.new.record_offline_payment

    def write_then_lose(*a, **kw):  # the write happens, the answer never arrives
        real(*a, **kw)
        raise BackendUnavailable("timeout", backend="new")

    monkeypatch.setattr(world.new, "record_offline_payment", write_then_lose)
    with pytest.raises(BackendUnavailable):
        world.mux.record_offline_payment(
            "u_a", Money("EUR", 4200), reference="BANK-9", paid_at=None, actor="t"
        )
    with world.sessions() as s:
        row = offline_ledger.find(s, "payment", "u_a", "BANK-9")
        assert row is not None and row.status == "pending"
    monkeypatch.setattr(world.new, "record_offline_payment", real)
    from datetime import timedelta

    assert world.mux.recover_offline(older_than=timedelta(0)) == {"recovered": 1, "failed": 0}
    assert sum(1 for p in world.new.payments.values() if p.reference == "BANK-9") == 1
    with world.sessions() as s:
        assert offline_ledger.find(s, "payment", "u_a", "BANK-9").status == "recorded"
    assert world.audit("u_a").count("support.offline_payment") == 1


def test_a_refused_write_frees_the_reference(world):
    before = world.writes()
    with pytest.raises(InvalidInput):  # the fake refuses another currency
        world.mux.record_offline_payment(
            "u_a", Money("JPY", 4200), reference="BANK-10", paid_at=None, actor="t"
        )
    assert world.writes() == before
    with world.sessions() as s:
        assert offline_ledger.find(s, "payment", "u_a", "BANK-10") is None


def test_lost_offline_answers_are_recovered_by_beat():
    from admin.bootstrap import beat_schedule
    from core.settings import load_settings
    from multiplexer.tasks import recover_offline

    assert recover_offline.name == "twinbill.recover_offline"
    tasks = {e["task"] for e in beat_schedule(load_settings()).values()}
    assert "twinbill.recover_offline" in tasks
