"""Field-by-field diff of two canonical billing histories (pure: no I/O).

The engine works on the canonical *JSON* form of a history (what
``BillingHistory.model_dump(mode="json")`` produces and what the bulk NDJSON
export carries), so the per-user path (validated models) and the bulk path
(plain dicts straight from ``json.loads``) run the very same comparisons;
:func:`diff_histories` is the typed entry point. Every comparison is driven by
:mod:`reconciler.rules`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

from core.canonical import BillingHistory
from reconciler.findings import Difference, DiffKind, UserDiff
from reconciler.rules import (
    CHILDREN,
    COLLECTIONS,
    COMPARED,
    DEFAULTS,
    RECORD_TIME,
    RULES,
    Rule,
    RuleKind,
)
from reconciler.unmapped import find_unmapped

Doc = Mapping[str, Any]
#: Record types other records point at (see the ``reference`` rules).
REFERENCED = (("subscriptions", "subscription"), ("invoices", "invoice"), ("payments", "payment"))
_MISSING = object()

_EQUAL = RuleKind.EQUAL
_TIMESTAMP = RuleKind.TIMESTAMP
_MAPPED = RuleKind.MAPPED
_UNORDERED = RuleKind.UNORDERED
_REFERENCE = RuleKind.REFERENCE


def diff_histories(
    legacy: BillingHistory,
    new: BillingHistory,
    *,
    raw_legacy_fields: Mapping[str, Any] | None = None,
    since: datetime | None = None,
) -> UserDiff:
    """Diff the legacy view of a user against the new system's view.

    ``raw_legacy_fields`` is the raw legacy snapshot (``RawSnapshot.objects``):
    any non-empty field in it that no mapping reads is reported. ``since`` is
    the migration time: new-side records without a legacy id created at or
    after it are the new system's own activity, not extra records.
    """
    return diff_docs(
        legacy.model_dump(mode="json"),
        new.model_dump(mode="json"),
        raw_legacy_fields=raw_legacy_fields,
        since=since,
        user_id=legacy.user_id,
    )


def diff_docs(
    legacy: Doc,
    new: Doc,
    *,
    raw_legacy_fields: Mapping[str, Any] | None = None,
    since: datetime | None = None,
    user_id: str | None = None,
) -> UserDiff:
    """The engine, over canonical JSON dicts (the bulk fast path calls this directly)."""
    uid = user_id or legacy.get("user_id") or new.get("user_id") or "?"
    out: list[Difference] = []
    ctx = _Context(uid, out, since)
    for key, kind in COLLECTIONS:
        ctx.diff_list(kind, _records(legacy, key), _records(new, key))
    if raw_legacy_fields:
        out.extend(find_unmapped(uid, raw_legacy_fields))
    return UserDiff(uid, tuple(out))


def _records(doc: Doc, key: str) -> Sequence[Doc]:
    value = doc.get(key)
    if value is None:
        return ()
    if key == "customer":
        return (value,)
    return value  # type: ignore[no-any-return]


def legacy_key(record: Doc) -> str:
    """A legacy-side record's legacy id (``legacy_id`` equals ``id`` there)."""
    return record.get("legacy_id") or record["id"]  # type: ignore[no-any-return]


def legacy_refs(doc: Doc) -> dict[str, dict[str, str]]:
    return {kind: {r["id"]: legacy_key(r) for r in _records(doc, key)} for key, kind in REFERENCED}


def new_refs(doc: Doc) -> dict[str, dict[str, str]]:
    """new id -> legacy id; natively-created targets resolve to ``new:<id>``."""
    return {
        kind: {r["id"]: r.get("legacy_id") or f"new:{r['id']}" for r in _records(doc, key)}
        for key, kind in REFERENCED
    }


def to_second(value: Any) -> int | None:
    """An instant (ISO string or datetime) as whole UTC seconds; None when unparseable."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return math.floor(value.timestamp())


def iso_second(seconds: int | None) -> str | None:
    """Whole UTC seconds back to the canonical ISO form (``...Z``)."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat().replace("+00:00", "Z")


def same_value(kind: RuleKind, mapping: Mapping[str, str], a: Any, b: Any) -> bool:
    """Do two (non-reference) values agree under a rule? Used by tests and the view."""
    if kind is _EQUAL:
        return bool(a == b)
    if kind is _TIMESTAMP:
        return a == b or (a is not None and b is not None and to_second(a) == to_second(b))
    if kind is _MAPPED:
        return bool(mapping.get(a, a) == b) if isinstance(a, str) else bool(a == b)
    if kind is _UNORDERED:
        return a == b or _multiset(a) == _multiset(b)
    return bool(a == b)


def _multiset(value: Any) -> Counter[Any]:
    if not value:
        return Counter()
    try:
        return Counter(value)
    except TypeError:  # unhashable items: compare by their stable repr
        return Counter(repr(v) for v in value)


