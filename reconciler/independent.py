"""Population invariants from each system's *own* answers, not from our canonical records.

The diff and ``invariants.check_user`` compare two canonical projections; when the
legacy reading is wrong (a trial read as ``incomplete``, a credit read as a debt),
both projections carry the same mistake and agree. These checks use what each
system itself says:

* legacy: its upcoming-invoice previews taken by ``prove`` before the cancel
  (``NextCharges``, server arithmetic: ``total - amount_due`` > 0 is credit the
  server applied) and its raw subscriptions now (a refetch), a subscription
  billing if its status bills *or* it has a trial still running, however the
  server spells it (localstripe keeps trials ``incomplete``);
* new: the service's own bundle JSON (``next_renewal_at`` is the service's field,
  ``customer.balance`` its own balance).

Invariants: ``billed_twice``, ``billed_by_neither``, ``trial_billed_by_nobody``,
``renewal_moved`` (the new renewal is not the legacy preview's charge date) and
``credit_became_debt``. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from core.canonical import BillingState, NextCharges
from reconciler.invariants import InvariantViolation

_BILLS = frozenset({"active", "trialing", "past_due", "unpaid"})
_OVER = frozenset({"canceled", "incomplete_expired"})


def _unix(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return datetime.fromtimestamp(int(value), tz=UTC)


def _iso(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def legacy_bills(sub: Mapping[str, Any], now: datetime) -> bool:
    """Will the legacy server charge this raw subscription again (trials included)?"""
    status = sub.get("status")
    if status in _OVER or sub.get("cancel_at_period_end"):
        return False
    trial_end = _unix(sub.get("trial_end"))
    return status in _BILLS or (trial_end is not None and trial_end > now)


def new_bills(sub: Mapping[str, Any]) -> bool:
    return sub.get("next_renewal_at") is not None


def check_independent(
    user_id: str,
    *,
    legacy_preview: NextCharges | None,
    legacy_subs_now: Sequence[Mapping[str, Any]] | None,
    new_bundle: Mapping[str, Any] | None,
    now: datetime,
    cohort: str | None = None,
) -> list[InvariantViolation]:
    out: list[InvariantViolation] = []

    def violation(name: str, subject: str, legacy: Any, new: Any, message: str) -> None:
        out.append(InvariantViolation(name, user_id, cohort, subject, legacy, new, message))

    new_subs = list((new_bundle or {}).get("subscriptions") or [])
    by_external = {s.get("external_id"): s for s in new_subs if s.get("external_id")}
    new_billing = [s["id"] for s in new_subs if new_bills(s)]
    legacy_billing = [s["id"] for s in legacy_subs_now or () if legacy_bills(s, now)]
    if legacy_billing and new_billing:
        violation(
            "billed_twice",
            ",".join(legacy_billing),
            legacy_billing,
            new_billing,
            f"user {user_id}: the legacy server still bills {legacy_billing} and the new "
            f"service bills {new_billing}",
        )
    charged = [c for c in (legacy_preview.charges if legacy_preview else ()) if c.charge_at]
    if charged and not legacy_billing and not new_billing:
        violation(
            "billed_by_neither",
            ",".join(c.id for c in charged),
            [c.id for c in charged],
            [],
            f"user {user_id}: legacy would have charged {[c.id for c in charged]}; "
            "neither system will charge now",
        )
    for s in new_subs:
        if s.get("status") == "trialing" and not new_bills(s):
            violation(
                "trial_billed_by_nobody",
                str(s.get("external_id") or s.get("id")),
                None,
                s.get("trial_end"),
                f"user {user_id}: trial {s.get('id')} on the new service has no next renewal",
            )
    for c in charged:
        mine = by_external.get(c.id)
        if mine is None:
            continue  # a missing subscription is the diff's finding
        got = _iso(mine.get("next_renewal_at"))
        assert c.charge_at is not None
        if got is None or abs((got - c.charge_at).total_seconds()) > 1:
            name = (
                "trial_billed_by_nobody"
                if c.state is BillingState.TRIALING and got is None
                else "renewal_moved"
            )
            violation(
                name,
                c.id,
                c.charge_at.isoformat().replace("+00:00", "Z"),
                mine.get("next_renewal_at"),
                f"user {user_id}: legacy would charge {c.id} at {c.charge_at:%Y-%m-%d %H:%M:%S}"
                f" UTC; the new service renews it at {mine.get('next_renewal_at')}",
            )
    credit = max((c.balance_applied for c in charged), default=0)
    if not charged and legacy_preview is not None and (legacy_preview.balance or 0) < 0:
        credit = -(legacy_preview.balance or 0)
    new_balance = ((new_bundle or {}).get("customer") or {}).get("balance")
    if credit > 0 and isinstance(new_balance, int) and new_balance > 0:
        violation(
            "credit_became_debt",
            "customer",
            -credit,
            new_balance,
            f"user {user_id}: legacy applies a credit of {credit}; the new service holds a "
            f"debt of {new_balance}",
        )
    return out
