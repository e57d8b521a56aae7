"""One application read answered by both systems, compared under the reconciler's rules.

The shadow rehearsal's facade comparison (``multiplexer.scientist``): the legacy answer
the application got and the new system's answer from the user's shadow import (for a
list read, the import's whole history: references resolve to legacy ids). Lists
of records go through the same field-by-field engine as a reconciliation
(``reconciler.diff.diff_docs`` and ``reconciler.rules``); a summary's own fields are
compared here under the same rule kinds. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from core.canonical import BillingHistory, BillingSummary
from reconciler.diff import diff_docs, new_refs, to_second
from reconciler.findings import Difference, DiffKind
from reconciler.rules import COLLECTIONS, RULES, RuleKind

#: read -> the history collection its records belong to
LISTS = {
    "list_subscriptions": "subscriptions",
    "list_invoices": "invoices",
    "list_payments": "payments",
}
RECORD_TYPE = "summary"
#: a summary's own fields: (field, rule kind); ``system`` differs by design (legacy/new),
#: ``customer`` and ``subscriptions`` are records, diffed by the reconciler's table
SUMMARY_FIELDS = (
    ("next_renewal_at", "timestamp"),
    ("open_invoices", "equal"),
    ("balance", "equal"),
    ("currency", "equal"),
)


def _docs(records: Sequence[BaseModel]) -> list[dict[str, Any]]:
    return [r.model_dump(mode="json") for r in records]


def _resolved(history: BillingHistory, key: str) -> list[dict[str, Any]]:
    """One collection of the new side's history, its references to other records (an
    invoice's ``subscription_id``) turned into their legacy ids, as a full diff would."""
    doc = history.model_dump(mode="json")
    refs = new_refs(doc)
    kind = dict(COLLECTIONS)[key]
    fields = [(n, r.target) for n, r in RULES[kind].items() if r.kind is RuleKind.REFERENCE]
    out = []
    for record in doc.get(key) or []:
        for name, target in fields:
            if record.get(name) is not None:
                record[name] = refs[target].get(record[name], record[name])
        out.append(record)
    return out


def compare_read(op: str, user_id: str, legacy: Any, new: Any) -> list[Difference]:
    """Every difference between two answers to the read ``op`` for one user."""
    if op in LISTS:
        key = LISTS[op]
        records = _resolved(new, key) if isinstance(new, BillingHistory) else _docs(new)
        return list(diff_docs({key: _docs(legacy)}, {key: records}, user_id=user_id).differences)
    if op == "summary":
        return _summary(user_id, legacy, new)
    raise ValueError(f"no comparison for read {op!r}")


def _summary(user_id: str, legacy: BillingSummary, new: BillingSummary) -> list[Difference]:
    docs = [
        {
            "customer": s.customer.model_dump(mode="json") if s.customer else None,
            "subscriptions": _docs(s.subscriptions),
        }
        for s in (legacy, new)
    ]
    out = list(diff_docs(docs[0], docs[1], user_id=user_id).differences)
    for name, kind in SUMMARY_FIELDS:
        a, b = getattr(legacy, name), getattr(new, name)
        same = a == b or (kind == "timestamp" and to_second(a) == to_second(b) is not None)
        if not same:
            out.append(
                Difference(
                    DiffKind.CHANGED,
                    user_id,
                    RECORD_TYPE,
                    user_id,
                    name,
                    a.isoformat() if hasattr(a, "isoformat") else a,
                    b.isoformat() if hasattr(b, "isoformat") else b,
                    kind,
                )
            )
    return out
