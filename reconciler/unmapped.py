"""Raw legacy fields that no mapping reads: the silent "forgot a field" bug.

Walks a raw legacy snapshot and checks every typed object against its entry in
``reconciler.legacy_fields.KNOWN_LEGACY_FIELDS`` (carried, derived or dropped, with
uninformative defaults). Any other non-empty field is reported as
``unmapped_field``, naming the object and the dotted path; an object of a type the
table does not know is reported once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.findings import Difference, DiffKind
from reconciler.legacy_fields import KNOWN_LEGACY_FIELDS, KnownFields

_EMPTY: tuple[Any, ...] = (None, "", {}, [])
_NO_DEFAULT = object()


def find_unmapped(user_id: str, raw: Mapping[str, Any]) -> list[Difference]:
    """Every non-empty raw legacy field the table does not declare, once per object."""
    walker = _Walker(user_id)
    walker.children(raw)
    return walker.out


class _Walker:
    __slots__ = ("uid", "out", "seen")

    def __init__(self, uid: str) -> None:
        self.uid = uid
        self.out: list[Difference] = []
        self.seen: set[tuple[str, str]] = set()

    def children(self, value: Any) -> None:
        """Walk a value the table covers: only typed objects inside it are checked."""
        if isinstance(value, dict):
            kind = value.get("object")
            if isinstance(kind, str):
                self.typed(kind, value)
            else:
                for v in value.values():
                    self.children(v)
        elif isinstance(value, list):
            for v in value:
                self.children(v)

    def typed(self, kind: str, obj: Mapping[str, Any]) -> None:
        oid = str(obj.get("id") or "?")
        if (kind, oid) in self.seen:
            return
        if oid != "?":
            self.seen.add((kind, oid))
        known = KNOWN_LEGACY_FIELDS.get(kind)
        if known is None:
            self._report(kind, oid, "object", kind, "unknown legacy object type")
            return
        self.fields(kind, oid, known, obj, "")

    def fields(
        self, kind: str, oid: str, known: KnownFields, obj: Mapping[str, Any], prefix: str
    ) -> None:
        for key, value in obj.items():
            path = prefix + key
            if known.declares(path):
                self.children(value)
                continue
            if value in _EMPTY or known.defaults.get(path, _NO_DEFAULT) == value:
                continue
            if isinstance(value, dict) and "object" not in value:
                self.fields(kind, oid, known, value, path + ".")
                continue
            self._report(kind, oid, path, value, "unmapped")

    def _report(self, kind: str, oid: str, path: str, value: Any, rule: str) -> None:
        self.out.append(
            Difference(DiffKind.UNMAPPED_FIELD, self.uid, kind, oid, path, value, None, rule)
        )
