"""What an import will charge at the first renewal after activation. Pure arithmetic on rows.

The orchestrator's ``prove`` step asks this of a *pending* import and compares it
with the legacy system's own upcoming-invoice preview before anything is canceled.
The numbers are the ones this service bills with at a renewal:

* ``charge_at``: ``trial_end`` while trialing, else ``current_period_end``; none for a
  subscription set to cancel at period end (state ``canceling``) or one that does not
  bill (``incomplete``, ``canceled``, ...: state ``none``);
* ``subtotal`` = sum of ``unit_amount * quantity``; ``discount``: the subscription's and
  the customer's discounts live at ``charge_at`` (percentages rounded half-up, amounts
  capped at what is left);
* taxes per rate on the discounted amount, rounded half-up per rate: an exclusive rate
  adds ``base * p / 100``, an inclusive one is contained (``base - base * 100 / (100 + p)``)
  and adds nothing to ``total``;
* the customer's balance (negative = credit) settles the charges in date order:
  ``balance_applied`` > 0 is credit used, < 0 is debt added; ``amount_due`` is the card.
"""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import models as m
from .clock import fmt
from .errors import ApiError, not_found

BILLING_STATUSES = ("active", "trialing", "past_due")


def _half_up(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _discount(base: int, discounts: list[m.Discount], at: datetime) -> int:
    total = 0
    for d in discounts:
        if d.starts_at > at or (d.ends_at is not None and d.ends_at <= at):
            continue
        left = base - total
        if d.percent_off_bp is not None:
            total += min(left, _half_up(Decimal(base) * d.percent_off_bp / 10_000))
        elif d.amount_off is not None:
            total += min(left, d.amount_off)
    return total


def _taxes(base: int, rates: list[dict[str, Any]]) -> tuple[int, list[dict[str, Any]]]:
    added, breakdown = 0, []
    for rate in rates:
        pct = Decimal(str(rate["percentage"]))
        inclusive = bool(rate.get("inclusive"))
        if inclusive:
            amount = base - _half_up(Decimal(base) * 100 / (100 + pct))
        else:
            amount = _half_up(Decimal(base) * pct / 100)
            added += amount
        breakdown.append(
            {
                "tax_rate_external_id": rate.get("external_id"),
                "percentage": rate["percentage"],
                "inclusive": inclusive,
                "amount": amount,
            }
        )
    return added, breakdown


def _charge(sub: m.Subscription, discounts: list[m.Discount]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": sub.id,
        "external_id": sub.external_id,
        "currency": sub.currency,
        "state": "none",
        "until": None,
        "charge_at": None,
        "subtotal": 0,
        "discount": 0,
        "tax": 0,
        "tax_breakdown": [],
        "total": 0,
        "balance_applied": 0,
        "amount_due": 0,
    }
    if sub.status not in BILLING_STATUSES:
        return out
    if sub.cancel_at_period_end:
        out.update(state="canceling", until=fmt(sub.current_period_end))
        return out
    trialing = sub.status == "trialing" and sub.trial_end is not None
    at = sub.trial_end if trialing else sub.current_period_end
    assert at is not None
    subtotal = sum(i.unit_amount * i.quantity for i in sub.items)
    mine = [d for d in discounts if d.subscription_id in (None, sub.id)]
    discount = _discount(subtotal, mine, at)
    tax, breakdown = _taxes(subtotal - discount, list(sub.tax_rates or []))
    total = subtotal - discount + tax
    out.update(
        state="trialing" if trialing else "renewing",
        until=fmt(sub.trial_end) if trialing else None,
        charge_at=fmt(at),
        subtotal=subtotal,
        discount=discount,
        tax=sum(b["amount"] for b in breakdown),
        tax_breakdown=breakdown,
        total=total,
        amount_due=total,
        _at=at,
    )
    return out


def _charges(subs: list[m.Subscription], discounts: list[m.Discount], balance: int) -> list:
    """Each subscription's next charge, the balance settling them in date order."""
    charges = [_charge(s, discounts) for s in subs]
    for charge in sorted((c for c in charges if "_at" in c), key=lambda c: (c["_at"], c["id"])):
        if balance < 0:  # credit: settles as much of this charge as it can
            used = min(-balance, charge["total"])
            balance += used
        else:  # debt: the whole of it is collected with the next charge
            used, balance = -balance, 0
        charge["balance_applied"] = used
        charge["amount_due"] = charge["total"] - used
    for charge in charges:
        charge.pop("_at", None)
    return charges


def preview_import(session: Session, import_id: str) -> dict[str, Any]:
    """``GET /v1/imports/{id}/preview``: pending or active imports; discarded → 409."""
    imp = session.get(m.Import, import_id)
    if imp is None:
        raise not_found("import", import_id)
    if imp.status in ("discarded", "rolled_back"):
        raise ApiError(
            409, f"import_{imp.status}", f"import {imp.id} is {imp.status}; nothing to preview"
        )
    customer = session.scalar(select(m.Customer).where(m.Customer.user_id == imp.user_id))
    if customer is None:  # pragma: no cover - an import always writes its customer
        raise not_found("customer of import", import_id)
    # a re-import over a rolled-back user: the customer's new balance waits for activation
    balance = (imp.customer_update or {}).get("balance", customer.balance)
    subs = session.scalars(
        select(m.Subscription)
        .where(m.Subscription.import_id == imp.id)
        .order_by(m.Subscription.created_at, m.Subscription.id)
    ).all()
    # a re-import keeps the discounts the user already holds (its customer's coupon)
    owner = m.Discount.user_id == imp.user_id if imp.customer_update else None
    mine = m.Discount.import_id == imp.id
    discounts = list(session.scalars(select(m.Discount).where(mine if owner is None else owner)))
    return {
        "import_id": imp.id,
        "status": imp.status,
        "user_id": imp.user_id,
        "currency": customer.currency,
        "balance": balance,
        "subscriptions": _charges(list(subs), discounts, balance),
    }


def preview_user(session: Session, user_id: str) -> dict[str, Any]:
    """``GET /v1/users/{id}/preview``: the next charge of every subscription the user holds
    here (the orchestrator's rollback compares it with the legacy re-creation's preview)."""
    customer = session.scalar(select(m.Customer).where(m.Customer.user_id == user_id))
    if customer is None:
        raise not_found("user", user_id)
    subs = session.scalars(
        select(m.Subscription)
        .where(m.Subscription.user_id == user_id)
        .order_by(m.Subscription.created_at, m.Subscription.id)
    ).all()
    discounts = list(session.scalars(select(m.Discount).where(m.Discount.user_id == user_id)))
    return {
        "user_id": user_id,
        "currency": customer.currency,
        "balance": customer.balance,
        "subscriptions": _charges(list(subs), discounts, customer.balance),
    }
