"""A migrated user goes back to legacy: the service's side of the orchestrator's rollback.

``POST /v1/imports/{id}/rollback`` is the reverse saga's pivot, one transaction: every
billing subscription of the user is canceled now (no proration, no refund, marked
``twinbill_rollback``), the import becomes ``rolled_back`` and the events carry
``cause: "rollback"`` (receivers suppress them). Everything the user's stay created here
(invoices, payments, offline money) stays readable in the bundle; native operations on
the user answer 409 ``user_rolled_back``.

A later forward migration of the same user imports again *over* the rolled-back one:
rows whose ``external_id`` the user already holds here are kept as they are (the legacy
history carried the first time), only new records are inserted, and the customer row
is kept, its fields from the payload applied at activation (a discard of the new,
pending import then leaves the user exactly as the rollback left it).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import models as m
from .clock import utcnow
from .errors import ApiError, not_found
from .idempotency import WriteResult
from .ledger import BILLING_STATUSES
from .operations import end_now
from .serialize import subscription_out
from .webhooks import Outbox

MARK = "twinbill_rollback"
#: tables whose rows a re-import matches by external id (parents first)
HELD_TABLES: tuple[type[m.Base], ...] = (
    m.Customer,
    m.Subscription,
    m.SubscriptionItem,
    m.Discount,
    m.Invoice,
    m.InvoiceLine,
    m.Payment,
    m.Refund,
)


def roll_back(session: Session, outbox: Outbox, import_id: str, rollback_id: str) -> WriteResult:
    from .imports import import_detail

    imp = session.get(m.Import, import_id, with_for_update=True)
    if imp is None:
        raise not_found("import", import_id)
    if imp.status == "rolled_back":
        return 200, import_detail(session, imp)
    if imp.status != "active":
        raise ApiError(
            409, f"import_{imp.status}", f"import {imp.id} is {imp.status}; only an active "
            "import can be rolled back"
        )  # fmt: skip
    open_invoice = session.scalar(
        select(m.Invoice.id).where(m.Invoice.user_id == imp.user_id, m.Invoice.status == "open")
    )
    if open_invoice is not None:
        raise ApiError(
            409,
            "invoice_open",
            f"user {imp.user_id!r} has unpaid invoice {open_invoice}; settle it before a rollback",
        )
    now = utcnow()
    subs = session.scalars(
        select(m.Subscription)
        .where(m.Subscription.user_id == imp.user_id, m.Subscription.status.in_(BILLING_STATUSES))
        .order_by(m.Subscription.created_at, m.Subscription.id)
        .with_for_update()
    ).all()
    for sub in subs:
        end_now(sub, now)
        sub.metadata_ = {**sub.metadata_, MARK: rollback_id}
    imp.status, imp.rolled_back_at = "rolled_back", now
    session.flush()
    for sub in subs:
        outbox.emit(
            session,
            user_id=imp.user_id,
            type_="subscription.canceled",
            obj=subscription_out(sub),
            cause="rollback",
            import_id=imp.id,
        )
    body = import_detail(session, imp)
    outbox.emit(
        session,
        user_id=imp.user_id,
        type_="import.rolled_back",
        obj={k: v for k, v in body.items() if k != "subscriptions"},
        cause="rollback",
        import_id=imp.id,
    )
    return 200, body


def rolled_back_customer(session: Session, user_id: str) -> m.Customer | None:
    """The user's customer row when its import was rolled back (a re-import reuses it)."""
    customer = session.scalar(select(m.Customer).where(m.Customer.user_id == user_id))
    if customer is None or customer.import_id is None:
        return None
    imp = session.get(m.Import, customer.import_id)
    return customer if imp is not None and imp.status == "rolled_back" else None


def held_ids(session: Session, user_id: str) -> dict[type[m.Base], dict[str, str]]:
    """external id -> own id of every row the user holds, per table (for a re-import)."""
    out: dict[type[m.Base], dict[str, str]] = {}
    for model in HELD_TABLES:
        col = model.external_id  # type: ignore[attr-defined]
        if hasattr(model, "user_id"):
            q = select(col, model.id).where(model.user_id == user_id)  # type: ignore[attr-defined]
        elif model is m.SubscriptionItem:
            q = select(col, model.id).join(m.Subscription).where(m.Subscription.user_id == user_id)
        else:
            q = select(col, model.id).join(m.Invoice).where(m.Invoice.user_id == user_id)
        out[model] = {ext: oid for ext, oid in session.execute(q.where(col.is_not(None)))}
    return out


def apply_customer_update(session: Session, imp: m.Import) -> None:
    """At activation of a re-import: the kept customer takes the payload's fields."""
    if not imp.customer_update:
        return
    customer = session.scalar(select(m.Customer).where(m.Customer.user_id == imp.user_id))
    if customer is None:  # pragma: no cover - the re-import found it at creation
        raise not_found("customer", imp.user_id)
    c: dict[str, Any] = imp.customer_update
    customer.import_id = imp.id
    customer.email, customer.name, customer.balance = c["email"], c["name"], c["balance"]
    customer.payment_method_ids = list(c["payment_method_ids"])
    customer.metadata_ = dict(c["metadata"])
