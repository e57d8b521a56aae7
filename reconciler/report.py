"""A reconciliation report: scope, who, when, per-user results and summary counts.

``Report.to_dict`` is the format-independent body: the JSON renderer prints it,
the database stores it, and docs/reconciler.md documents it (schema_version 1).
Counts are exact for every user checked; per-user detail can be capped for
population-wide runs (``ReportBuilder(keep=...)``) so memory stays flat.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from core.db import utcnow
from reconciler.findings import Difference
from reconciler.invariants import InvariantViolation

SCHEMA_VERSION = 1
EXAMPLES_PER_GROUP = 3
SCOPE_KINDS = ("user", "users", "cohort", "all")


@dataclass(frozen=True, slots=True)
class UserResult:
    user_id: str
    cohort: str | None
    differences: tuple[Difference, ...]
    violations: tuple[InvariantViolation, ...]
    checked_at: datetime
    #: Comparable projections of both sides (for the HTML side-by-side view).
    legacy_view: dict[str, Any] | None = None
    new_view: dict[str, Any] | None = None

    @property
    def clean(self) -> bool:
        return not self.differences and not self.violations

    def counts_by_kind(self) -> dict[str, int]:
        counts = Counter(str(d.kind) for d in self.differences)
        counts.update(v.invariant for v in self.violations)
        return dict(sorted(counts.items()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "cohort": self.cohort,
            "clean": self.clean,
            "checked_at": _iso(self.checked_at),
            "differences": [d.to_dict() for d in self.differences],
            "violations": [v.to_dict() for v in self.violations],
        }


@dataclass(slots=True)
class Summary:
    users_checked: int = 0
    users_clean: int = 0
    users_skipped: int = 0  # on the new side only, with nothing carried over
    differences: int = 0
    violations: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    by_invariant: Counter[str] = field(default_factory=Counter)
    #: (kind, record_type, field) -> count, and up to EXAMPLES_PER_GROUP examples.
    by_field: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    examples: dict[tuple[str, str, str], list[Difference]] = field(default_factory=dict)

    @property
    def users_with_differences(self) -> int:
        return self.users_checked - self.users_clean

    def add(self, result: UserResult) -> None:
        self.users_checked += 1
        self.users_clean += result.clean
        self.differences += len(result.differences)
        self.violations += len(result.violations)
        for d in result.differences:
            key = (str(d.kind), d.record_type, d.field or "")
            self.by_kind[key[0]] += 1
            self.by_field[key] += 1
            examples = self.examples.setdefault(key, [])
            if len(examples) < EXAMPLES_PER_GROUP:
                examples.append(d)
        for v in result.violations:
            self.by_invariant[v.invariant] += 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "users_checked": self.users_checked,
            "users_clean": self.users_clean,
            "users_with_differences": self.users_with_differences,
            "users_skipped": self.users_skipped,
            "differences": self.differences,
            "violations": self.violations,
            "by_kind": dict(sorted(self.by_kind.items())),
            "by_invariant": dict(sorted(self.by_invariant.items())),
            "by_field": [
                {
                    "kind": kind,
                    "record_type": record_type,
                    "field": fld or None,
                    "count": count,
                    "examples": [
                        d.to_dict() for d in self.examples.get((kind, record_type, fld), [])
                    ],
                }
                for (kind, record_type, fld), count in sorted(
                    self.by_field.items(), key=lambda kv: (kv[0][0], -kv[1], kv[0][1], kv[0][2])
                )
            ],
        }


@dataclass(slots=True)
class Report:
    scope_kind: str
    scope_value: str | None
    created_by: str
    created_at: datetime = field(default_factory=utcnow)
    results: list[UserResult] = field(default_factory=list)
    population_violations: list[InvariantViolation] = field(default_factory=list)
    summary: Summary = field(default_factory=Summary)
    results_truncated: bool = False
    id: int | None = None

    def __post_init__(self) -> None:
        if self.scope_kind not in SCOPE_KINDS:
            raise ValueError(f"scope kind must be one of {SCOPE_KINDS}, got {self.scope_kind!r}")

    @property
    def clean(self) -> bool:
        return (
            self.summary.differences == 0
            and self.summary.violations == 0
            and not self.population_violations
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "report": {
                "id": self.id,
                "created_at": _iso(self.created_at),
                "created_by": self.created_by,
                "scope": {"kind": self.scope_kind, "value": self.scope_value},
            },
            "clean": self.clean,
            "summary": self.summary.to_dict(),
            "population_violations": [v.to_dict() for v in self.population_violations],
            "results_truncated": self.results_truncated,
            "users": [r.to_dict() for r in self.results],
        }


class ReportBuilder:
    """Folds results into a report one at a time.

    ``keep`` bounds how many per-user results are held (unclean users first
    come, first kept; clean users are kept only while under the bound); the
    summary counts every user regardless.
    """

    def __init__(self, report: Report, *, keep: int | None = None) -> None:
        self.report = report
        self.keep = keep
        self._clean_kept = 0

    def add(self, result: UserResult) -> None:
        self.report.summary.add(result)
        results = self.report.results
        if self.keep is None or len(results) < self.keep:
            results.append(result)
            self._clean_kept += result.clean
            return
        self.report.results_truncated = True
        if result.clean or not self._clean_kept:
            return
        for i, kept in enumerate(results):
            if kept.clean:  # make room: a finding is worth more than a clean user
                results[i] = result
                self._clean_kept -= 1
                break

    def add_all(self, results: Iterable[UserResult]) -> Report:
        for result in results:
            self.add(result)
        return self.report


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")
