"""Offline payments and refunds (bank transfers): validate, preview, record once, list.

Shared by the web form and ``twinbill payments|refunds record-offline``. Recording
goes through ``BillingMux`` (which routes to the user's system, refuses migrating
users, and decides each record once in the offline money ledger, table
``offline_money``, unique per user + kind + reference, before the backend write); a
submit whose user + reference is already recorded is answered with the earlier
record instead of a second call, so a double click or a retry records it once.
The finance report reads the same table.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from core.errors import InvalidInput, UnknownUser, UserHeld, UserMigrating
from core.money import Money, exponent
from multiplexer import offline_ledger
from multiplexer.bootstrap import MuxContext
from multiplexer.models import OfflineMoney, Route
from multiplexer.routing import MIGRATING, WRITABLE

KINDS = offline_ledger.ACTION
LABEL = {"payment": "an offline payment", "refund": "an offline refund"}


@dataclass(frozen=True, slots=True)
class Draft:
    """A validated request, ready to show for confirmation and then to record."""

    kind: str
    user_id: str
    system: str
    amount: Money
    reference: str
    on: date
    reason: str | None

    def sentence(self, amount_text: str | None = None) -> str:
        """What will happen; ``amount_text`` is the amount as the page shows it (babel,
        by the admin's locale), else ``Money.format``."""
        return (
            f"will record {amount_text or self.amount.format()} as {LABEL[self.kind]} in the "
            f"{self.system.upper()} system for user {self.user_id}, reference "
            f"{self.reference}, dated {self.on.isoformat()}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "user_id": self.user_id,
            "system": self.system,
            "amount": self.amount.amount,
            "currency": self.amount.currency,
            "amount_text": self.amount.format(),
            "reference": self.reference,
            "date": self.on.isoformat(),
            "reason": self.reason,
        }


class DraftErrors(InvalidInput):
    """Several field problems at once (the form shows each next to its field)."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def writable_route(session: Session, user_id: str) -> Route:
    route = session.get(Route, user_id)
    if route is None:
        raise UnknownUser(user_id)
    if route.state == MIGRATING:
        raise UserMigrating(user_id)
    if route.state not in WRITABLE:
        raise UserHeld(user_id, route.state)
    return route


def refusal(exc: Exception) -> str:
    """What the person reads when the whole action is refused."""
    if isinstance(exc, UserMigrating):
        return (
            f"User {exc.user_id} is being migrated right now, so payments and refunds "
            "cannot be recorded. Nothing was written. Try again once the migration has "
            "finished (usually a few minutes)."
        )
    if isinstance(exc, UserHeld):
        return (
            f"{exc.message}. Nothing was written. A developer can release the user "
            "from the user page."
        )
    if isinstance(exc, UnknownUser):
        return (
            f"There is no user {exc.user_id!r} in the routing table. Nothing was written. "
            "Search for the user first."
        )
    return f"{exc}. Nothing was written."


def build_draft(
    ctx: MuxContext,
    kind: str,
    user_id: str,
    *,
    amount: str,
    currency: str | None,
    reference: str,
    on: str | None,
    reason: str | None,
) -> Draft:
    if kind not in KINDS:
        raise InvalidInput(f"unknown kind {kind!r}: payment or refund")
    with ctx.sessions() as session:
        route = writable_route(session, user_id)
    errors: dict[str, str] = {}
    cur = (route.currency or currency or "").upper()
    if currency and route.currency and currency.upper() != route.currency.upper():
        errors["currency"] = (
            f"user {user_id} is billed in {route.currency.upper()}, not {currency.upper()}"
        )
    money: Money | None = None
    try:
        exponent(cur)
    except InvalidInput:
        errors.setdefault("currency", "choose the currency (an ISO 4217 code such as EUR)")
    else:
        text = (amount or "").strip()
        if not text:
            errors["amount"] = f"enter the amount in {cur}, e.g. 12.50"
        else:
            try:
                money = Money.parse(text, cur, max_major=ctx.settings.max_amount_major)
            except InvalidInput as exc:
                errors["amount"] = str(exc)
    ref = (reference or "").strip()
    if not ref:
        errors["reference"] = "enter the bank transaction id (reference) so finance can match it"
    elif len(ref) > 120:
        errors["reference"] = "the reference is longer than 120 characters"
    day = date.today()
    if on:
        try:
            day = date.fromisoformat(on.strip())
        except ValueError:
            errors["date"] = f"{on!r} is not a date (YYYY-MM-DD)"
        else:
            if day > date.today() + timedelta(days=1):
                errors["date"] = "the date is in the future"
    note = (reason or "").strip() or None
    if note and len(note) > 500:
        errors["reason"] = "keep the reason under 500 characters"
    if errors or money is None:
        raise DraftErrors(errors or {"amount": "invalid amount"})
    return Draft(kind, user_id, route.system, money, ref, day, note)


def already_recorded(
    session: Session, kind: str, user_id: str, reference: str
) -> OfflineMoney | None:
    """The ledger row of an offline record already made for this user + reference."""
    row = offline_ledger.find(session, kind, user_id, reference)
    return row if row is not None and row.status == "recorded" else None


@dataclass(frozen=True, slots=True)
class Recorded:
    record_id: str
    system: str
    duplicate: bool


def record(ctx: MuxContext, draft: Draft, *, actor: str) -> Recorded:
    with ctx.sessions() as session:
        earlier = already_recorded(session, draft.kind, draft.user_id, draft.reference)
    if earlier is not None:
        return Recorded(str(earlier.record_id), earlier.system, True)
    at = datetime.combine(draft.on, time(12, 0), tzinfo=UTC)
    if draft.kind == "payment":
        pay = ctx.mux.record_offline_payment(
            draft.user_id,
            draft.amount,
            reference=draft.reference,
            paid_at=at,
            actor=actor,
            note=draft.reason,
        )
        return Recorded(pay.id, draft.system, False)
    ref = ctx.mux.record_offline_refund(
        draft.user_id,
        draft.amount,
        reference=draft.reference,
        refunded_at=at,
        actor=actor,
        reason=draft.reason,
    )
    return Recorded(ref.id, draft.system, False)


@dataclass(frozen=True, slots=True)
class OfflineRow:
    id: int
    at: datetime
    kind: str
    user_id: str
    system: str
    record_id: str
    amount: int
    currency: str
    reference: str
    actor: str
    reason: str | None
    happened_on: str = ""  # the bank date the person entered (paid_at / refunded_at)

    def as_dict(self) -> dict[str, Any]:
        money = Money(self.currency, self.amount) if self.currency else None
        return {
            "recorded_at": self.at.isoformat(),
            "happened_on": self.happened_on,
            "kind": self.kind,
            "user_id": self.user_id,
            "system": self.system,
            "record_id": self.record_id,
            "amount": str(money.decimal()) if money else str(self.amount),
            "currency": self.currency,
            "reference": self.reference,
            "actor": self.actor,
            "reason": self.reason or "",
        }


def list_offline(
    session: Session,
    start: date,
    end: date,
    *,
    after_id: int | None = None,
    limit: int | None = None,
) -> Iterator[OfflineRow]:
    """Offline payments/refunds recorded from ``start`` to ``end`` (inclusive), oldest first."""
    lo = datetime.combine(start, time.min, tzinfo=UTC)
    hi = datetime.combine(end + timedelta(days=1), time.min, tzinfo=UTC)
    stmt = (
        sa.select(OfflineMoney)
        .where(
            OfflineMoney.status == "recorded",
            OfflineMoney.created_at >= lo,
            OfflineMoney.created_at < hi,
        )
        .order_by(OfflineMoney.id)
    )
    if after_id is not None:
        stmt = stmt.where(OfflineMoney.id > after_id)
    if limit is not None:
        stmt = stmt.limit(limit)
    for row in session.scalars(stmt.execution_options(yield_per=500)):
        yield OfflineRow(
            row.id,
            row.created_at,
            row.kind,
            row.user_id,
            row.system,
            row.record_id or "",
            row.amount,
            row.currency,
            row.reference,
            row.actor,
            row.note,
            row.happened_at.date().isoformat(),
        )
