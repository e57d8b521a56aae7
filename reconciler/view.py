"""The comparable projection of one side: what a person reads in the side-by-side diff.

Both sides are brought to the same shape by the same rules before they are
shown next to each other: records keyed and sorted by legacy id, ignored
fields dropped, references resolved to legacy ids, timestamps cut to the
second in UTC, unordered lists sorted and legacy values renamed through their
declared mapping. What still differs line by line is what the diff reports.
"""

from __future__ import annotations

import json
from typing import Any

from reconciler.diff import Doc, iso_second, legacy_key, legacy_refs, new_refs, to_second
from reconciler.rules import COLLECTIONS, DEFAULTS, RULES, RuleKind


def comparable(doc: Doc | None, *, side: str) -> dict[str, Any]:
    """``side`` is ``"legacy"`` or ``"new"``: it decides how ids become legacy ids."""
    if doc is None:
        return {}
    refs = legacy_refs(doc) if side == "legacy" else new_refs(doc)
    out: dict[str, Any] = {"user_id": doc.get("user_id")}
    for key, kind in COLLECTIONS:
        value = doc.get(key)
        if key == "customer":
            out[key] = None if value is None else _record(kind, value, side, refs)
        else:
            out[key] = _records(kind, value or (), side, refs)
    return out


def _key(rec: Doc, side: str) -> str:
    if side == "legacy":
        return legacy_key(rec)
    return rec.get("legacy_id") or f"new:{rec['id']}"


def _records(kind: str, recs: Any, side: str, refs: dict[str, dict[str, str]]) -> list[Any]:
    views = [_record(kind, r, side, refs) for r in recs]
    return sorted(views, key=lambda v: str(v["legacy_id"]))


def _record(kind: str, rec: Doc, side: str, refs: dict[str, dict[str, str]]) -> dict[str, Any]:
    view: dict[str, Any] = {"legacy_id": _key(rec, side)}
    defaults = DEFAULTS[kind]
    for name, rule in RULES[kind].items():
        if rule.kind is RuleKind.IGNORED:
            continue
        value = rec.get(name, defaults.get(name))
        if rule.kind is RuleKind.NESTED:
            value = _records(rule.target, value or (), side, refs)
        elif rule.kind is RuleKind.TIMESTAMP and value is not None:
            seconds = to_second(value)
            value = iso_second(seconds) if seconds is not None else value
        elif rule.kind is RuleKind.REFERENCE and value is not None:
            value = refs[rule.target].get(value, value)
        elif rule.kind is RuleKind.UNORDERED and value:
            value = sorted(value, key=repr)
        elif rule.kind is RuleKind.MAPPED and side == "legacy" and isinstance(value, str):
            value = rule.mapping.get(value, value)
        view[name] = value
    return view


def pretty_lines(view: dict[str, Any]) -> list[str]:
    """Stable pretty JSON, one line per element (the unit the side-by-side aligns)."""
    return json.dumps(view, indent=2, ensure_ascii=False, default=str).splitlines()
