"""Who a cohort filter selects: field checks and the by-facet preview (pure functions)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

from core.errors import InvalidInput
from migration.cohorts import Candidate
from multiplexer import facets as facets_of

#: The inventory's facets: one definition, in ``multiplexer.facets``.
FACETS = facets_of.NAMES


def known_fields(pool: Sequence[Candidate]) -> set[str]:
    return set(FACETS)


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
                if k in FACETS:  # not the raw inputs (next_renewal_at, reasons...)
                    out[k][facets_of.bucket(k, v)] += 1
    return {k: dict(sorted(v.items())) for k, v in sorted(out.items())}