class _Context:
    """Per-user state of one diff: where findings go and how ids resolve."""

    __slots__ = ("uid", "out", "nrefs", "since")

    def __init__(self, uid: str, out: list[Difference], since: datetime | None) -> None:
        self.uid = uid
        self.out = out
        # new id -> legacy id of every new-side record others point at, filled while
        # diffing: COLLECTIONS lists each referenced type before the types pointing at it.
        # Legacy-side references need no resolving: there ``legacy_id`` is ``id``.
        self.nrefs: dict[str, dict[str, str]] = {kind: {} for _key, kind in REFERENCED}
        self.since = None if since is None else math.floor(since.timestamp())

    def _native_after_migration(self, kind: str, record: Doc) -> bool:
        if self.since is None:
            return False
        field = RECORD_TIME.get(kind)
        at = to_second(record.get(field)) if field else None
        return at is not None and at >= self.since

    def diff_list(self, kind: str, legacy: Sequence[Doc], new: Sequence[Doc]) -> None:
        register = self.nrefs.get(kind)
        if register is not None:
            for nrec in new:
                register[nrec["id"]] = nrec.get("legacy_id") or f"new:{nrec['id']}"
        if len(legacy) == len(new):  # the common case: same records in the same order
            for lrec, nrec in zip(legacy, new, strict=True):
                if nrec.get("legacy_id") != (lrec.get("legacy_id") or lrec["id"]):
                    break
            else:
                for lrec, nrec in zip(legacy, new, strict=True):
                    self.compare(kind, nrec["legacy_id"], lrec, nrec)
                return
        out, uid = self.out, self.uid
        lmap: dict[str, Doc] = {}
        for rec in legacy:
            lmap.setdefault(legacy_key(rec), rec)
        nmap: dict[str, Doc] = {}
        dups: dict[str, list[str]] = {}
        for rec in new:
            lid = rec.get("legacy_id")
            if lid is None:
                if not self._native_after_migration(kind, rec):
                    out.append(
                        Difference(
                            DiffKind.EXTRA, uid, kind, rec["id"], None, None, rec["id"], "match"
                        )
                    )
                continue
            first = nmap.get(lid)
            if first is None:
                nmap[lid] = rec
            else:
                dups.setdefault(lid, [first["id"]]).append(rec["id"])
        for lid, lrec in lmap.items():
            nrec = nmap.get(lid)
            if nrec is None:
                out.append(Difference(DiffKind.MISSING, uid, kind, lid, None, lid, None, "match"))
            else:
                self.compare(kind, lid, lrec, nrec)
        for lid, nrec in nmap.items():
            if lid not in lmap:
                out.append(
                    Difference(DiffKind.EXTRA, uid, kind, lid, None, None, nrec["id"], "match")
                )
        for lid, ids in dups.items():
            out.append(Difference(DiffKind.DUPLICATE, uid, kind, lid, None, lid, ids, "match"))

    def _identical(self, kind: str, lrec: Doc, nrec: Doc) -> bool:
        """The common case at C speed: every compared field equal, no rename involved.

        One ``itemgetter`` pulls the plainly comparable fields of both records
        (a sparse record raises KeyError and takes the field-by-field path);
        references are then resolved to legacy ids and compared.
        """
        shape = _SHAPES[kind]
        try:
            if shape.plain(lrec) != shape.plain(nrec):
                return False
        except KeyError:
            return False
        for name, mapping in shape.mapped:
            if lrec[name] in mapping:
                return False
        for name, target in shape.refs:
            a, b = lrec.get(name), nrec.get(name)
            if a is None and b is None:
                continue
            if a is None or b is None:
                return False
            if a != self.nrefs[target].get(b, b):
                return False
        return True

    def compare(self, kind: str, lid: str, lrec: Doc, nrec: Doc) -> None:
        if not self._identical(kind, lrec, nrec):
            self._compare_fields(kind, lid, lrec, nrec)
        for name, child in CHILDREN[kind]:
            self.diff_list(child, lrec.get(name) or (), nrec.get(name) or ())

    def _compare_fields(self, kind: str, lid: str, lrec: Doc, nrec: Doc) -> None:
        defaults = DEFAULTS[kind]
        lget, nget = lrec.get, nrec.get
        for name, rk, rule in COMPARED[kind]:
            a = lget(name, _MISSING)
            b = nget(name, _MISSING)
            if a == b and rk in _SAME_IS_EQUAL:
                continue
            if a is _MISSING:
                a = defaults.get(name)
            if b is _MISSING:
                b = defaults.get(name)
            if rk is _EQUAL:
                if a == b:
                    continue
            elif rk is _TIMESTAMP:
                if a == b or (a is not None and b is not None and to_second(a) == to_second(b)):
                    continue
            elif rk is _REFERENCE:
                if b is not None:
                    b = self.nrefs[rule.target].get(b, b)
                if a == b:
                    continue
            elif same_value(rk, rule.mapping, a, b):
                continue
            self.out.append(Difference(DiffKind.CHANGED, self.uid, kind, lid, name, a, b, str(rk)))


@dataclass(frozen=True, slots=True)
class _Shape:
    plain: Callable[[Doc], Any]  # itemgetter of the fields where equal values always agree
    mapped: tuple[tuple[str, Mapping[str, str]], ...]
    refs: tuple[tuple[str, str], ...]


_SAME_IS_EQUAL = frozenset({_EQUAL, _TIMESTAMP, _UNORDERED})


def _shape(fields: Mapping[str, Rule]) -> _Shape:
    plain = [n for n, r in fields.items() if r.kind in _SAME_IS_EQUAL or r.kind is _MAPPED]
    return _Shape(
        plain=itemgetter(*plain) if len(plain) > 1 else (lambda d: (d[plain[0]],)),
        mapped=tuple((n, r.mapping) for n, r in fields.items() if r.kind is _MAPPED),
        refs=tuple((n, r.target) for n, r in fields.items() if r.kind is _REFERENCE),
    )


_SHAPES: dict[str, _Shape] = {kind: _shape(fields) for kind, fields in RULES.items()}
