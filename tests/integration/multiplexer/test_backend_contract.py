"""One contract, four backends: the in-memory fake, legacy on localstripe (its dialect),
legacy in the current Stripe dialect on the in-process Stripe double
(tests/stripe_current), and new on newbilling.

The same assertions run against each (alisaifee/limits style). Where localstripe
cannot do something the legacy parameter is a strict xfail naming the gap
(docs/legacy-gaps.md), never a silent skip. If the fake passes where a real
backend fails, the fake is wrong.
"""

from __future__ import annotations

import collections
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.canonical import Customer, Interval, Plan, RefundMode, SubscriptionStatus, System
from core.errors import BackendRejected, NotFound
from core.money import Money
from multiplexer.backends.base import BillingBackend, UserRef
from sandbox.faultproxy import route_of

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests"))
from fakes.billing import FakeBillingBackend  # noqa: E402

PLANS = {
    ("EUR", "basic"): (1250, "Basic"),
    ("EUR", "pro"): (2500, "Pro"),
    ("JPY", "basic"): (1200, "Basic"),
    ("JPY", "pro"): (2400, "Pro"),
}


def plan(currency: str, tier: str) -> Plan:
    amount, product = PLANS[(currency, tier)]
    code = f"tb-{tier}-{currency.lower()}-month"
    return Plan(
        id=code,
        legacy_id=code,
        currency=currency,
        product_name=product,
        unit_amount=amount,
        interval=Interval.MONTH,
    )


@dataclass
class Kit:
    backend: BillingBackend
    system: System
    prepare: Callable[[Customer], None] = lambda c: None
    extra: dict[str, Any] = field(default_factory=dict)

    def ref(self, customer: Customer) -> UserRef:
        if self.system is System.LEGACY:
            return UserRef(customer.user_id, legacy_customer_id=customer.id)
        return UserRef(customer.user_id, new_customer_id=customer.id)

    def unknown_ref(self) -> UserRef:
        return UserRef("nobody-" + uuid.uuid4().hex[:8], legacy_customer_id="cus_doesnotexist")


# --- services -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def localstripe() -> Iterator[Any]:
    from sandbox.legacy.launcher import LocalStripe

    with LocalStripe() as ls:
        yield ls


