"""The bulk inventory read in the *current* Stripe dialect: account-wide lists, 100 per page,
grouped per customer and mapped by the adapter's own mapping (no localstripe needed)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from core.canonical import Subscription
from multiplexer import stage
from multiplexer.backends.stripe import bulk
from multiplexer.backends.stripe.backend import StripeLegacyBackend
from multiplexer.facets import compute
from multiplexer.models import LegacyStagedObject

T0 = 1_764_000_000  # 2025-11-24
DAY = 86_400


class FakeList:
    """One account-wide list endpoint with Stripe's paging (limit, starting_after)."""

    def __init__(self, log: list[str], name: str, objects: list[dict]) -> None:
        self.log, self.name, self.objects = log, name, objects

    def __call__(self, params: dict) -> dict:
        self.log.append(self.name)
        start = 0
        if params.get("starting_after"):
            start = 1 + [o["id"] for o in self.objects].index(params["starting_after"])
        page = self.objects[start : start + params["limit"]]
        return {"object": "list", "data": page, "has_more": start + len(page) < len(self.objects)}


def _price(interval="month"):
    return {
        "id": f"price_{interval}",
        "object": "price",
        "currency": "eur",
        "unit_amount": 990,
        "recurring": {"interval": interval, "interval_count": 1},
        "product": "prod_1",
    }


def _sub(sid, cus, status="active", **extra):
    return {
        "id": sid,
        "object": "subscription",
        "customer": cus,
        "status": status,
        "currency": "eur",
        "created": T0 - 40 * DAY,
        "cancel_at_period_end": False,
        "discounts": [],
        "automatic_tax": {"enabled": False},
        "items": {
            "object": "list",
            "has_more": False,
            "data": [
                {
                    "id": f"si_{sid}",
                    "object": "subscription_item",
                    "price": _price(),
                    "quantity": 1,
                    "current_period_start": T0 - 10 * DAY,
                    "current_period_end": T0 + 20 * DAY,
                    "discounts": [],
                }
            ],
        },
        "metadata": {},
        **extra,
    }


def _customer(i, pm_type="card"):
    return {
        "id": f"cus_{i:04d}",
        "object": "customer",
        "email": f"u{i}@example.test",
        "name": None,
        "balance": 0,
        "created": T0 - 50 * DAY,
        "currency": "eur",
        "metadata": {"app_user_id": f"u{i}"},
        "invoice_settings": {
            "default_payment_method": {"id": f"pm_{i}", "object": "payment_method", "type": pm_type}
        },
    }


@pytest.fixture
def account():
    customers = [_customer(i) for i in range(250)]
    customers[1] = _customer(1, pm_type="sepa_debit")
    customers[2]["balance"] = -700  # a credit, in Stripe's sign
    subs = [_sub(f"sub_{i:04d}", f"cus_{i:04d}") for i in range(250)]
    subs[0] = _sub("sub_0000", "cus_0000", "trialing", trial_start=T0 - DAY, trial_end=T0 + 5 * DAY)
    subs[3] = _sub(
        "sub_0003",
        "cus_0003",
        pause_collection={"behavior": "void", "resumes_at": None},
        automatic_tax={"enabled": True},
    )
    subs[4] = _sub("sub_0004", "cus_0004", cancel_at=T0 + 9 * DAY)
    subs.append(_sub("sub_gone", "cus_deleted"))  # a deleted customer's leftover
    log: list[str] = []
    v1 = SimpleNamespace(
        customers=SimpleNamespace(list=FakeList(log, "customers", customers)),
        subscriptions=SimpleNamespace(list=FakeList(log, "subscriptions", subs)),
        invoices=SimpleNamespace(list=FakeList(log, "invoices", [])),
        charges=SimpleNamespace(list=FakeList(log, "charges", [])),
        invoice_items=SimpleNamespace(list=FakeList(log, "invoice items", [])),
        credit_notes=SimpleNamespace(list=FakeList(log, "credit notes", [])),
        products=SimpleNamespace(
            retrieve=lambda pid: log.append("product") or {"id": pid, "name": "Basic"}
        ),
    )
    lists = {
        "/v1/customers": v1.customers.list,
        "/v1/subscriptions": v1.subscriptions.list,
        "/v1/invoices": v1.invoices.list,
        "/v1/charges": v1.charges.list,
        "/v1/invoiceitems": v1.invoice_items.list,
        "/v1/credit_notes": v1.credit_notes.list,
    }

    def raw_request(method: str, path: str, **params):  # the lists are read as JSON pages
        assert method == "get", (method, path)
        return SimpleNamespace(data=lists[path](params))

    client = SimpleNamespace(v1=v1, raw_request=raw_request)
    backend = StripeLegacyBackend(client, dialect="current")
    return backend, log


