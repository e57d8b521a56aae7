from __future__ import annotations

import pytest

from core import canonical
from reconciler.rules import COLLECTIONS, MODELS, RULES, Rule, RuleKind

RECORD_MODELS = {
    "customer": canonical.Customer,
    "subscription": canonical.Subscription,
    "subscription_item": canonical.SubscriptionItem,
    "tax_rate": canonical.TaxRate,
    "discount": canonical.Discount,
    "invoice": canonical.Invoice,
    "invoice_line": canonical.InvoiceLine,
    "payment": canonical.Payment,
    "refund": canonical.Refund,
}


@pytest.mark.parametrize("kind", sorted(RECORD_MODELS))
def test_every_canonical_field_has_exactly_one_rule(kind: str) -> None:
    model = RECORD_MODELS[kind]
    assert MODELS[kind] is model
    assert set(RULES[kind]) == set(model.model_fields), (
        f"{kind}: fields without a rule: {set(model.model_fields) - set(RULES[kind])}; "
        f"rules for fields that no longer exist: {set(RULES[kind]) - set(model.model_fields)}"
    )


def test_every_record_model_in_core_canonical_is_covered() -> None:
    records = {
        name
        for name, obj in vars(canonical).items()
        if isinstance(obj, type)
        and issubclass(obj, canonical._Record)
        and obj not in (canonical._Record, canonical._Priced, canonical.Plan)
        and obj is not canonical.NextCharge  # a preview, not history: reconciler/next_charge.py
    }
    assert records == {m.__name__ for m in RECORD_MODELS.values()}


def test_history_collections_are_all_diffed() -> None:
    fields = set(canonical.BillingHistory.model_fields) - {"user_id", "system"}
    assert fields == {key for key, _ in COLLECTIONS}


def test_ignored_rules_carry_reasons_and_targets_exist() -> None:
    for kind, fields in RULES.items():
        for name, rule in fields.items():
            if rule.kind is RuleKind.IGNORED:
                assert len(rule.reason) > 10, (kind, name)
            if rule.kind in (RuleKind.REFERENCE, RuleKind.NESTED):
                assert rule.target in RULES, (kind, name)


def test_rule_validation() -> None:
    with pytest.raises(ValueError):
        Rule(RuleKind.IGNORED)
    with pytest.raises(ValueError):
        Rule(RuleKind.REFERENCE)
    with pytest.raises(ValueError):
        Rule(RuleKind.MAPPED)