@pytest.fixture(scope="session")
def newbilling(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from sandbox.legacy.launcher import free_loopback_port

    port = free_loopback_port()
    db = tmp_path_factory.mktemp("newbilling") / "nb.db"
    log = (db.parent / "nb.log").open("wb")
    env = dict(os.environ, NEWBILLING_API_TOKENS="tok", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandbox.newbilling",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--database-url",
            f"sqlite:///{db}",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(url + "/v1/users/x/bundle", headers={"Authorization": "Bearer tok"})
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"newbilling did not start: {(db.parent / 'nb.log').read_text()}")
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def _legacy_kit(ls: Any) -> Kit:
    from multiplexer.backends.stripe.backend import StripeLegacyBackend

    ls.reset()
    client = ls.client()
    for (cur, tier), (amount, product) in PLANS.items():
        p = plan(cur, tier)
        prod = f"prod_tb_{tier}"
        try:
            client.v1.products.retrieve(prod)
        except Exception:  # noqa: BLE001 - first plan of the tier creates it
            client.v1.products.create({"id": prod, "name": product})
        client.v1.plans.create(
            {
                "id": p.id,
                "product": prod,
                "amount": amount,
                "currency": cur.lower(),
                "interval": "month",
            }
        )

    def attach_card(customer: Customer) -> None:
        pm = client.v1.payment_methods.create(
            {
                "type": "card",
                "card": {
                    "number": "4242424242424242",
                    "exp_month": 12,
                    "exp_year": 2040,
                    "cvc": "123",
                },
            }
        )
        client.v1.payment_methods.attach(pm.id, {"customer": customer.id})
        client.v1.customers.update(
            customer.id, {"invoice_settings": {"default_payment_method": pm.id}}
        )

    backend = StripeLegacyBackend(client, dialect="localstripe")
    return Kit(backend, System.LEGACY, prepare=attach_card, extra={"ls": ls})


def _current_kit() -> Kit:
    """The legacy backend in the current dialect (the production default) on the double."""
    from multiplexer.backends.stripe.backend import StripeLegacyBackend
    from tests.stripe_current import shapes
    from tests.stripe_current.double import StripeDouble, client_for

    double = StripeDouble()
    for (cur, tier), (amount, product) in PLANS.items():
        double.put("product", shapes.product(f"prod_tb_{tier}", product))
        double.put(
            "price",
            shapes.price(plan(cur, tier).id, amount, cur.lower(), product_id=f"prod_tb_{tier}"),
        )

    def attach_card(customer: Customer) -> None:
        double.get("customer", customer.id)["invoice_settings"]["default_payment_method"] = (
            f"pm_{customer.id}"
        )

    backend = StripeLegacyBackend(client_for(double), dialect="current")
    return Kit(backend, System.LEGACY, prepare=attach_card, extra={"double": double})


def _new_kit(url: str) -> Kit:
    from multiplexer.backends.http_new import HttpNewBackend

    client = httpx.Client(base_url=url, timeout=10, headers={"Authorization": "Bearer tok"})
    client.delete("/_test/data").raise_for_status()
    return Kit(HttpNewBackend(client), System.NEW)


@pytest.fixture
def kit(request: pytest.FixtureRequest) -> Kit:
    name = request.param
    if name == "fake":
        return Kit(FakeBillingBackend(), System.NEW)
    if name == "legacy":
        return _legacy_kit(request.getfixturevalue("localstripe"))
    if name == "current":
        return _current_kit()
    return _new_kit(request.getfixturevalue("newbilling"))


def backends(**legacy_gap: str) -> list[Any]:
    legacy_marks = [pytest.mark.localstripe]
    if legacy_gap:
        legacy_marks.append(pytest.mark.xfail(reason=legacy_gap["gap"], strict=True))
    return [
        pytest.param("fake", id="fake"),
        pytest.param("legacy", id="legacy", marks=legacy_marks),
        pytest.param("current", id="current"),
        pytest.param("new", id="new", marks=pytest.mark.newbilling),
    ]


CURRENCIES = pytest.mark.parametrize("currency", ["EUR", "JPY"])


def subscribed(kit: Kit, currency: str) -> tuple[UserRef, str]:
    user = "u-" + uuid.uuid4().hex[:10]
    cus = kit.backend.create_customer(
        user,
        email=f"{user}@example.test",
        name="Ada",
        currency=currency,
        idempotency_key=f"{user}:cus",
    )
    assert cus.currency == currency and cus.user_id == user
    kit.prepare(cus)
    ref = kit.ref(cus)
    sub = kit.backend.create_subscription(
        ref, plan(currency, "basic"), quantity=1, trial_days=None, idempotency_key=f"{user}:sub"
    )
    return ref, sub.id


# --- the contract ------------------------------------------------------------------------


@CURRENCIES
@pytest.mark.parametrize("kit", backends(), indirect=True)
def test_subscribe_list_and_history(kit: Kit, currency: str) -> None:
    ref, sub_id = subscribed(kit, currency)
    subs = kit.backend.list_subscriptions(ref)
    assert [s.id for s in subs] == [sub_id]
    sub = subs[0]
    assert sub.status is SubscriptionStatus.ACTIVE and sub.currency == currency
    assert sub.items[0].plan_code == plan(currency, "basic").id
    assert sub.recurring_amount == PLANS[(currency, "basic")][0]
    history = kit.backend.get_history(ref)
    assert history.system is kit.system and history.customer is not None
    assert history.customer.currency == currency
    [invoice] = history.invoices
    assert (invoice.currency, invoice.total, invoice.amount_paid) == (
        currency,
        PLANS[(currency, "basic")][0],
        PLANS[(currency, "basic")][0],
    )
    [payment] = history.payments
    assert (payment.currency, payment.amount, payment.method) == (
        currency,
        PLANS[(currency, "basic")][0],
        "card",
    )
    assert payment.invoice_id == invoice.id


@CURRENCIES
@pytest.mark.parametrize("kit", backends(), indirect=True)
def test_change_plan_invoices_proration(kit: Kit, currency: str) -> None:
    ref, sub_id = subscribed(kit, currency)
    sub = kit.backend.change_plan(
        ref, sub_id, plan(currency, "pro"), prorate=True, idempotency_key=f"{ref.user_id}:change"
    )
    assert sub.items[0].plan_code == plan(currency, "pro").id
    invoices = kit.backend.list_invoices(ref)
    prorated = [i for i in invoices if any(li.proration and li.amount < 0 for li in i.lines)]
    assert len(prorated) == 1, invoices
    lines = prorated[0].lines
    assert any(li.amount > 0 for li in lines)
    assert prorated[0].currency == currency
    assert prorated[0].subtotal == sum(li.amount for li in lines)


@pytest.mark.parametrize(
    "kit",
    backends(
        gap="localstripe cannot record offline payments: "
        "no customer balance transactions, paid_out_of_band "
        "answers 500"
    ),
    indirect=True,
)
def test_offline_payment_is_idempotent(kit: Kit) -> None:
    ref, _ = subscribed(kit, "EUR")
    paid_at = datetime(2026, 1, 15, 9, 30, tzinfo=UTC)
    kwargs: dict[str, Any] = dict(
        reference="SEPA-123",
        paid_at=paid_at,
        invoice_id=None,
        note="bank transfer",
        idempotency_key=f"{ref.user_id}:off",
    )
    first = kit.backend.record_offline_payment(ref, Money("EUR", 4999), **kwargs)
    again = kit.backend.record_offline_payment(ref, Money("EUR", 4999), **kwargs)
    assert again.id == first.id
    offline = [p for p in kit.backend.list_payments(ref) if p.method == "offline"]
    assert [(p.amount, p.currency, p.reference) for p in offline] == [(4999, "EUR", "SEPA-123")]


@CURRENCIES
@pytest.mark.parametrize("kit", backends(), indirect=True)
def test_partial_refund(kit: Kit, currency: str) -> None:
    ref, _ = subscribed(kit, currency)
    [payment] = kit.backend.list_payments(ref)
    part = payment.amount // 3
    refund = kit.backend.refund_payment(
        ref,
        payment.id,
        amount=Money(currency, part),
        reason="requested_by_customer",
        idempotency_key=f"{ref.user_id}:refund",
    )
    assert (refund.amount, refund.currency, refund.payment_id) == (part, currency, payment.id)
    history = kit.backend.get_history(ref)
    assert [(r.id, r.amount) for r in history.refunds] == [(refund.id, part)]
    assert {p.id: p.amount_refunded for p in history.payments}[payment.id] == part


@pytest.mark.parametrize("kit", backends(), indirect=True)
def test_cancel_at_period_end_then_now(kit: Kit) -> None:
    ref, sub_id = subscribed(kit, "JPY")
    sub = kit.backend.cancel_subscription(
        ref, sub_id, at_period_end=True, refund=RefundMode.NONE, idempotency_key=f"{ref.user_id}:c1"
    )
    assert sub.cancel_at_period_end and sub.status is SubscriptionStatus.ACTIVE
    assert sub.next_renewal_at is None
    sub = kit.backend.cancel_subscription(
        ref,
        sub_id,
        at_period_end=False,
        refund=RefundMode.NONE,
        idempotency_key=f"{ref.user_id}:c2",
    )
    assert sub.status is SubscriptionStatus.CANCELED and sub.ended_at is not None
    [listed] = kit.backend.list_subscriptions(ref)
    assert listed.status is SubscriptionStatus.CANCELED


@pytest.mark.parametrize(
    "kit",
    backends(gap="localstripe does not set canceled_at when a subscription is deleted"),
    indirect=True,
)
def test_cancel_now_records_canceled_at(kit: Kit) -> None:
    ref, sub_id = subscribed(kit, "EUR")
    sub = kit.backend.cancel_subscription(
        ref, sub_id, at_period_end=False, refund=RefundMode.NONE, idempotency_key=f"{ref.user_id}:c"
    )
    assert sub.canceled_at is not None


@pytest.mark.parametrize("kit", backends(), indirect=True)
def test_unknown_customer_is_not_found(kit: Kit) -> None:
    with pytest.raises(NotFound):
        kit.backend.list_subscriptions(kit.unknown_ref())


@pytest.mark.parametrize("kit", backends(), indirect=True)
def test_plan_in_another_currency_is_rejected(kit: Kit) -> None:
    ref, _ = subscribed(kit, "EUR")
    with pytest.raises(BackendRejected):
        kit.backend.create_subscription(
            ref,
            plan("JPY", "basic"),
            quantity=1,
            trial_days=None,
            idempotency_key=f"{ref.user_id}:bad",
        )


# --- legacy-only capabilities, in both dialects (localstripe and the current API) ---------

LEGACY_DIALECTS = [
    pytest.param("legacy", id="localstripe", marks=pytest.mark.localstripe),
    pytest.param("current", id="current"),
]


@contextlib.contextmanager
def server_counted(kit: Kit) -> Iterator[tuple[Any, Callable[[], dict[str, int]]]]:
    """The kit's legacy backend, and the requests its server received since (by route)."""
    from multiplexer.backends.stripe.backend import StripeLegacyBackend

    if "double" in kit.extra:
        requests, start = kit.extra["double"].requests, len(kit.extra["double"].requests)
        yield (
            kit.backend,
            lambda: dict(collections.Counter(route_of(*r.split(" ")) for r in requests[start:])),
        )
        return
    from sandbox.faultproxy import FaultProxy
    from sandbox.legacy.launcher import make_client

    ls = kit.extra["ls"]
    with FaultProxy(ls.url) as proxy:
        backend = StripeLegacyBackend(make_client(proxy.url, ls.api_key), dialect="localstripe")
        yield backend, lambda: proxy.stats()["routes"]


@pytest.mark.parametrize("kit", LEGACY_DIALECTS, indirect=True)
def test_cancel_for_migration_is_one_marked_request(kit: Kit) -> None:
    """One request per live subscription, marked as the migration's where the dialect can
    carry a mark; repeating it (a crash: same key; a retry: a new key) cancels nothing twice."""
    from multiplexer.backends.stripe import shapes
    from multiplexer.models import Route
    from multiplexer.webhooks.inbound import migration_reason

    ref, sub_id = subscribed(kit, "EUR")
    delete = "DELETE /v1/subscriptions/{id}"
    with server_counted(kit) as (backend, requests):
        first = backend.cancel_for_migration(
            ref, sub_id, migration_id="mig_1", idempotency_key="k1", known_live=True
        )
        assert requests() == {delete: 1}  # no read, no separate mark: one request
        raw = backend._t.subscription(sub_id)
        for key in ("k1", "k2"):  # after a crash (same key); after a lost answer (new key)
            again = backend.cancel_for_migration(
                ref, sub_id, migration_id="mig_1", idempotency_key=key
            )
            assert again.status is SubscriptionStatus.CANCELED
        deletes = requests()[delete]  # localstripe would cancel again: its repeats only read
    assert first.status is SubscriptionStatus.CANCELED
    legacy: Any = kit.backend
    assert legacy._t.subscription(sub_id)["ended_at"] == raw["ended_at"]  # canceled once
    if "double" in kit.extra:  # what Stripe sent about it: one event
        events = [
            e
            for e in kit.extra["double"].all("event")
            if e["data"]["object"]["id"] == sub_id and e["type"].endswith(".deleted")
        ]
    else:
        assert deletes == 1
        events = [{"type": "customer.subscription.deleted", "data": {"object": raw}}]
    wire = legacy._t.wire
    [event] = events
    assert (shapes.migration_mark(event["data"]["object"]) == "mig_1") is wire.cancel_marks
    locked = Route(user_id=ref.user_id, system="legacy", state="migrating")
    assert migration_reason("legacy", event, locked, frozenset())  # suppressed either way
    if wire.cancel_marks:  # ... and by the mark alone, whatever the route says by then
        assert migration_reason("legacy", event, None, frozenset())


@pytest.mark.parametrize("kit", LEGACY_DIALECTS, indirect=True)
def test_inventory_reads_each_customer_with_its_currency(kit: Kit) -> None:
    eur, _ = subscribed(kit, "EUR")
    jpy, _ = subscribed(kit, "JPY")
    backend: Any = kit.backend
    seen = {c.user_id: c.currency for c in backend.iter_customers(page_size=1)}
    assert seen[eur.user_id] == "EUR" and seen[jpy.user_id] == "JPY"


@pytest.mark.parametrize("kit", LEGACY_DIALECTS, indirect=True)
def test_snapshot_maps_to_the_same_history(kit: Kit) -> None:
    ref, sub_id = subscribed(kit, "EUR")
    backend: Any = kit.backend
    snap = backend.snapshot(ref)
    history = backend.map_snapshot(snap)
    assert history == kit.backend.get_history(ref)
    assert [s.id for s in history.subscriptions] == [sub_id]


@pytest.mark.parametrize("kit", LEGACY_DIALECTS, indirect=True)
def test_next_charge_preview_is_the_plan_price(kit: Kit) -> None:
    ref, sub_id = subscribed(kit, "EUR")
    backend: Any = kit.backend
    previews = backend.preview_next_charges(ref)
    [charge] = previews.charges
    assert (charge.id, charge.total, charge.amount_due) == (sub_id, 1250, 1250)
    assert charge.charge_at is not None


@pytest.mark.parametrize(
    "kit",
    [
        pytest.param(
            "legacy",
            id="localstripe",
            marks=[
                pytest.mark.localstripe,
                pytest.mark.xfail(reason="localstripe has no payment records", strict=True),
            ],
        ),
        pytest.param("current", id="current"),
    ],
    indirect=True,
)
def test_offline_refund_is_an_out_of_band_record(kit: Kit) -> None:
    ref, _ = subscribed(kit, "EUR")
    [card] = kit.backend.list_payments(ref)
    when = datetime(2026, 1, 10, tzinfo=UTC)
    refund = kit.backend.record_offline_refund(
        ref,
        Money("EUR", 250),
        reference="BACK-9",
        refunded_at=when,
        payment_id=card.id,
        reason=None,
        idempotency_key=f"{ref.user_id}:rf",
    )
    history = kit.backend.get_history(ref)
    assert [(r.id, r.amount, r.method, r.created_at) for r in history.refunds] == [
        (refund.id, 250, "offline", when)
    ]
    assert history.customer is not None and history.customer.balance == 0
