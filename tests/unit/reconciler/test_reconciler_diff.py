from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from billing_strategies import CURRENCIES, fixed_history, histories, identity_new, identity_new_doc
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from core.canonical import BillingHistory, InvoiceStatus, PaymentStatus, SubscriptionStatus
from reconciler.diff import diff_docs, diff_histories
from reconciler.findings import DiffKind
from reconciler.rules import CHILDREN, COLLECTIONS, COMPARED, Rule, RuleKind

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ENUMS: dict[tuple[str, str], list[str]] = {
    ("subscription", "status"): [s.value for s in SubscriptionStatus],
    ("invoice", "status"): [s.value for s in InvoiceStatus],
    ("payment", "status"): [s.value for s in PaymentStatus],
    ("subscription_item", "interval"): ["day", "week", "month", "year"],
    ("discount", "duration"): ["once", "forever", "repeating"],
}
NONE_TO = {"percent_off_bp": 1, "amount_off": 1, "duration_in_months": 1, "currency": "USD"}


def slots(doc: dict[str, Any]) -> list[tuple[dict[str, Any], str, str, Rule]]:
    """Every (new-side record dict, record type, field, rule) a mutation can hit."""
    out: list[tuple[dict[str, Any], str, str, Rule]] = []

    def visit(rec: dict[str, Any], kind: str) -> None:
        out.extend((rec, kind, name, rule) for name, _rk, rule in COMPARED[kind])
        for child_field, child in CHILDREN[kind]:
            for c in rec.get(child_field) or ():
                visit(c, child)

    for key, kind in COLLECTIONS:
        value = doc.get(key)
        for rec in (
            (value,) if key == "customer" and value else (() if key == "customer" else value)
        ):
            visit(rec, kind)
    return out


def changed(kind: str, name: str, rule: Rule, value: Any) -> Any:
    if rule.kind is RuleKind.TIMESTAMP:
        if value is None:
            return "2021-01-01T00:00:00Z"
        t = datetime.fromisoformat(value) + timedelta(hours=1)
        return t.isoformat().replace("+00:00", "Z")
    if rule.kind is RuleKind.MAPPED:
        target = rule.mapping.get(value, value)
        return next(s for s in ENUMS[(kind, name)] if s != target)
    if rule.kind is RuleKind.UNORDERED:
        return [*(value or []), "pm_added"]
    if rule.kind is RuleKind.REFERENCE:
        return "n_bogus" if value is None else None
    if (kind, name) in ENUMS:
        return next(s for s in ENUMS[(kind, name)] if s != value)
    if name == "currency" and value is not None:
        return next(c for c in CURRENCIES if c != value)
    if value is None:
        return NONE_TO.get(name, "x")
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value - 1 if name == "percent_off_bp" and value >= 10_000 else value + 1
    if isinstance(value, dict):
        return {**value, "zz": "changed"}
    if isinstance(value, list):  # tax_breakdown: one more (valid) tax line
        return [
            *value,
            {"tax_rate_id": "txr_x", "amount": 1, "inclusive": False, "percentage": None},
        ]
    return value + "x"


@SETTINGS
@given(histories())
def test_identity_mapping_reconciles_clean(legacy: BillingHistory) -> None:
    assert diff_histories(legacy, identity_new(legacy)).clean


@SETTINGS
@given(histories(), st.data())
def test_any_single_field_change_is_found(legacy: BillingHistory, data: st.DataObject) -> None:
    new = identity_new_doc(legacy)
    rec, kind, name, rule = data.draw(st.sampled_from(slots(new)))
    rec[name] = changed(kind, name, rule, rec.get(name))
    found = diff_docs(legacy.model_dump(mode="json"), new).differences
    assert len(found) == 1, found
    (d,) = found
    assert (d.kind, d.user_id, d.record_type, d.record_id, d.field) == (
        DiffKind.CHANGED,
        legacy.user_id,
        kind,
        rec["legacy_id"],
        name,
    )
    assert d.rule == str(rule.kind)
    try:  # the typed path finds the same thing whenever the change is still a valid model
        typed = BillingHistory.model_validate(new)
    except ValidationError:
        return
    assert diff_histories(legacy, typed).differences == found


@SETTINGS
@given(histories(), st.data())
def test_dropped_record_is_missing(legacy: BillingHistory, data: st.DataObject) -> None:
    new = identity_new_doc(legacy)
    keys = [k for k, _ in COLLECTIONS[1:] if new[k]]
    assume(keys)
    key = data.draw(st.sampled_from(keys))
    dropped = new[key].pop(data.draw(st.integers(0, len(new[key]) - 1)))
    missing = [
        d
        for d in diff_docs(legacy.model_dump(mode="json"), new).differences
        if d.kind is DiffKind.MISSING
    ]
    assert [(d.record_id, d.user_id) for d in missing] == [(dropped["legacy_id"], legacy.user_id)]


@SETTINGS
@given(histories(), st.data())
def test_duplicated_record_is_duplicate(legacy: BillingHistory, data: st.DataObject) -> None:
    new = identity_new_doc(legacy)
    keys = [k for k, _ in COLLECTIONS[1:] if new[k]]
    assume(keys)
    key = data.draw(st.sampled_from(keys))
    original = data.draw(st.sampled_from(new[key]))
    twin = copy.deepcopy(original)
    twin["id"] = original["id"] + "_dup"
    new[key].append(twin)
    diffs = diff_docs(legacy.model_dump(mode="json"), new).differences
    dups = [d for d in diffs if d.kind is DiffKind.DUPLICATE]
    assert len(dups) == 1
    assert dups[0].record_id == original["legacy_id"]
    assert dups[0].new_value == [original["id"], twin["id"]]
    assert all(d.kind is DiffKind.DUPLICATE for d in diffs)


