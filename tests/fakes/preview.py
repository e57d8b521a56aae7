"""Next-charge previews for the in-memory backend: both sides computed the same simple way.

The fake legacy side previews its own subscriptions; the fake new side previews the
import payload it was sent. They agree exactly when the payload carries the same
status, dates, amounts and balance, which is what the saga's unit tests need; the
real arithmetic is tested against localstripe and sandbox/newbilling.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from core.canonical import BillingState, NextCharge, NextCharges, System

_BILLING = {"active", "trialing", "past_due", "unpaid"}


def charge(
    *,
    id: str,
    legacy_id: str,
    currency: str,
    status: str,
    cancel_at_period_end: bool,
    trial_end: datetime | None,
    period_end: datetime,
    amount: int,
) -> NextCharge:
    if status not in _BILLING:
        return NextCharge(id=id, legacy_id=legacy_id, currency=currency, state=BillingState.NONE)
    if cancel_at_period_end:
        return NextCharge(
            id=id,
            legacy_id=legacy_id,
            currency=currency,
            state=BillingState.CANCELING,
            until=period_end,
        )
    trialing = status == "trialing" and trial_end is not None
    at = trial_end if trialing and trial_end is not None else period_end
    return NextCharge(
        id=id,
        legacy_id=legacy_id,
        currency=currency,
        state=BillingState.TRIALING if trialing else BillingState.RENEWING,
        until=trial_end if trialing else None,
        charge_at=at,
        subtotal=amount,
        total=amount,
        amount_due=amount,
    )


def settle(user_id: str, system: System, charges: list[NextCharge], balance: int) -> NextCharges:
    left, out = balance, {}
    for c in sorted((c for c in charges if c.charge_at), key=lambda c: (c.charge_at, c.id)):
        used = min(-left, c.total) if left < 0 else -left
        left = left + used if left < 0 else 0
        out[c.id] = c.model_copy(update={"amount_due": c.total - used})
    final = tuple(out.get(c.id, c) for c in charges)
    currencies = {c.currency for c in final}
    return NextCharges(
        user_id=user_id,
        system=system,
        currency=currencies.pop() if len(currencies) == 1 else None,
        balance=balance,
        charges=final,
    )


def _ts(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


def from_payload(payload: dict[str, Any]) -> NextCharges:
    charges = []
    for s in payload["subscriptions"]:
        end = _ts(s["current_period_end"])
        assert end is not None
        charges.append(
            charge(
                id=f"nb_{s['external_id']}",
                legacy_id=s["external_id"],
                currency=s["currency"],
                status=s["status"],
                cancel_at_period_end=s["cancel_at_period_end"],
                trial_end=_ts(s["trial_end"]),
                period_end=end,
                amount=sum(i["unit_amount"] * i["quantity"] for i in s["items"]),
            )
        )
    return settle(payload["user_id"], System.NEW, charges, payload["customer"]["balance"])
