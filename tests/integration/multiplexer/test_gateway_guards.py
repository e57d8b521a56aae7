# ruff: noqa: F811 - `world` is the fixture imported from test_gateway_mixed
"""Ownership, locks, money guards and edge hygiene of the gateway, on the real sandbox
(issue 11): localstripe + newbilling, a served ``create_app``, state read back through
each service's own API (``World.both``), never through twinbill's adapters.

* every write route that takes a record id (change-plan, cancel, refunds, offline
  refund on a payment, offline payment on an invoice), with another user's id: 404,
  nothing written on either system, one audit entry of the refusal naming the path user;
  for owners that are legacy, migrated, brand-new, **held** and **migrating**;
* over-refund and change-plan to another currency refused by twinbill on both systems;
* an identical offline payment retried (with and without Idempotency-Key) is a replay;
* NUL/control characters, bad ids, absurd dates: 422 before any write (no orphan).
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from test_gateway_mixed import World, _error, _ok, world  # noqa: F401 - the module fixture

from core.audit import AuditEntry
from core.db import transaction
from multiplexer.models import OfflineMoney, Route
from multiplexer.placement import set_policy

pytestmark = [pytest.mark.localstripe, pytest.mark.newbilling, pytest.mark.slow]


def _refusals(world: World, user_id: str) -> int:
    with world.ctx.sessions() as s:
        return int(
            s.scalar(
                sa.select(sa.func.count())
                .select_from(AuditEntry)
                .where(
                    AuditEntry.resource_id == user_id,
                    AuditEntry.action == "security.foreign_id_refused",
                )
            )
        )


def _records_of(world: World, user_id: str) -> dict[str, str]:
    subs = _ok(world.http.get(f"/users/{user_id}/subscriptions"))
    pays = _ok(world.http.get(f"/users/{user_id}/payments"))
    invs = _ok(world.http.get(f"/users/{user_id}/invoices"))
    card = [p for p in pays if p["amount"] > p["amount_refunded"]]
    assert subs and card and invs, f"{user_id} needs a subscription, a payment and an invoice"
    return {"sub": subs[0]["id"], "pay": card[0]["id"], "inv": invs[0]["id"]}


def _complete(world: World, users: list[str]) -> list[str]:
    """Those users with a subscription, a refundable payment and an invoice."""
    out = []
    for u in users:
        try:
            _records_of(world, u)
        except AssertionError:
            continue
        out.append(u)
    return out


def _foreign_writes(world: World, a: str, b: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
    cur = world.currency[a]
    base = f"/users/{a}"
    return [
        (f"{base}/subscriptions/{b['sub']}/change-plan",
         {"plan_code": f"plan_pro_monthly_{cur.lower()}"}),
        (f"{base}/subscriptions/{b['sub']}/cancel", {"at_period_end": False}),
        (f"{base}/payments/{b['pay']}/refunds", {}),
        (f"{base}/payments/{b['pay']}/refunds", {"amount": 1, "currency": cur}),
        (f"{base}/offline-refunds",
         {"amount": 1, "currency": cur, "reference": "x-b-1", "payment_id": b["pay"]}),
        (f"{base}/offline-payments",
         {"amount": 1, "currency": cur, "reference": "x-b-2", "invoice_id": b["inv"]}),
    ]  # fmt: skip


def _pairs(world: World) -> dict[str, tuple[str, str]]:
    legacy = _complete(world, world.sound_legacy())
    return {
        "legacy->legacy": (legacy[0], legacy[1]),
        "new->migrated": (world.new_users[0], world.migrated[0]),
        "legacy->brand-new": (legacy[0], world.new_users[0]),
        "new->new": (world.new_users[0], world.new_users[1]),
    }


@pytest.mark.parametrize("pair", ["legacy->legacy", "new->migrated", "legacy->brand-new",
                                  "new->new"])  # fmt: skip
def test_another_users_ids_are_404_and_write_nothing(world, pair):
    a, b = _pairs(world)[pair]
    ids = _records_of(world, b)
    before, refusals = world.both(a, b), _refusals(world, a)
    writes = _foreign_writes(world, a, ids)
    for path, body in writes:
        err = _error(world.http.post(path, json=body), 404, "not_found", a)
        assert b not in err["message"], "the answer must not say whose id it is"
    assert world.both(a, b) == before
    assert _refusals(world, a) == refusals + len(writes)
    assert _refusals(world, b) == 0 or pair == "legacy->brand-new"
    with world.ctx.sessions() as s:
        assert s.query(OfflineMoney).filter(OfflineMoney.reference.like("x-b-%")).count() == 0


@pytest.mark.parametrize(("states", "back"), [(["held"], ["legacy"]),
                                              (["migrating"], ["legacy"])])  # fmt: skip
def test_a_held_or_migrating_owner_is_unreachable_through_another_user(world, states, back):
    legacy = _complete(world, world.sound_legacy())
    a, b = legacy[0], legacy[-1]
    ids = _records_of(world, b)
    world.move(b, *states)
    try:
        before = world.both(a, b)
        for path, body in _foreign_writes(world, a, ids):
            _error(world.http.post(path, json=body), 404, "not_found")
        assert world.both(a, b) == before
    finally:
        world.move(b, *back)


def test_over_refund_is_refused_by_twinbill_on_both_systems(world):
    legacy_user = _complete(world, world.sound_legacy())[0]
    for user in (legacy_user, world.new_users[0]):
        cur = world.currency[user]
        pay = next(
            p for p in _ok(world.http.get(f"/users/{user}/payments"))
            if p["amount"] > p["amount_refunded"]
        )  # fmt: skip
        left = pay["amount"] - pay["amount_refunded"]
        before = world.both(user)
        for amount in (left + 1, left * 50 + 1):  # 50x: the 10,000 GBP on 8.99, scaled
            _error(
                world.http.post(f"/users/{user}/payments/{pay['id']}/refunds",
                                json={"amount": amount, "currency": cur}),
                422, "invalid_input", "left to refund",
            )  # fmt: skip
        assert world.both(user) == before, f"{user}: an over-refund reached the backend"


def test_change_plan_to_another_currency_is_refused_on_both_systems(world):
    legacy_user = next(u for u in world.sound_legacy() if world.currency[u] == "EUR")
    for user in (legacy_user, world.new_users[1]):  # EUR on legacy, USD on new
        sub = _ok(world.http.get(f"/users/{user}/subscriptions"))[0]["id"]
        other = "jpy"
        before = world.both(user)
        _error(
            world.http.post(f"/users/{user}/subscriptions/{sub}/change-plan",
                            json={"plan_code": f"plan_pro_monthly_{other}"}),
            422, "invalid_input", "JPY",
        )  # fmt: skip
        assert world.both(user) == before


def test_the_new_service_itself_refuses_a_price_in_another_currency(world):
    user = world.new_users[1]  # USD
    sub = _ok(world.http.get(f"/users/{user}/subscriptions"))[0]["id"]
    before = world.both(user)
    resp = world.new_raw.http.post(
        f"/v1/subscriptions/{sub}/change-plan",
        json={"plan_code": "plan_pro_monthly_jpy", "unit_amount": 2400, "currency": "JPY",
              "interval": "month"},
        headers={"Idempotency-Key": "it-jpy"},
    )  # fmt: skip
    assert resp.status_code == 422 and "currency" in resp.text
    assert world.both(user) == before


def test_an_identical_offline_payment_retried_is_a_replay(world):
    user = world.new_users[0]
    body = {"amount": 1500, "currency": world.currency[user], "reference": "BANK-REPLAY-1"}
    first = _ok(world.http.post(f"/users/{user}/offline-payments", json=body), 201)
    again = _ok(world.http.post(f"/users/{user}/offline-payments", json=body), 201)
    keyed = _ok(
        world.http.post(f"/users/{user}/offline-payments", json=body,
                        headers={"Idempotency-Key": "it-offline-replay"}),
        201,
    )  # fmt: skip
    assert first["id"] == again["id"] == keyed["id"]
    pays = [p for p in _ok(world.http.get(f"/users/{user}/payments"))
            if p["reference"] == "BANK-REPLAY-1"]  # fmt: skip
    assert len(pays) == 1
    other = dict(body, amount=1600)
    _error(world.http.post(f"/users/{user}/offline-payments", json=other), 422,
           "invalid_input", "different details")  # fmt: skip


def _paid(world: World, user: str, reference: str, amount: int) -> dict[str, Any]:
    body = {"amount": amount, "currency": world.currency[user], "reference": reference}
    return _ok(world.http.post(f"/users/{user}/offline-payments", json=body), 201)


def test_an_offline_refund_replayed_after_it_refunded_the_payment_in_full_is_a_replay(world):
    """The remainder check ran before the replay: the retry of a refund that took the
    whole payment answered 422 "already refunded in full" instead of the first refund."""
    user = world.new_users[1]
    pay = _paid(world, user, "BANK-REFUND-REPLAY-P", 1200)
    body = {"amount": 1200, "currency": world.currency[user], "reference": "BANK-REFUND-REPLAY",
            "payment_id": pay["id"]}  # fmt: skip
    path, key = f"/users/{user}/offline-refunds", {"Idempotency-Key": "it-offline-refund-replay"}
    first = _ok(world.http.post(path, json=body, headers=key), 201)
    before = world.both(user)
    assert _ok(world.http.post(path, json=body, headers=key), 201) == first
    assert _ok(world.http.post(path, json=body), 201)["id"] == first["id"]  # same reference
    _error(world.http.post(path, json=dict(body, amount=1100), headers=key), 422,
           "invalid_input", "different details")  # fmt: skip
    other = dict(body, reference="BANK-REFUND-REPLAY-2", amount=1)
    _error(world.http.post(path, json=other, headers=key), 422, "invalid_input",
           "Idempotency-Key")  # the key of another request  # fmt: skip
    assert world.both(user) == before, "a replay or a mismatch wrote something"
    with world.ctx.sessions() as s:
        assert s.query(OfflineMoney).filter_by(reference="BANK-REFUND-REPLAY-2").count() == 0


def test_a_gateway_refund_replayed_after_it_refunded_the_payment_in_full_is_a_replay(world):
    """The remainder check ran before the backend's replay: the retry of a refund that took
    the whole payment answered 422 "already refunded in full" instead of the first refund."""
    user = world.new_users[1]
    pay = _paid(world, user, "BANK-CARD-REFUND-REPLAY-P", 700)
    path, key = f"/users/{user}/payments/{pay['id']}/refunds", {"Idempotency-Key": "it-rf-1"}
    first = _ok(world.http.post(path, json={"reason": "replay"}, headers=key), 201)
    before = world.both(user)
    assert _ok(world.http.post(path, json={"reason": "replay"}, headers=key), 201) == first
    resp = world.http.post(path, json={"reason": "another"}, headers=key)
    assert resp.status_code in (409, 422) and "idempotency" in resp.text.lower()
    _error(world.http.post(path, json={"reason": "replay"}, headers={"Idempotency-Key": "it-rf-2"}),
           422, "invalid_input", "refunded in full")  # a new refund: nothing left  # fmt: skip
    assert world.both(user) == before


# -- edge hygiene: many bad inputs, each 422 (or 404) before any write -------------------------

CONTROL = ["\x00", "\x01", "\x07", "\x08", "\x1b", "\x7f", "\u0000x", "\x1f"]
LINE_BREAKS = ["\n", "\r", "\t"]
BAD_IDS = ["..", "a..b", ".", ".a", "a.", "a/b", "a b", "a%2Fb", "a\\b", "é", "a;b", "x" * 121]
BAD_DATES = [
    "9999-01-01T00:00:00Z", "1999-12-31T23:59:59Z", "0001-01-01T00:00:00Z",
    "2999-06-01T00:00:00Z", "2025-05-01T09:00:00", "not a date", "2025-13-01T00:00:00Z",
]  # fmt: skip


def _hygiene_cases(world: World, user: str) -> list[tuple[str, str, Any, int]]:
    cur = world.currency[user]
    ids = _records_of(world, user)
    base = f"/users/{user}"
    cases: list[tuple[str, str, Any, int]] = []
    offline = {"amount": 100, "currency": cur, "reference": "ok-ref"}
    for ch in CONTROL:
        cases += [
            ("POST", "/users", {"user_id": "nul_user", "currency": cur, "name": f"A{ch}B"}, 422),
            ("POST", "/users", {"user_id": "nul_user", "currency": cur,
                                "email": f"a{ch}@example.test"}, 422),
            ("POST", f"{base}/offline-payments", dict(offline, reference=f"r{ch}1"), 422),
            ("POST", f"{base}/offline-payments", dict(offline, note=f"n{ch}"), 422),
            ("POST", f"{base}/offline-refunds", dict(offline, reference=f"r{ch}2"), 422),
            ("POST", f"{base}/offline-refunds", dict(offline, reason=f"why{ch}"), 422),
            ("POST", f"{base}/payments/{ids['pay']}/refunds",
             {"amount": 1, "currency": cur, "reason": f"x{ch}"}, 422),
            ("POST", f"{base}/subscriptions", {"plan_code": f"plan{ch}"}, 422),
            ("POST", f"{base}/subscriptions/{ids['sub']}/change-plan",
             {"plan_code": f"plan{ch}"}, 422),
            ("POST", f"{base}/offline-payments", dict(offline, currency=f"E{ch}R"), 422),
        ]  # fmt: skip
    for ch in LINE_BREAKS:  # fine in a note, never in a one-line field
        cases += [
            ("POST", "/users", {"user_id": "nul_user", "currency": cur, "name": f"A{ch}B"}, 422),
            ("POST", f"{base}/offline-payments", dict(offline, reference=f"r{ch}3"), 422),
        ]
    for bad in BAD_IDS:
        cases += [
            ("POST", "/users", {"user_id": bad, "currency": cur}, 422),
            ("POST", f"{base}/offline-payments", dict(offline, invoice_id=bad), 422),
            ("POST", f"{base}/offline-refunds", dict(offline, payment_id=bad), 422),
            ("POST", f"{base}/subscriptions", {"plan_code": bad}, 422),
        ]
        if "/" not in bad and "%" not in bad:  # path segments (a slash is another route)
            st = 404 if bad in (".", "..") else 422  # dot segments: resolved by the client
            cases += [
                ("POST", f"/users/{bad}/offline-payments", offline, st),
                ("GET", f"/users/{bad}/summary", None, st),
                ("POST", f"{base}/subscriptions/{bad}/cancel", {"at_period_end": True}, st),
                ("POST", f"{base}/payments/{bad}/refunds", {}, st),
            ]
    for bad in BAD_DATES:
        cases += [
            ("POST", f"{base}/offline-payments", dict(offline, paid_at=bad), 422),
            ("POST", f"{base}/offline-refunds", dict(offline, refunded_at=bad), 422),
        ]
    cases += [
        ("GET", "/no-such-route", None, 404),
        ("DELETE", f"{base}/subscriptions", None, 405),
        ("PUT", f"{base}/offline-payments", offline, 405),
    ]
    return cases


def test_bad_input_at_the_edge_is_refused_before_any_write(world):
    user = world.new_users[0]
    legacy_user = _complete(world, world.sound_legacy())[0]
    with transaction(world.ctx.sessions) as s:  # new users would be placed on legacy now
        set_policy(s, actor="test", new_users_percent="0", reason="it: orphan check")
    try:
        customers = sum(1 for _ in world.ctx.legacy.iter_customers())
        before, audit = world.both(user, legacy_user), world.billing_audit()
        both = _hygiene_cases(world, user) + _hygiene_cases(world, legacy_user)
        cases = list({(m, p, repr(b)): (m, p, b, st) for m, p, b, st in both}.values())
        for method, path, body, status in cases:
            resp = world.http.request(method, path, json=body)
            assert resp.status_code == status, (method, path, body, resp.text)
            err = resp.json()
            assert set(err) == {"error"} and "detail" not in err, err  # the one error body
            assert err["error"]["type"] and err["error"]["message"]
        assert world.both(user, legacy_user) == before
        assert world.billing_audit() == audit
        assert sum(1 for _ in world.ctx.legacy.iter_customers()) == customers, "orphan customer"
        with world.ctx.sessions() as s:
            assert s.get(Route, "nul_user") is None
    finally:
        with transaction(world.ctx.sessions) as s:
            set_policy(s, actor="test", new_users_percent="100", reason="it: restore")
    print(f"gateway edge cases: {len(cases)}")