@SETTINGS
@given(histories())
def test_fast_path_agrees_with_typed_path_on_sparse_json(legacy: BillingHistory) -> None:
    """An export that omits default-valued fields diffs exactly like the validated model."""
    new = identity_new(legacy)
    sparse = json.loads(new.model_dump_json(exclude_defaults=True))
    assert diff_docs(json.loads(legacy.model_dump_json(exclude_defaults=True)), sparse).clean
    broken = copy.deepcopy(sparse)
    broken["customer"]["balance"] = legacy.customer.balance + 7  # type: ignore[union-attr]
    typed = BillingHistory.model_validate(broken)
    assert diff_docs(legacy.model_dump(mode="json"), broken) == diff_histories(legacy, typed)


def _with_native(legacy: BillingHistory, at: str) -> dict[str, Any]:
    new = identity_new_doc(legacy)
    new["refunds"].append(
        {
            "id": "n_native",
            "legacy_id": None,
            "currency": "USD",
            "amount": 5,
            "created_at": at,
            "payment_id": None,
        }
    )
    return new


@SETTINGS
@given(histories())
def test_native_records_after_migration_are_not_extra(legacy: BillingHistory) -> None:
    since = datetime(2030, 1, 1, tzinfo=UTC)
    ldoc = legacy.model_dump(mode="json")
    after = diff_docs(ldoc, _with_native(legacy, "2030-02-01T00:00:00Z"), since=since)
    assert after.clean
    before = diff_docs(ldoc, _with_native(legacy, "2029-02-01T00:00:00Z"), since=since)
    assert [(d.kind, d.record_id) for d in before.differences] == [(DiffKind.EXTRA, "n_native")]
    no_cutoff = diff_docs(ldoc, _with_native(legacy, "2030-02-01T00:00:00Z"))
    assert [d.kind for d in no_cutoff.differences] == [DiffKind.EXTRA]


@SETTINGS
@given(histories(), st.integers(1, 999_999))
def test_sub_second_and_offset_noise_is_not_a_difference(legacy: BillingHistory, us: int) -> None:
    new = identity_new_doc(legacy)
    for sub in new["subscriptions"]:
        t = datetime.fromisoformat(sub["current_period_end"]).replace(microsecond=us)
        sub["current_period_end"] = t.astimezone(
            __import__("datetime").timezone(timedelta(hours=2))
        ).isoformat()
    assert diff_docs(legacy.model_dump(mode="json"), new).clean


def test_status_rename_is_mapped_not_a_difference() -> None:
    ldoc = fixed_history("u1").model_dump(mode="json")
    ldoc["subscriptions"][0]["status"] = "paused"
    new = identity_new_doc(BillingHistory.model_validate(ldoc))
    new["subscriptions"][0]["status"] = "canceled"
    assert diff_docs(ldoc, new).clean
    new["subscriptions"][0]["status"] = "paused"
    (d,) = diff_docs(ldoc, new).differences
    assert (d.field, d.rule, d.legacy_value, d.new_value) == (
        "status",
        "mapped",
        "paused",
        "paused",
    )


def test_references_resolve_to_legacy_ids_and_name_them() -> None:
    base = {"user_id": "u1", "system": "legacy", "customer": None}
    sub = {
        "id": "sub_1",
        "legacy_id": "sub_1",
        "currency": "EUR",
        "status": "active",
        "created_at": "2024-01-01T00:00:00Z",
        "current_period_start": "2024-01-01T00:00:00Z",
        "current_period_end": "2024-02-01T00:00:00Z",
    }
    sub2 = {**sub, "id": "sub_2", "legacy_id": "sub_2"}
    inv = {
        "id": "in_1",
        "legacy_id": "in_1",
        "currency": "EUR",
        "status": "paid",
        "subscription_id": "sub_1",
        "created_at": "2024-01-01T00:00:00Z",
        "subtotal": 10,
        "total": 10,
    }
    legacy = {**base, "subscriptions": [sub, sub2], "invoices": [inv]}
    new = {
        **base,
        "system": "new",
        "subscriptions": [{**sub, "id": "N1"}, {**sub2, "id": "N2"}],
        "invoices": [{**inv, "id": "NI", "subscription_id": "N1"}],
    }
    assert diff_docs(legacy, new).clean
    new["invoices"][0]["subscription_id"] = "N2"
    (d,) = diff_docs(legacy, new).differences
    assert (d.record_type, d.record_id, d.field, d.legacy_value, d.new_value) == (
        "invoice",
        "in_1",
        "subscription_id",
        "sub_1",
        "sub_2",
    )


def test_missing_customer_and_extra_customer() -> None:
    legacy = fixed_history("u9")
    new = identity_new_doc(legacy)
    new["customer"] = None
    kinds = {
        (d.kind, d.record_type) for d in diff_docs(legacy.model_dump(mode="json"), new).differences
    }
    assert (DiffKind.MISSING, "customer") in kinds
