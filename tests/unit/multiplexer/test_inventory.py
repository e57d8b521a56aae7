from __future__ import annotations

import pytest

from core.audit import AuditEntry
from core.canonical import Customer
from core.errors import InvalidInput
from multiplexer.inventory import import_mapping, read_mapping_csv, sync_customers
from multiplexer.models import Route


def _customer(cid, user_id, **kw):
    return Customer(
        id=cid,
        legacy_id=cid,
        user_id=user_id,
        currency=kw.pop("currency", "EUR"),
        email=kw.pop("email", f"{user_id}@example.test"),
        metadata={"twinbill_config": "simple_monthly"},
        **kw,
    )


def _audit_count(sessions):
    with sessions() as s:
        return s.query(AuditEntry).count()


def test_sync_creates_routes_and_rerunning_changes_nothing(sessions):
    customers = [
        _customer("cus_1", "u1"),
        _customer("cus_2", "u2", currency="JPY"),
        _customer("cus_3", ""),
    ]
    first = sync_customers(sessions, customers, actor="test")
    assert (first.created, first.updated, first.unchanged, len(first.skipped)) == (2, 0, 0, 1)
    audits = _audit_count(sessions)
    again = sync_customers(sessions, customers, actor="test")
    assert (again.created, again.updated, again.unchanged, len(again.skipped)) == (0, 0, 2, 1)
    assert _audit_count(sessions) == audits  # a no-op sync writes no audit entries
    with sessions() as s:
        u2 = s.get(Route, "u2")
        # the sandbox's twinbill_config tag is not a facet: facets come from data
        assert (u2.state, u2.currency, u2.facets) == ("legacy", "JPY", {"currency": "JPY"})


def test_sync_picks_up_changes_with_an_audited_version_bump(sessions):
    sync_customers(sessions, [_customer("cus_1", "u1")], actor="test")
    report = sync_customers(
        sessions, [_customer("cus_1", "u1", email="new@example.test")], actor="test"
    )
    assert report.updated == 1
    with sessions() as s:
        route = s.get(Route, "u1")
        assert (route.email, route.version) == ("new@example.test", 2)


def test_two_customers_claiming_one_user_is_reported_and_changes_nothing(sessions):
    sync_customers(sessions, [_customer("cus_1", "u1")], actor="test")
    report = sync_customers(sessions, [_customer("cus_9", "u1")], actor="test")
    assert [c["customer_id"] for c in report.conflicts] == ["cus_9"]
    assert "also claims it" in report.conflicts[0]["reason"]
    with sessions() as s:
        assert s.get(Route, "u1").legacy_customer_id == "cus_1"


def test_one_conflicting_customer_never_aborts_the_sync_of_the_others(sessions):
    """Before: one conflict raised and the batch rolled back (0 of 41 routes created)."""
    customers = [_customer(f"cus_{i}", f"u{i}") for i in range(40)]
    customers.insert(17, _customer("cus_dup", "u3"))  # claims a user another customer has
    report = sync_customers(sessions, customers, actor="test")
    assert report.created == 40
    assert [(c["customer_id"], c["user_id"]) for c in report.conflicts] == [("cus_dup", "u3")]
    with sessions() as s:
        assert s.query(Route).count() == 40
        assert s.get(Route, "u3").legacy_customer_id == "cus_3"


def test_a_customer_relabelled_to_another_user_is_a_conflict_not_a_crash(sessions):
    sync_customers(sessions, [_customer("cus_1", "u1")], actor="test")
    # the customer's metadata now names u2: a unique-constraint violation before
    report = sync_customers(
        sessions, [_customer("cus_1", "u2"), _customer("cus_2", "u3")], actor="test"
    )
    assert report.created == 1 and len(report.conflicts) == 1
    assert "is linked to user 'u1'" in report.conflicts[0]["reason"]
    with sessions() as s:
        assert s.get(Route, "u2") is None and s.get(Route, "u1").legacy_customer_id == "cus_1"


def test_inventory_facets_are_refreshed_without_a_version_bump(sessions):
    from core.canonical import Interval, Plan, System
    from multiplexer.backends.base import UserRef
    from multiplexer.inventory import sync_inventory
    from tests.fakes.billing import FakeBillingBackend

    legacy = FakeBillingBackend("legacy", System.LEGACY)
    plan = Plan(id="p", currency="EUR", unit_amount=990, interval=Interval.MONTH)
    legacy.plans["p"] = plan
    cus = legacy.create_customer("u1", email=None, name=None, currency="EUR", idempotency_key="c")
    ref = UserRef("u1", cus.id)
    legacy.create_subscription(ref, plan, quantity=1, trial_days=None, idempotency_key="s1")
    first = sync_inventory(sessions, legacy.read_inventory()[1], actor="test")
    assert first.created == 1
    with sessions() as s:
        f = s.get(Route, "u1").facets
    assert (f["subscriptions"], f["interval"], f["complexity"]) == (1, "month", 0)
    legacy.create_subscription(ref, plan, quantity=3, trial_days=None, idempotency_key="s2")
    audits = _audit_count(sessions)
    again = sync_inventory(sessions, legacy.read_inventory()[1], actor="test")
    assert (again.refreshed, again.updated) == (1, 0)
    with sessions() as s:
        route = s.get(Route, "u1")
        assert (route.facets["subscriptions"], route.facets["seats"], route.version) == (2, 3, 1)
    assert _audit_count(sessions) == audits
    assert sync_inventory(sessions, legacy.read_inventory()[1], actor="test").unchanged == 1


def test_csv_mapping_links_customers_without_metadata(sessions, tmp_path):
    path = tmp_path / "map.csv"
    path.write_text("user_id,legacy_customer_id\nu7,cus_7\n")
    assert import_mapping(sessions, read_mapping_csv(path), actor="test").created == 1
    assert import_mapping(sessions, read_mapping_csv(path), actor="test").unchanged == 1
    # a later sync finds the customer although it carries no app_user_id
    report = sync_customers(sessions, [_customer("cus_7", "")], actor="test")
    assert report.updated == 1 and not report.skipped


@pytest.mark.parametrize("body", ["u1\n", "u1,cus_1\nu1,cus_2\n", "u1,cus_1\nu2,cus_1\n", ",cus\n"])
def test_bad_csv_is_refused_whole(sessions, tmp_path, body):
    path = tmp_path / "bad.csv"
    path.write_text(body)
    with pytest.raises(InvalidInput):
        import_mapping(sessions, read_mapping_csv(path), actor="test")
    with sessions() as s:
        assert s.query(Route).count() == 0
