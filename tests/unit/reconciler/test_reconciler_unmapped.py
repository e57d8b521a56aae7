from __future__ import annotations

from typing import Any

from billing_strategies import fixed_history, identity_new
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.diff import diff_histories
from reconciler.findings import DiffKind
from reconciler.legacy_fields import KNOWN_LEGACY_FIELDS
from reconciler.unmapped import find_unmapped


def raw_snapshot(**extra_sub: Any) -> dict[str, Any]:
    return {
        "customer": {
            "id": "cus_1",
            "object": "customer",
            "email": "a@example.com",
            "livemode": False,
            "created": 1700000000,
            "currency": "eur",
            "balance": 0,
            "tax_exempt": "none",
            "invoice_settings": {"default_payment_method": "pm_1", "footer": "Thanks"},
            "sources": {
                "object": "list",
                "data": [{"id": "card_1", "object": "card", "brand": "Visa", "last4": "4242"}],
                "has_more": False,
                "url": "/v1/customers/cus_1/sources",
            },
            "metadata": {"app_user": "u1"},
        },
        "subscriptions": [
            {
                "id": "sub_1",
                "object": "subscription",
                "status": "active",
                "customer": "cus_1",
                "collection_method": "charge_automatically",
                "tax_percent": None,
                "items": {
                    "object": "list",
                    "data": [
                        {
                            "id": "si_1",
                            "object": "subscription_item",
                            "quantity": 1,
                            "plan": {
                                "id": "pro",
                                "object": "plan",
                                "amount": 1200,
                                "currency": "eur",
                                "interval": "month",
                                "interval_count": 1,
                                "usage_type": "licensed",
                                "product": "prod_1",
                            },
                        }
                    ],
                },
                **extra_sub,
            }
        ],
    }


def test_a_fully_declared_snapshot_has_no_findings() -> None:
    assert find_unmapped("u1", raw_snapshot()) == []


def test_unknown_non_empty_field_is_reported_with_object_and_path() -> None:
    found = find_unmapped(
        "u1", raw_snapshot(tax_percent=19.0, pause_collection=None, default_tax_rates=[])
    )
    assert [
        (d.kind, d.user_id, d.record_type, d.record_id, d.field, d.legacy_value) for d in found
    ] == [(DiffKind.UNMAPPED_FIELD, "u1", "subscription", "sub_1", "tax_percent", 19.0)]


def test_non_default_value_of_a_defaulted_field_is_reported() -> None:
    found = find_unmapped("u1", raw_snapshot(collection_method="send_invoice"))
    assert [d.field for d in found] == ["collection_method"]


def test_nested_plain_objects_use_dotted_paths_and_typed_children_their_own_type() -> None:
    raw = raw_snapshot()
    raw["customer"]["invoice_settings"]["custom_fields"] = None
    raw["customer"]["invoice_settings"]["surprise"] = "x"
    raw["subscriptions"][0]["items"]["data"][0]["plan"]["tiers_mode"] = "graduated"
    found = {(d.record_type, d.record_id, d.field) for d in find_unmapped("u1", raw)}
    assert found == {
        ("customer", "cus_1", "invoice_settings.surprise"),
        ("plan", "pro", "tiers_mode"),
    }


def test_unknown_object_type_is_reported() -> None:
    raw = {"extras": [{"id": "qt_1", "object": "quote", "amount": 5}]}
    (d,) = find_unmapped("u1", raw)
    assert (d.record_type, d.field, d.rule) == (
        "quote",
        "object",
        "unknown legacy object type",
    )


def test_every_table_entry_has_reasons() -> None:
    for kind, known in KNOWN_LEGACY_FIELDS.items():
        assert "id" in known.read or known.rest or kind == "list", kind
        assert not (known.read & set(known.ignored)), kind
        assert all(reason for reason in known.ignored.values()), kind


@settings(max_examples=50, deadline=None)
@given(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=3, max_size=12),
    st.one_of(st.integers(1, 10**6), st.text(min_size=1, max_size=5), st.just(True)),
)
def test_any_undeclared_field_is_found_through_diff_histories(name: str, value: Any) -> None:
    known = KNOWN_LEGACY_FIELDS["subscription"]
    if known.declares(name) or name in known.defaults:
        return
    legacy = fixed_history()
    diff = diff_histories(
        legacy, identity_new(legacy), raw_legacy_fields=raw_snapshot(**{name: value})
    )
    assert [(d.kind, d.field) for d in diff.differences] == [(DiffKind.UNMAPPED_FIELD, name)]
