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
    assert first.as_dict() == {"created": 2, "updated": 0, "unchanged": 0, "skipped": 1}
    audits = _audit_count(sessions)
    again = sync_customers(sessions, customers, actor="test")
    assert again.as_dict() == {"created": 0, "updated": 0, "unchanged": 2, "skipped": 1}
    assert _audit_count(sessions) == audits  # a no-op sync writes no audit entries
    with sessions() as s:
        u2 = s.get(Route, "u2")
        assert (u2.state, u2.currency, u2.facets["configuration"]) == (
            "legacy",
            "JPY",
            "simple_monthly",
        )


def test_sync_picks_up_changes_with_an_audited_version_bump(sessions):
    sync_customers(sessions, [_customer("cus_1", "u1")], actor="test")
    report = sync_customers(
        sessions, [_customer("cus_1", "u1", email="new@example.test")], actor="test"
    )
    assert report.updated == 1
    with sessions() as s:
        route = s.get(Route, "u1")
        assert (route.email, route.version) == ("new@example.test", 2)


def test_two_customers_claiming_one_user_is_refused(sessions):
    sync_customers(sessions, [_customer("cus_1", "u1")], actor="test")
    with pytest.raises(InvalidInput, match="also claims it"):
        sync_customers(sessions, [_customer("cus_9", "u1")], actor="test")


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
