"""Who a cohort filter selects: field checks and the by-facet preview (pure functions)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

from core.errors import InvalidInput
from migration.cohorts import Candidate

#: Facets every synced route has; others come from what the inventory recorded.
FACETS = ("configuration", "currency")


def known_fields(pool: Sequence[Candidate]) -> set[str]:
    return {*FACETS, "complexity", *(k for c in pool for k in c.facets)}


def check_fields(pool: Sequence[Candidate], fields: Iterable[str], *, option: str) -> None:
    """Unknown filter or stratify fields are an error, not a filter that matches nobody."""
    known = known_fields(pool)
    unknown = sorted(set(fields) - known)
    if unknown:
        raise InvalidInput(
            f"{option}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )


def by_facet(pool: Sequence[Candidate], user_ids: Iterable[str]) -> dict[str, dict[str, int]]:
    """How a selection splits over each facet (``cohort create --preview``)."""
    chosen = set(user_ids)
    out: dict[str, Counter[str]] = defaultdict(Counter)
    for c in pool:
        if c.user_id in chosen:
            for k, v in c.facets.items():
                out[k][str(v)] += 1
    return {k: dict(sorted(v.items())) for k, v in sorted(out.items())}
