"""The comparison rules: one table, one row per field of every canonical record.

Every decision about *how* two values may differ lives here and nowhere else,
so a reviewer reads one table instead of hunting ifs through the diff code.
A unit test asserts that each field of each canonical record model has exactly
one rule: adding a field to ``core/canonical.py`` without deciding how it is
reconciled fails CI.

Rule kinds:

``equal``      exact equality of the canonical (JSON) values
``timestamp``  the same instant to the second, in UTC (sub-second noise and
               offsets are not differences; a shifted hour is)
``mapped``     the legacy value, renamed through a declared mapping, must equal
               the new value (values absent from the mapping map to themselves)
``unordered``  lists compared as multisets
``reference``  an id of another record: both sides are resolved to legacy ids
               first (the two systems' own ids differ by design)
``nested``     a list of child records, matched by ``legacy_id`` and diffed
               under their own record type (field-level, not as one blob)
``ignored``    never compared; the reason says why
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from pydantic import BaseModel

from core.canonical import (
    Customer,
    Discount,
    Invoice,
    InvoiceLine,
    Payment,
    Refund,
    Subscription,
    SubscriptionItem,
    TaxRate,
)


class RuleKind(StrEnum):
    EQUAL = "equal"
    TIMESTAMP = "timestamp"
    MAPPED = "mapped"
    UNORDERED = "unordered"
    REFERENCE = "reference"
    NESTED = "nested"
    IGNORED = "ignored"


@dataclass(frozen=True, slots=True)
class Rule:
    kind: RuleKind
    reason: str = ""
    mapping: Mapping[str, str] = field(default_factory=dict)
    target: str = ""  # record type a reference points at / a nested list holds

    def __post_init__(self) -> None:
        if self.kind is RuleKind.IGNORED and not self.reason:
            raise ValueError("an ignored field needs a reason")
        if self.kind in (RuleKind.REFERENCE, RuleKind.NESTED) and not self.target:
            raise ValueError(f"a {self.kind} rule needs a target record type")
        if self.kind is RuleKind.MAPPED and not self.mapping:
            raise ValueError("a mapped rule needs a mapping")


EQUAL = Rule(RuleKind.EQUAL)
TIMESTAMP = Rule(RuleKind.TIMESTAMP)
UNORDERED = Rule(RuleKind.UNORDERED)


def ignored(reason: str) -> Rule:
    return Rule(RuleKind.IGNORED, reason=reason)


def reference(target: str) -> Rule:
    return Rule(RuleKind.REFERENCE, target=target)


def nested(target: str) -> Rule:
    return Rule(RuleKind.NESTED, target=target)


def mapped(mapping: Mapping[str, str]) -> Rule:
    return Rule(RuleKind.MAPPED, mapping=MappingProxyType(dict(mapping)))


ID = ignored("differs by design: each system mints its own ids; records are matched by legacy_id")
LEGACY_ID = ignored("the match key itself: equal by construction for every matched pair")

#: Legacy status -> the status the new system uses for it. The new system has
#: no ``paused``: a paused legacy subscription neither bills nor renews, which
#: the new system spells ``canceled``. Must mirror the migration transform.
SUBSCRIPTION_STATUS_RENAMES: Mapping[str, str] = {"paused": "canceled"}

RULES: Mapping[str, Mapping[str, Rule]] = {
    "customer": {
        "id": ID,
        "legacy_id": LEGACY_ID,
        "currency": EQUAL,
        "user_id": EQUAL,
        "email": EQUAL,
        "name": EQUAL,
        "balance": EQUAL,
        "payment_method_ids": UNORDERED,
        "created_at": ignored(
            "on the new side it is the import time (the import API takes no created_at)"
        ),
        "metadata": EQUAL,
    },
    "subscription_item": {
        "id": ID,
        "legacy_id": LEGACY_ID,
        "plan_code": EQUAL,
        "product_name": EQUAL,
        "unit_amount": EQUAL,
        "quantity": EQUAL,
        "interval": EQUAL,
        "interval_count": EQUAL,
    },
    "subscription": {
        "id": ID,
        "legacy_id": LEGACY_ID,
        "currency": EQUAL,
        "status": mapped(SUBSCRIPTION_STATUS_RENAMES),
        "created_at": TIMESTAMP,
        "current_period_start": TIMESTAMP,
        "current_period_end": TIMESTAMP,
        "trial_start": TIMESTAMP,
        "trial_end": TIMESTAMP,
        "cancel_at_period_end": EQUAL,
        # preflight defers paused / dated-cancel users: both sides must agree on "none"
        "cancel_at": TIMESTAMP,
        "collection_paused": EQUAL,
        "collection_resumes_at": TIMESTAMP,
        "canceled_at": TIMESTAMP,
        "ended_at": TIMESTAMP,
        "items": nested("subscription_item"),
        "tax_rates": nested("tax_rate"),
        "metadata": EQUAL,
    },
    "tax_rate": {
        "id": EQUAL,  # Stripe's txr_ id, carried as the new side's external id
        "legacy_id": LEGACY_ID,
        "display_name": EQUAL,
        "percentage": EQUAL,
        "inclusive": EQUAL,
        "jurisdiction": EQUAL,
        "country": EQUAL,
    },
    "discount": {
        "id": ID,
        "legacy_id": LEGACY_ID,
        "subscription_id": reference("subscription"),
        "coupon_code": EQUAL,
        "percent_off_bp": EQUAL,
        "amount_off": EQUAL,
        "currency": EQUAL,
        "duration": EQUAL,
        "duration_in_months": EQUAL,
        "starts_at": TIMESTAMP,
        "ends_at": TIMESTAMP,
    },
    "invoice_line": {
        "id": ID,
        "legacy_id": LEGACY_ID,
        "description": EQUAL,
        "amount": EQUAL,
        "quantity": EQUAL,
        "period_start": TIMESTAMP,
        "period_end": TIMESTAMP,
        "proration": EQUAL,
        "plan_code": EQUAL,
    },
    "invoice": {
        "id": ID,
        "legacy_id": LEGACY_ID,
        "currency": EQUAL,
        "number": EQUAL,
        "subscription_id": reference("subscription"),
        "status": EQUAL,
        "created_at": TIMESTAMP,
        "period_start": TIMESTAMP,
        "period_end": TIMESTAMP,
        "due_at": TIMESTAMP,
        "paid_at": TIMESTAMP,
        "subtotal": EQUAL,
        "discount_total": EQUAL,
        "tax": EQUAL,
        "tax_breakdown": EQUAL,
        "total": EQUAL,
        "amount_paid": EQUAL,
        "amount_due": EQUAL,
        "balance_applied": EQUAL,
        "paid_out_of_band": EQUAL,
        "metadata": EQUAL,
        "lines": nested("invoice_line"),
    },
    "payment": {
        "id": ID,
        "legacy_id": LEGACY_ID,
        "currency": EQUAL,
        "invoice_id": reference("invoice"),
        "amount": EQUAL,
        "status": EQUAL,
        "method": EQUAL,
        "payment_method_id": EQUAL,  # card payments keep flowing through the same pm_/card_ ids
        "reference": EQUAL,
        "paid_at": TIMESTAMP,
        "amount_refunded": EQUAL,
    },
    "refund": {
        "id": ID,
        "legacy_id": LEGACY_ID,
        "currency": EQUAL,
        "payment_id": reference("payment"),
        "amount": EQUAL,
        "reason": EQUAL,
        "method": EQUAL,
        "reference": EQUAL,
        "created_at": TIMESTAMP,
    },
}

#: The canonical model each record type is validated as.
MODELS: Mapping[str, type[BaseModel]] = {
    "customer": Customer,
    "subscription": Subscription,
    "subscription_item": SubscriptionItem,
    "tax_rate": TaxRate,
    "discount": Discount,
    "invoice": Invoice,
    "invoice_line": InvoiceLine,
    "payment": Payment,
    "refund": Refund,
}

#: Top-level collections of a BillingHistory, in report order: (key, record type).
COLLECTIONS: tuple[tuple[str, str], ...] = (
    ("customer", "customer"),
    ("subscriptions", "subscription"),
    ("discounts", "discount"),
    ("invoices", "invoice"),
    ("payments", "payment"),
    ("refunds", "refund"),
)

#: When a record came into being: decides whether a new-side record without a
#: legacy id was created natively after the migration (not "extra") or before.
RECORD_TIME: Mapping[str, str] = {
    "customer": "created_at",
    "subscription": "created_at",
    "discount": "starts_at",
    "invoice": "created_at",
    "payment": "paid_at",
    "refund": "created_at",
}


def _defaults() -> dict[str, dict[str, object]]:
    """Per record type, the canonical default of every optional field.

    The fast path diffs plain JSON dicts; an export that omits default-valued
    fields must reconcile exactly as the validated model would.
    """
    out: dict[str, dict[str, object]] = {}
    for kind, model in MODELS.items():
        values: dict[str, object] = {}
        for name, info in model.model_fields.items():
            if info.default_factory is not None:
                values[name] = info.default_factory()  # type: ignore[call-arg]
            elif not info.is_required():
                values[name] = info.default
        out[kind] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in values.items()}
    return out


DEFAULTS: Mapping[str, Mapping[str, object]] = _defaults()

#: Per record type, the fields actually compared (kind != ignored, != nested),
#: precomputed for the hot loop: (field, rule kind, rule).
COMPARED: Mapping[str, tuple[tuple[str, RuleKind, Rule], ...]] = {
    kind: tuple(
        (name, rule.kind, rule)
        for name, rule in fields.items()
        if rule.kind not in (RuleKind.IGNORED, RuleKind.NESTED)
    )
    for kind, fields in RULES.items()
}

#: Per record type, its nested child lists: (field, child record type).
CHILDREN: Mapping[str, tuple[tuple[str, str], ...]] = {
    kind: tuple(
        (name, rule.target) for name, rule in fields.items() if rule.kind is RuleKind.NESTED
    )
    for kind, fields in RULES.items()
}


def rule_for(record_type: str, field_name: str) -> Rule:
    return RULES[record_type][field_name]
