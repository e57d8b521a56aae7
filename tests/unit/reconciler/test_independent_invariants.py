"""Invariants from each system's own answers: they catch what a shared misreading hides."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.canonical import BillingState, NextCharge, NextCharges, System
from reconciler.independent import check_independent

NOW = datetime(2030, 1, 1, tzinfo=UTC)
TRIAL_END = NOW + timedelta(days=10)


def _preview(state: BillingState, *, at: datetime, due: int = 990, total: int = 990) -> NextCharges:
    charge = NextCharge(
        id="sub_1", legacy_id="sub_1", currency="EUR", state=state,
        until=at if state is BillingState.TRIALING else None, charge_at=at,
        subtotal=total, total=total, amount_due=due,
    )  # fmt: skip
    return NextCharges(user_id="u1", system=System.LEGACY, charges=(charge,), balance=due - total)


def _bundle(*, status: str, renews: datetime | None, balance: int = 0) -> dict:
    return {
        "user_id": "u1",
        "customer": {"balance": balance},
        "subscriptions": [
            {
                "id": "sub_nb_1",
                "external_id": "sub_1",
                "status": status,
                "trial_end": None,
                "next_renewal_at": renews and renews.isoformat().replace("+00:00", "Z"),
            }
        ],
    }


def _canceled_legacy() -> list[dict]:
    return [{"id": "sub_1", "status": "canceled", "trial_end": int(TRIAL_END.timestamp())}]


def names(**kw) -> set[str]:
    return {v.invariant for v in check_independent("u1", now=NOW, **kw)}


def test_a_trial_imported_as_incomplete_is_billed_by_nobody() -> None:
    """The old reading: localstripe's incomplete trial imported incomplete, no renewal."""
    found = names(
        legacy_preview=_preview(BillingState.TRIALING, at=TRIAL_END),
        legacy_subs_now=_canceled_legacy(),
        new_bundle=_bundle(status="incomplete", renews=None),
    )
    assert "trial_billed_by_nobody" in found
    assert "billed_by_neither" in found


def test_a_credit_that_became_a_debt_is_a_violation() -> None:
    """The old reading of localstripe's account_balance: credit 800 arrived as debt 800."""
    found = names(
        legacy_preview=_preview(BillingState.RENEWING, at=TRIAL_END, due=190),
        legacy_subs_now=_canceled_legacy(),
        new_bundle=_bundle(status="active", renews=TRIAL_END, balance=800),
    )
    assert found == {"credit_became_debt"}


def test_an_incomplete_trial_still_running_on_legacy_is_billing_there() -> None:
    found = names(
        legacy_preview=_preview(BillingState.TRIALING, at=TRIAL_END),
        legacy_subs_now=[{"id": "sub_1", "status": "incomplete", "trial_end": 1900000000}],
        new_bundle=_bundle(status="trialing", renews=TRIAL_END),
    )
    assert found == {"billed_twice"}


def test_a_moved_renewal_and_a_clean_migration() -> None:
    moved = names(
        legacy_preview=_preview(BillingState.RENEWING, at=TRIAL_END),
        legacy_subs_now=_canceled_legacy(),
        new_bundle=_bundle(status="active", renews=TRIAL_END + timedelta(hours=1)),
    )
    assert moved == {"renewal_moved"}
    clean = names(
        legacy_preview=_preview(BillingState.TRIALING, at=TRIAL_END),
        legacy_subs_now=_canceled_legacy(),
        new_bundle=_bundle(status="trialing", renews=TRIAL_END),
    )
    assert clean == set()
