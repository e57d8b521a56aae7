"""Next-charge equivalence: the ``prove`` step's comparison. Pure, one rule table.

Two ``NextCharges`` (what each system says it will charge a user next, from its own
preview endpoint) are paired subscription by subscription on the legacy id and
compared field by field under ``CHARGE_RULES``; the user-level fields under
``USER_RULES``. A subscription that will not charge again (state ``none``) may be
absent on the other side; any other unpaired subscription is a difference: a
charge only one system will make is a double bill or a lost one.

Rule kinds: ``equal`` (exact), ``timestamp`` (same instant within ``tolerance``
seconds: previews are second-resolution on both sides), ``amount`` (integer minor
units within ``tolerance``: 0 everywhere; money is exact), ``multiset`` (lists
compared as multisets of the listed keys), ``ignored`` (never compared; a reason).
A unit test holds every ``NextCharge`` field to exactly one rule.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.canonical import BillingState, NextCharge, NextCharges
from reconciler.findings import Difference, DiffKind

RECORD_TYPE = "next_charge"


@dataclass(frozen=True, slots=True)
class ChargeRule:
    kind: str  # equal | timestamp | amount | multiset | ignored
    tolerance: int = 0
    keys: tuple[str, ...] = ()
    reason: str = ""

    def describe(self) -> str:
        if self.kind in ("timestamp", "amount"):
            return f"{self.kind}(±{self.tolerance})"
        return self.kind


EQUAL = ChargeRule("equal")
SAME_SECOND = ChargeRule("timestamp", tolerance=1)
EXACT_MONEY = ChargeRule("amount", tolerance=0)

CHARGE_RULES: Mapping[str, ChargeRule] = {
    "id": ChargeRule("ignored", reason="each system's own subscription id; paired by legacy_id"),
    "legacy_id": ChargeRule("ignored", reason="the pairing key itself"),
    "currency": EQUAL,
    "state": EQUAL,
    "until": SAME_SECOND,
    "charge_at": SAME_SECOND,
    "subtotal": EXACT_MONEY,
    "discount": EXACT_MONEY,
    "tax": EXACT_MONEY,
    "tax_breakdown": ChargeRule(
        "multiset",
        keys=("tax_rate_id", "amount", "inclusive"),
        reason="legacy previews name each rate by id, not its percentage",
    ),
    "total": EXACT_MONEY,
    "amount_due": EXACT_MONEY,
}

USER_RULES: Mapping[str, ChargeRule] = {
    "user_id": ChargeRule("ignored", reason="the user both previews were asked about"),
    "system": ChargeRule("ignored", reason="legacy on one side, new on the other by design"),
    "currency": EQUAL,
    "balance": EXACT_MONEY,  # a credit that became a debt (or vanished) fails here
    "charges": ChargeRule("ignored", reason="compared one by one under CHARGE_RULES"),
    "source": ChargeRule("ignored", reason="which endpoint answered: provenance, not billing"),
}


@dataclass(frozen=True, slots=True)
class ProveResult:
    user_id: str
    differences: tuple[Difference, ...]
    legacy: NextCharges
    new: NextCharges

    @property
    def clean(self) -> bool:
        return not self.differences

    def to_dict(self) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "differences": [d.to_dict() for d in self.differences],
            "legacy": self.legacy.model_dump(mode="json"),
            "new": self.new.model_dump(mode="json"),
        }

    def summary(self) -> str:
        shown = "; ".join(
            f"{d.where}: legacy {d.legacy_value!r} != new {d.new_value!r}"
            for d in self.differences[:3]
        )
        more = f" (+{len(self.differences) - 3} more)" if len(self.differences) > 3 else ""
        return f"next charges differ: {shown}{more}"


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, tuple):
        return [_json(v) for v in value]
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return value.value if hasattr(value, "value") else value


def _same(rule: ChargeRule, a: Any, b: Any) -> bool:
    if rule.kind == "timestamp":
        if a is None or b is None:
            return a is b
        return abs((a - b).total_seconds()) <= rule.tolerance
    if rule.kind == "amount":
        if a is None or b is None:
            return a is b
        return bool(abs(a - b) <= rule.tolerance)
    if rule.kind == "multiset":
        as_keys = [Counter(tuple(getattr(x, k) for k in rule.keys) for x in v) for v in (a, b)]
        return as_keys[0] == as_keys[1]
    return bool(a == b)


def _compare(
    rules: Mapping[str, ChargeRule], a: Any, b: Any, user_id: str, record_id: str
) -> list[Difference]:
    out = []
    for name, rule in rules.items():
        if rule.kind == "ignored":
            continue
        left, right = getattr(a, name), getattr(b, name)
        if not _same(rule, left, right):
            out.append(
                Difference(
                    kind=DiffKind.CHANGED,
                    user_id=user_id,
                    record_type=RECORD_TYPE,
                    record_id=record_id,
                    field=name,
                    legacy_value=_json(left),
                    new_value=_json(right),
                    rule=rule.describe(),
                )
            )
    return out


def _charges(c: NextCharge) -> bool:
    return c.state is not BillingState.NONE or c.charge_at is not None or c.amount_due != 0


def compare_next_charges(legacy: NextCharges, new: NextCharges) -> ProveResult:
    """Every difference between the two systems' next charges for one user."""
    uid = legacy.user_id
    diffs = _compare(USER_RULES, legacy, new, uid, "customer")
    by_legacy = {c.legacy_id or c.id: c for c in new.charges}
    seen: set[str] = set()
    for old in legacy.charges:
        key = old.legacy_id or old.id
        seen.add(key)
        other = by_legacy.get(key)
        if other is None:
            if _charges(old):
                diffs.append(_unpaired(DiffKind.MISSING, uid, key, old, None))
            continue
        diffs += _compare(CHARGE_RULES, old, other, uid, key)
    for key, other in by_legacy.items():
        if key not in seen and _charges(other):
            diffs.append(_unpaired(DiffKind.EXTRA, uid, key, None, other))
    return ProveResult(uid, tuple(diffs), legacy, new)


def _unpaired(
    kind: DiffKind, uid: str, key: str, old: NextCharge | None, new: NextCharge | None
) -> Difference:
    def brief(c: NextCharge | None) -> Any:
        if c is None:
            return None
        return {"state": c.state.value, "charge_at": _json(c.charge_at), "amount_due": c.amount_due}

    return Difference(
        kind=kind,
        user_id=uid,
        record_type=RECORD_TYPE,
        record_id=key,
        field=None,
        legacy_value=brief(old),
        new_value=brief(new),
        rule="present on both sides",
    )