def _facets(account):
    backend, log = account
    total, entries = backend.read_inventory()
    out = {e.user_id: compute(e.history, e.features) for e in entries}
    return total, out, log


def test_the_whole_account_costs_one_request_per_page_of_100(account):
    total, facets, log = _facets(account)
    assert total == 250 and len(facets) == 250
    # 250 customers, 251 subscriptions: 3 pages each; empty lists: 1 page each; the
    # catalogue's product once (a Price names it by id)
    once = ["invoices", "charges", "invoice items", "credit notes", "product"]
    assert sorted(log) == sorted(["customers"] * 3 + ["subscriptions"] * 3 + once)


def test_current_dialect_facets_are_read_through_the_mapping(account):
    _, f, _ = _facets(account)
    assert (f["u0"]["trial"], f["u0"]["status"], f["u0"]["subscriptions"]) == (
        True,
        "trialing",
        1,
    )
    assert f["u1"]["payment_method"] == "sepa_debit" and f["u1"]["complexity"] == 1
    assert f["u2"]["credit_balance"] == 700
    assert f["u3"]["tax"] == "automatic"
    assert f["u9"]["complexity"] == 0 and f["u9"]["interval"] == "month"


@pytest.mark.skipif(
    "collection_paused" not in Subscription.model_fields,
    reason="the canonical model does not read pause_collection/cancel_at yet (issue 10)",
)
def test_paused_collection_and_dated_cancels_are_facets(account):
    _, f, _ = _facets(account)
    assert f["u3"]["paused"] is True
    assert f["u4"]["scheduled_cancel"] == "dated"


def test_a_customer_the_mapping_cannot_read_is_an_entry_with_a_problem(account):
    backend, _ = account
    tiered = backend.client.v1.subscriptions.list.objects[7]
    tiered["items"]["data"][0]["price"]["unit_amount"] = None
    _, entries = backend.read_inventory()
    bad = next(e for e in entries if e.user_id == "u7")
    assert bad.history is None and "unit_amount" in bad.problem
    assert bad.customer is not None and bad.customer.id == "cus_0007"
    f = compute(bad.history, bad.features, currency="EUR", problem=bad.problem)
    assert f["readable"] is False


def test_the_inventory_kept_in_the_database_equals_the_one_in_memory(account, sessions):
    """``users sync`` keeps the read's objects in the database (a big account does not fit
    in memory): the entries are the in-memory read's, in the customer list's order, read
    from the rows a batch at a time; dropping the scope leaves no row."""
    backend, _ = account
    _, in_memory = backend.read_inventory()
    expected = [(e.user_id, e.snapshot.objects, e.problem) for e in in_memory]
    staged = stage.DbStage(sessions, "users sync:test", max_age=0)
    loads: list[int] = []
    real_load = staged.load
    staged.load = lambda ids: loads.append(len(ids)) or real_load(ids)  # type: ignore[method-assign]
    total, entries = backend.read_inventory(stage=staged)
    got = [(e.user_id, e.snapshot.objects, e.problem) for e in entries]
    assert total == 250 and got == expected
    assert loads and max(loads) <= bulk.LOAD_BATCH < total  # never the whole account at once
    stage.drop(sessions, "users sync:test")
    with sessions() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(LegacyStagedObject)) == 0
