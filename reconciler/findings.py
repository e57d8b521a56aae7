"""What a reconciliation finds about one user: differences between the two systems."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class DiffKind(StrEnum):
    MISSING = "missing"  # on legacy, not on new
    EXTRA = "extra"  # on new, not on legacy (and not created natively after the migration)
    DUPLICATE = "duplicate"  # two new records carry the same legacy id
    CHANGED = "changed"  # a field differs per its rule
    UNMAPPED_FIELD = "unmapped_field"  # a raw legacy field no mapping reads


@dataclass(frozen=True, slots=True)
class Difference:
    """One finding, naming the user, the record and the field.

    ``record_id`` is the legacy id of the record (the new id for an extra
    record that carries none); values are JSON-ready (timestamps as ISO
    strings, references resolved to legacy ids).
    """

    kind: DiffKind
    user_id: str
    record_type: str
    record_id: str
    field: str | None
    legacy_value: Any
    new_value: Any
    rule: str

    @property
    def where(self) -> str:
        base = f"{self.record_type} {self.record_id}"
        return f"{base}.{self.field}" if self.field else base

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": str(self.kind),
            "user_id": self.user_id,
            "record_type": self.record_type,
            "record_id": self.record_id,
            "field": self.field,
            "legacy_value": self.legacy_value,
            "new_value": self.new_value,
            "rule": self.rule,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Difference:
        return cls(
            kind=DiffKind(data["kind"]),
            user_id=data["user_id"],
            record_type=data["record_type"],
            record_id=data["record_id"],
            field=data["field"],
            legacy_value=data["legacy_value"],
            new_value=data["new_value"],
            rule=data["rule"],
        )


@dataclass(frozen=True, slots=True)
class UserDiff:
    user_id: str
    differences: tuple[Difference, ...] = ()

    @property
    def clean(self) -> bool:
        return not self.differences
