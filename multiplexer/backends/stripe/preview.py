"""Stripe upcoming-invoice previews -> canonical ``NextCharges``. Pure: no I/O, no ``stripe``.

The legacy side of the ``prove`` step: what Stripe itself says it will charge next,
per live subscription. Read from the server's own answers (the raw subscription
list and one preview invoice per subscription: ``GET /v1/invoices/upcoming`` on
localstripe, ``POST /v1/invoices/create_preview`` on the current API), never from
the canonical records the transform built, so a misreading shared by the transform
and the reconciler's projection still shows up as a difference.

Dialects (``"current"`` | ``"localstripe"``) differ only where the server does; each
difference is a field of the frozen ``dialect.Dialect``, and each localstripe
correction is a gap written in docs/legacy-gaps.md:

* trials: localstripe keeps a trial ``incomplete`` (with a future ``trial_end``) and
  dates its preview at ``current_period_end``; the charge is at ``trial_end``;
* balance sign: localstripe's ``starting_balance`` is the customer's credit as a
  *positive* number (Stripe: negative is credit);
* cancel at period end: localstripe still previews a charge; Stripe has none.

Generic Stripe semantics (both dialects): ``total`` here is subtotal - discounts +
exclusive taxes, before the balance; ``amount_due`` is what the card will be asked
for. Every preview applies the *whole* customer balance, as if it were the only
invoice; the balance really settles charges in date order, so later charges are
recomputed from what the earlier ones left.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from core.canonical import BillingState, NextCharge, NextCharges, System, TaxAmount
from core.errors import TransformError
from multiplexer.backends.stripe import shapes
from multiplexer.backends.stripe.dialect import DIALECTS, DialectName
from multiplexer.backends.stripe.fields import Obj, amount, build, currency, list_data, ref_id, rid

OVER = frozenset({"canceled", "incomplete_expired"})


def _unix(obj: Obj, key: str, record: str) -> datetime | None:
    from multiplexer.backends.stripe.fields import ts

    return ts(obj, key, record=record)  # type: ignore[no-any-return]


def _period_end(sub: Obj) -> datetime | None:
    """The next billing as the mapping and the webhook normaliser read it
    (``shapes.period_end``: the subscription's, else the item period that ends first)."""
    return _unix({"current_period_end": shapes.period_end(sub)}, "current_period_end", rid(sub))


def subscription_state(
    sub: Obj, *, dialect: DialectName, now: datetime
) -> tuple[BillingState, datetime | None]:
    """What the legacy server says this subscription will do next (state, until)."""
    record = rid(sub)
    status = sub.get("status")
    trial_end = _unix(sub, "trial_end", record)
    if status in OVER:
        return BillingState.NONE, None
    if sub.get("pause_collection"):
        resumes = sub["pause_collection"].get("resumes_at")
        return BillingState.PAUSED, None if resumes is None else _unix(
            sub["pause_collection"], "resumes_at", record
        )
    if sub.get("cancel_at_period_end"):
        return BillingState.CANCELING, _period_end(sub)
    future_trial = trial_end is not None and trial_end > now
    if status == "trialing" or (
        DIALECTS[dialect].incomplete_trial_is_trialing and status == "incomplete" and future_trial
    ):
        return BillingState.TRIALING, trial_end
    if status in ("active", "past_due", "unpaid"):
        return BillingState.RENEWING, None
    return BillingState.NONE, None  # incomplete: waits for a first payment, never renews


def tax_breakdown(inv: Obj, record: str) -> tuple[TaxAmount, ...]:
    """``total_taxes`` (current: ``tax_behavior``, ``tax_rate_details.tax_rate``) or
    ``total_tax_amounts`` (older API, localstripe: ``inclusive``, ``tax_rate``)."""
    out = []
    if isinstance(inv.get("total_taxes"), list):
        for n, t in enumerate(inv["total_taxes"]):
            details = t.get("tax_rate_details") or {}
            out.append(
                build(
                    TaxAmount,
                    record,
                    tax_rate_id=ref_id(details.get("tax_rate")),
                    amount=amount(t, "amount", record=f"{record}.total_taxes[{n}]"),
                    inclusive=t.get("tax_behavior") == "inclusive",
                )
            )
        return tuple(out)
    for n, t in enumerate(inv.get("total_tax_amounts") or []):
        out.append(
            build(
                TaxAmount,
                record,
                tax_rate_id=ref_id(t.get("tax_rate")),
                amount=amount(t, "amount", record=f"{record}.total_tax_amounts[{n}]"),
                inclusive=bool(t.get("inclusive")),
            )
        )
    return tuple(out)


def _discount(inv: Obj, record: str) -> int:
    return sum(
        amount(d, "amount", record=f"{record}.total_discount_amounts[{n}]")
        for n, d in enumerate(inv.get("total_discount_amounts") or [])
    )


def _charge_at(inv: Obj, sub: Obj, record: str, *, dialect: DialectName) -> datetime:
    """When the renewal happens: the subscription line's new period start (current API),
    else ``next_payment_attempt`` / ``date`` (localstripe dates a preview at period end)."""
    if DIALECTS[dialect].preview_dated_by_lines:
        for line in list_data(inv, "lines", record):
            start = (line.get("period") or {}).get("start")
            if start is not None and not _is_proration(line):
                return _require(
                    _unix(line["period"], "start", record), record, "lines.period.start"
                )
    for key in ("next_payment_attempt", "date", "period_end"):
        found = _unix(inv, key, record)
        if found is not None:
            return found
    end = _period_end(sub)
    return _require(end, record, "next_payment_attempt")


def _is_proration(line: Obj) -> bool:
    parent = line.get("parent") or {}
    details = parent.get("subscription_item_details") or {}
    return bool(line.get("proration") or details.get("proration"))


def _require(value: datetime | None, record: str, field: str) -> datetime:
    if value is None:
        raise TransformError("preview has no date", record=record, field=field)
    return value


def map_upcoming(sub: Obj, inv: Obj | None, *, dialect: DialectName, now: datetime) -> NextCharge:
    """One subscription and its preview invoice (None: the server has no upcoming invoice)."""
    record = rid(sub)
    state, until = subscription_state(sub, dialect=dialect, now=now)
    cur = shapes.subscription_currency(sub)
    if inv is None or state in (BillingState.NONE, BillingState.CANCELING, BillingState.PAUSED):
        if state in (BillingState.RENEWING, BillingState.TRIALING):
            state, until = BillingState.NONE, None  # the server itself says: no next charge
        return build(
            NextCharge,
            record,
            id=record,
            legacy_id=record,
            currency=currency(cur or (inv or {}).get("currency"), record),
            state=state,
            until=until,
        )
    inv_record = f"preview of {record}"
    subtotal = amount(inv, "subtotal", record=inv_record)
    breakdown = tax_breakdown(inv, inv_record)
    exclusive = sum(t.amount for t in breakdown if not t.inclusive)
    if not breakdown and inv.get("tax") is not None:
        exclusive = amount(inv, "tax", record=inv_record)
    discount = _discount(inv, inv_record)
    total = subtotal - discount + exclusive
    if DIALECTS[dialect].preview_total_is_charge:
        # Stripe's subtotal has item-level discounts taken off already: its total is the
        # charge, and the subtotal is put back before every discount, subtracted once
        total = amount(inv, "total", record=inv_record)
        subtotal = total + discount - exclusive
    due = amount(inv, "amount_due", record=inv_record)
    charge_at = _charge_at(inv, sub, inv_record, dialect=dialect)
    if (
        state is BillingState.TRIALING
        and until is not None
        and DIALECTS[dialect].preview_ignores_trial
    ):
        charge_at = until  # localstripe dates the preview at period end, ignoring the trial
    return build(
        NextCharge,
        record,
        id=record,
        legacy_id=record,
        currency=currency(inv.get("currency"), inv_record),
        state=state,
        until=until,
        charge_at=charge_at,
        subtotal=subtotal,
        discount=discount,
        tax=sum(t.amount for t in breakdown) if breakdown else exclusive,
        tax_breakdown=breakdown,
        total=total,
        amount_due=due,
    )


def balance_of_preview(inv: Obj, *, dialect: DialectName, record: str) -> int:
    """The customer balance a preview started from, in Stripe's sign (negative = credit)."""
    start = amount(inv, "starting_balance", default=0, record=record)
    return -start if DIALECTS[dialect].preview_balance_negated else start


def settle_in_order(charges: Sequence[NextCharge], balance: int) -> tuple[NextCharge, ...]:
    """Each preview applied the whole balance; re-apply it once, in date order.

    The earliest charge keeps the server's own ``amount_due``; every later one gets
    what is left of the balance (a debt is collected once, with the first charge).
    """
    dated = sorted(
        (c for c in charges if c.charge_at is not None), key=lambda c: (c.charge_at, c.id)
    )
    if len(dated) < 2:
        return tuple(charges)
    first = dated[0]
    left = balance + first.balance_applied  # credit (negative) shrinks by what was used
    fixed: dict[str, NextCharge] = {first.id: first}
    for c in dated[1:]:
        used = min(-left, c.total) if left < 0 else 0
        left += used
        fixed[c.id] = c.model_copy(update={"amount_due": c.total - used})
    return tuple(fixed.get(c.id, c) for c in charges)


def map_next_charges(
    user_id: str,
    customer: Obj,
    subscriptions: Sequence[Obj],
    previews: Mapping[str, Obj | None],
    *,
    dialect: DialectName,
    now: datetime,
    balance: int,
    currency: str | None,
) -> NextCharges:
    """The legacy side of ``prove``: every subscription, each with its server preview.

    ``balance`` and ``currency`` are the customer's own (mapping's readings, the
    localstripe sign already handled); a preview's starting balance wins over the
    customer's, and a user with nothing left to charge keeps the customer's currency.
    """
    charges = [
        map_upcoming(s, previews.get(rid(s)), dialect=dialect, now=now)
        for s in sorted(subscriptions, key=lambda s: (s.get("created") or 0, rid(s)))
    ]
    first = next((p for p in previews.values() if p is not None), None)
    if first is not None:
        balance = balance_of_preview(first, dialect=dialect, record=f"preview of {rid(customer)}")
    charges = list(settle_in_order(charges, balance))
    currencies = {c.currency for c in charges}
    endpoint = DIALECTS[dialect].preview_endpoint
    return NextCharges(
        user_id=user_id,
        system=System.LEGACY,
        currency=currencies.pop() if len(currencies) == 1 else (None if currencies else currency),
        balance=balance,
        charges=tuple(charges),
        source={
            c.id: endpoint if previews.get(c.id) is not None else "no preview" for c in charges
        },
    )


def wants_preview(sub: Obj, *, dialect: DialectName, now: datetime) -> bool:
    """Ask the server for a preview only where it can bill (saves a call per dead sub)."""
    state, _ = subscription_state(sub, dialect=dialect, now=now)
    return state in (BillingState.RENEWING, BillingState.TRIALING)


def as_plain(obj: Any) -> dict[str, Any]:
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
