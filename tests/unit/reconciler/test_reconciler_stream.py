from __future__ import annotations

import json

import pytest
from billing_strategies import fixed_history, histories, identity_new_doc
from hypothesis import given, settings
from hypothesis import strategies as st

from core.canonical import BillingHistory
from core.errors import ReconciliationError
from reconciler.invariants import PopulationTotals
from reconciler.projection import LegacyEntry, StreamStats, reconcile_stream, reconcile_user


def _lines(docs: list[dict]) -> list[str]:
    return [json.dumps(d) for d in docs]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(histories(), min_size=1, max_size=6, unique_by=lambda h: h.user_id), st.integers(0, 5)
)
def test_stream_agrees_with_the_per_user_typed_path(hs: list[BillingHistory], broken: int) -> None:
    hs = sorted(hs, key=lambda h: h.user_id)
    news = [identity_new_doc(h) for h in hs]
    target = news[broken % len(news)]
    if target["invoices"]:
        target["invoices"][0]["total"] += 1
    target["refunds"] = []
    entries = [LegacyEntry(h.model_dump(mode="json"), cohort="c") for h in hs]
    fast = list(reconcile_stream(entries, _lines(news)))
    slow = list(reconcile_stream(entries, _lines(news), validate=True))
    by_user = {d["user_id"]: BillingHistory.model_validate(d) for d in news}
    legacy = {h.user_id: h for h in hs}
    typed = [
        reconcile_user(
            h.user_id,
            load_legacy=lambda u: (legacy[u], None),
            load_new=by_user.__getitem__,
            cohort="c",
            keep_views=False,
        )[0]
        for h in hs
    ]
    for a, b, c in zip(fast, slow, typed, strict=True):
        assert a.user_id == b.user_id == c.user_id
        assert a.differences == b.differences == c.differences
        assert a.violations == b.violations == c.violations


def test_join_missing_new_users_and_new_only_users() -> None:
    h1, h2, h3 = (fixed_history(u) for u in ("u1", "u2", "u3"))
    native = {
        "user_id": "u0",
        "system": "new",
        "customer": None,
        "refunds": [
            {
                "id": "r",
                "legacy_id": None,
                "currency": "EUR",
                "amount": 1,
                "created_at": "2024-01-01T00:00:00Z",
            }
        ],
    }
    carried = identity_new_doc(fixed_history("u4"))
    new = _lines([native, identity_new_doc(h1), identity_new_doc(h3), carried])
    stats, totals = StreamStats(), PopulationTotals()
    results = list(
        reconcile_stream(
            [LegacyEntry(h.model_dump(mode="json"), cohort="c1") for h in (h1, h2, h3)],
            new,
            stats=stats,
            totals=totals,
        )
    )
    assert [r.user_id for r in results] == ["u1", "u2", "u3", "u4"]
    assert results[0].clean and results[2].clean
    assert {d.kind for d in results[1].differences} == {"missing"}
    assert {d.kind for d in results[3].differences} == {"extra"}
    assert stats.skipped_new_only == 1 and stats.users == 4
    # u2's money is gone from cohort c1; u4's carried-over money appears outside any cohort
    assert {(v.cohort, v.invariant) for v in totals.violations()} == {
        ("c1", "cohort_paid_sum"),
        ("c1", "cohort_refund_sum"),
        (None, "cohort_paid_sum"),
        (None, "cohort_refund_sum"),
    }


def test_unsorted_or_malformed_input_is_a_clear_error() -> None:
    h1, h2 = fixed_history("u1"), fixed_history("u2")
    entries = [LegacyEntry(h.model_dump(mode="json")) for h in (h2, h1)]
    with pytest.raises(ReconciliationError, match="sorted"):
        list(reconcile_stream(entries, []))
    with pytest.raises(ReconciliationError, match="line 1"):
        list(reconcile_stream([], ["{not json"]))
    bad = identity_new_doc(h1)
    bad["invoices"][0]["status"] = "nonsense"
    with pytest.raises(ReconciliationError, match="not a canonical billing history"):
        list(
            reconcile_stream(
                [LegacyEntry(h1.model_dump(mode="json"))], _lines([bad]), validate=True
            )
        )


def test_legacy_entry_from_json() -> None:
    h = fixed_history("u1")
    line = json.dumps(
        {"history": h.model_dump(mode="json"), "cohort": "c1", "since": "2024-05-01T00:00:00Z"}
    )
    entry = LegacyEntry.from_json(line)
    assert (entry.user_id, entry.cohort, entry.since.year) == ("u1", "c1", 2024)
