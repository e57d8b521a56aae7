from __future__ import annotations

import copy
from datetime import UTC, datetime

from billing_strategies import fixed_history, histories, identity_new_doc
from hypothesis import given, settings

from core.canonical import BillingHistory
from reconciler.invariants import PopulationTotals, check_user


def _docs(uid: str = "u1") -> tuple[dict, dict]:
    legacy = fixed_history(uid)
    return legacy.model_dump(mode="json"), identity_new_doc(legacy)


@settings(max_examples=100, deadline=None)
@given(histories())
def test_identity_migration_keeps_every_invariant(legacy: BillingHistory) -> None:
    check = check_user(legacy.model_dump(mode="json"), identity_new_doc(legacy))
    assert check.violations == ()
    assert check.legacy == check.new


def test_dropped_refund_breaks_the_refund_sum_per_user_and_per_cohort() -> None:
    ldoc, ndoc = _docs()
    ndoc["refunds"] = []
    check = check_user(ldoc, ndoc, cohort="c1")
    assert [(v.invariant, v.subject, v.legacy_value, v.new_value) for v in check.violations] == [
        ("refund_sum", "EUR", 300, 0)
    ]
    pop = PopulationTotals()
    pop.add("c1", check)
    pop.add("c1", check_user(*_docs("u2"), cohort="c1"))
    (v,) = pop.violations()
    assert (v.invariant, v.cohort, v.legacy_value, v.new_value) == (
        "cohort_refund_sum",
        "c1",
        600,
        300,
    )


def test_changed_amount_breaks_the_paid_sum() -> None:
    ldoc, ndoc = _docs()
    ndoc["invoices"][0]["amount_paid"] = 120  # cents mapped as whole units
    (v,) = check_user(ldoc, ndoc).violations
    assert (v.invariant, v.subject, v.legacy_value, v.new_value) == ("paid_sum", "EUR", 2400, 1320)


def test_currency_sums_are_per_currency() -> None:
    ldoc, ndoc = _docs()
    ndoc["invoices"][0]["currency"] = "USD"
    subjects = sorted(v.subject for v in check_user(ldoc, ndoc).violations)
    assert subjects == ["EUR", "USD"]


def test_native_paid_invoices_after_migration_are_not_counted() -> None:
    ldoc, ndoc = _docs()
    native = copy.deepcopy(ndoc["invoices"][0])
    native.update(id="n_native", legacy_id=None, created_at="2030-01-01T00:00:00Z")
    ndoc["invoices"].append(native)
    since = datetime(2029, 1, 1, tzinfo=UTC)
    assert check_user(ldoc, ndoc, since=since).violations == ()
    assert [v.invariant for v in check_user(ldoc, ndoc).violations] == ["paid_sum"]


def test_billed_twice_needs_the_current_legacy_state() -> None:
    ldoc, ndoc = _docs()
    assert check_user(ldoc, ndoc, legacy_now=ldoc).violations[0].invariant == "billed_twice"
    canceled = copy.deepcopy(ldoc)
    canceled["subscriptions"][0]["status"] = "canceled"
    assert check_user(ldoc, ndoc, legacy_now=canceled).violations == ()


def test_billed_by_neither() -> None:
    ldoc, ndoc = _docs()
    ndoc["subscriptions"][0]["status"] = "canceled"
    names = [v.invariant for v in check_user(ldoc, ndoc).violations]
    assert "billed_by_neither" in names and "renewal_moved" in names
    ndoc["subscriptions"][0]["canceled_at"] = "2030-01-01T00:00:00Z"  # the user's own choice later
    since = datetime(2029, 1, 1, tzinfo=UTC)
    assert check_user(ldoc, ndoc, since=since).violations == ()


def test_next_renewal_date_preserved() -> None:
    ldoc, ndoc = _docs()
    ndoc["subscriptions"][0]["current_period_end"] = "2024-03-02T00:00:00Z"
    (v,) = check_user(ldoc, ndoc).violations
    assert (v.invariant, v.subject, v.legacy_value, v.new_value) == (
        "renewal_moved",
        "sub_u1",
        "2024-03-01T00:00:00Z",
        "2024-03-02T00:00:00Z",
    )
    # renewed on the new system since: the next date legitimately moved on
    ndoc["subscriptions"][0]["current_period_start"] = "2024-03-01T00:00:00Z"
    ndoc["subscriptions"][0]["current_period_end"] = "2024-04-01T00:00:00Z"
    assert check_user(ldoc, ndoc).violations == ()
