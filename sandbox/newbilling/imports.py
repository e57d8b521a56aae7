"""Import, activate and discard a user's history: the migration's side of the service.

An import lands *pending*: visible in the bundle (so the orchestrator can verify
it) but not billing, and no native operation may touch the user. Activation
starts billing exactly where the legacy system stopped (``next_renewal_at`` =
``current_period_end``, or ``trial_end`` while trialing). Discarding a pending
import deletes every row it wrote, keeping only a tombstone, so a later retry
can import the user again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import models as m
from .clock import fmt, utcnow
from .errors import ApiError, FieldError, not_found
from .idempotency import WriteResult
from .rollback import apply_customer_update, held_ids, rolled_back_customer
from .schemas import ImportIn
from .serialize import import_out, subscription_out
from .validation import check_import
from .webhooks import Outbox

BILLING_STATUSES = ("active", "trialing", "past_due")


def create_import(session: Session, outbox: Outbox, p: ImportIn) -> WriteResult:
    problems = check_import(p)
    if problems:
        raise ApiError(
            422,
            "validation_error",
            f"import for user {p.user_id!r} rejected: "
            + "; ".join(f"{f.loc}: {f.message}" for f in problems[:5]),
            problems,
        )
    _refuse_existing_user(session, p.user_id)
    reused = rolled_back_customer(session, p.user_id)  # a re-import after a rollback
    held = held_ids(session, p.user_id) if reused is not None else {}
    now = utcnow()
    imp = m.Import(
        id=m.new_id("imp"),
        user_id=p.user_id,
        status="pending",
        source=p.source,
        source_ref=p.source_ref,
        created_at=now,
        counts={
            "subscriptions": len(p.subscriptions),
            "invoices": len(p.invoices),
            "lines": sum(len(i.lines) for i in p.invoices),
            "payments": len(p.payments),
            "refunds": len(p.refunds),
            "discounts": len(p.discounts),
        },
        customer_update=p.customer.model_dump(mode="json") if reused is not None else None,
    )
    session.add(imp)
    session.flush()  # the import row must exist before rows that reference it (PostgreSQL FKs)
    try:
        # Optimistic: the unique external_id indexes catch ids held by another user. Only
        # when they fire do we pay for the per-table lookups that name each clashing field.
        with session.begin_nested():
            for model, rows in _rows(p, imp.id, now, held):
                if rows:
                    session.execute(insert(model.__table__), rows)  # type: ignore[arg-type]
    except IntegrityError as exc:
        _refuse_existing_user(session, p.user_id, imp.id)  # a concurrent same-user import
        _refuse_foreign_external_ids(session, p)
        raise ApiError(
            409, "conflict", f"import for user {p.user_id!r} conflicts with existing rows"
        ) from exc
    body = import_out(imp)
    outbox.emit(
        session,
        user_id=p.user_id,
        type_="import.created",
        obj=body,
        cause="import",
        import_id=imp.id,
    )
    return 201, body


def _refuse_existing_user(session: Session, user_id: str, own_id: str = "") -> None:
    live = session.scalar(
        select(m.Import).where(
            m.Import.user_id == user_id,
            m.Import.status.not_in(("discarded", "rolled_back")),
            m.Import.id != own_id,
        )
    )
    if live is not None:
        raise ApiError(
            409,
            "user_already_imported",
            f"user {user_id!r} already has a {live.status} import {live.id}; "
            "discard it first (pending) or do not import again (active)",
        )
    if session.scalar(
        select(m.Customer.id).where(m.Customer.user_id == user_id)
    ) and not rolled_back_customer(session, user_id):
        raise ApiError(
            409,
            "user_already_exists",
            f"user {user_id!r} already exists natively in the new billing system",
        )


def _refuse_foreign_external_ids(session: Session, p: ImportIn) -> None:
    """An external id held by another user means two legacy records mapped onto one."""
    wanted: dict[type[m.Base], dict[str, str]] = {
        m.Customer: {p.customer.external_id: "customer.external_id"},
        m.Subscription: {
            s.external_id: f"subscriptions[{i}].external_id" for i, s in enumerate(p.subscriptions)
        },
        m.SubscriptionItem: {
            it.external_id: f"subscriptions[{i}].items[{j}].external_id"
            for i, s in enumerate(p.subscriptions)
            for j, it in enumerate(s.items)
        },
        m.Discount: {
            d.external_id: f"discounts[{i}].external_id" for i, d in enumerate(p.discounts)
        },
        m.Invoice: {v.external_id: f"invoices[{i}].external_id" for i, v in enumerate(p.invoices)},
        m.InvoiceLine: {
            li.external_id: f"invoices[{i}].lines[{j}].external_id"
            for i, v in enumerate(p.invoices)
            for j, li in enumerate(v.lines)
        },
        m.Payment: {x.external_id: f"payments[{i}].external_id" for i, x in enumerate(p.payments)},
        m.Refund: {r.external_id: f"refunds[{i}].external_id" for i, r in enumerate(p.refunds)},
    }
    clashes: list[FieldError] = []
    for model, locs in wanted.items():
        if not locs:
            continue
        column = model.external_id  # type: ignore[attr-defined]
        for ext in session.scalars(select(column).where(column.in_(list(locs)))):
            clashes.append(FieldError(locs[ext], f"external_id {ext!r} is held by another user"))
    if clashes:
        raise ApiError(
            409,
            "external_id_conflict",
            f"import for user {p.user_id!r} reuses external ids held by another user",
            clashes,
        )


Rows = list[tuple[type[m.Base], list[dict[str, Any]]]]
Held = dict[type[m.Base], dict[str, str]]


def _rows(p: ImportIn, import_id: str, now: datetime, held: Held | None = None) -> Rows:
    """Column dicts per table, parents before children, for Core ``executemany`` inserts.

    Core bulk inserts rather than ORM objects: an import is dozens of rows and the
    unit of work's per-attribute bookkeeping was most of its cost. ``held``: a re-import
    over a rolled-back user keeps the rows it already holds (matched by external id) and
    refers to them (``rollback.py``).
    """
    held = held or {}
    rows = _all_rows(p, import_id, now, held)
    return [
        (model, [r for r in found if r["external_id"] not in held.get(model, {})])
        for model, found in rows
    ]


def _all_rows(p: ImportIn, import_id: str, now: datetime, held: Held) -> Rows:
    uid, c, imp = p.user_id, p.customer, {"import_id": import_id}
    customer = {
        "id": m.new_id("cus_nb"),
        "user_id": uid,
        **imp,
        "external_id": c.external_id,
        "email": c.email,
        "name": c.name,
        "currency": c.currency,
        "balance": c.balance,
        "payment_method_ids": list(c.payment_method_ids),
        "metadata": dict(c.metadata),
        "created_at": now,
    }
    sub_ids = {s.external_id: m.new_id("sub_nb") for s in p.subscriptions}
    sub_ids |= held.get(m.Subscription, {})
    subs = [
        {
            "id": sub_ids[s.external_id],
            "user_id": uid,
            **imp,
            "next_renewal_at": None,
            "metadata": dict(s.metadata),
            **s.model_dump(exclude={"items", "metadata"}),
        }
        for s in p.subscriptions
    ]
    items = [
        {
            "id": m.new_id("si_nb"),
            "subscription_id": sub_ids[s.external_id],
            **imp,
            "position": pos,
            **it.model_dump(),
        }
        for s in p.subscriptions
        for pos, it in enumerate(s.items)
    ]
    discounts = [
        {
            "id": m.new_id("di_nb"),
            "user_id": uid,
            **imp,
            "subscription_id": sub_ids.get(d.subscription_external_id or ""),
            **d.model_dump(),
        }
        for d in p.discounts
    ]
    inv_ids = {v.external_id: m.new_id("in_nb") for v in p.invoices}
    inv_ids |= held.get(m.Invoice, {})
    invoices = [
        {
            "id": inv_ids[v.external_id],
            "user_id": uid,
            **imp,
            "subscription_id": sub_ids.get(v.subscription_external_id or ""),
            "metadata": dict(v.metadata),
            **v.model_dump(exclude={"lines", "metadata"}),
        }
        for v in p.invoices
    ]
    lines = [
        {
            "id": m.new_id("il_nb"),
            "invoice_id": inv_ids[v.external_id],
            **imp,
            "position": pos,
            **li.model_dump(),
        }
        for v in p.invoices
        for pos, li in enumerate(v.lines)
    ]
    pay_ids = {x.external_id: m.new_id("py_nb") for x in p.payments}
    pay_ids |= held.get(m.Payment, {})
    payments = [
        {
            "id": pay_ids[x.external_id],
            "user_id": uid,
            **imp,
            "offline_reference": None,
            "note": None,
            "invoice_id": inv_ids.get(x.invoice_external_id or ""),
            **x.model_dump(),
        }
        for x in p.payments
    ]
    refunds = [
        {
            "id": m.new_id("re_nb"),
            "user_id": uid,
            **imp,
            "offline_reference": None,
            "payment_id": pay_ids[r.payment_external_id],
            **r.model_dump(),
        }
        for r in p.refunds
    ]
    return [
        (m.Customer, [customer]),
        (m.Subscription, subs),
        (m.SubscriptionItem, items),
        (m.Discount, discounts),
        (m.Invoice, invoices),
        (m.InvoiceLine, lines),
        (m.Payment, payments),
        (m.Refund, refunds),
    ]


def _load(session: Session, import_id: str) -> m.Import:
    imp = session.get(m.Import, import_id, with_for_update=True)
    if imp is None:
        raise not_found("import", import_id)
    return imp


def import_detail(session: Session, imp: m.Import) -> dict[str, Any]:
    """The import plus its subscriptions' renewal dates (what activation decided)."""
    subs = session.scalars(
        select(m.Subscription)
        .where(m.Subscription.import_id == imp.id)
        .order_by(m.Subscription.created_at, m.Subscription.id)
    ).all()
    body = import_out(imp)
    body["subscriptions"] = [
        {
            "id": s.id,
            "external_id": s.external_id,
            "status": s.status,
            "next_renewal_at": fmt(s.next_renewal_at),
        }
        for s in subs
    ]
    return body


def get_import(session: Session, import_id: str) -> dict[str, Any]:
    imp = session.get(m.Import, import_id)
    if imp is None:
        raise not_found("import", import_id)
    return import_detail(session, imp)


def activate(session: Session, outbox: Outbox, import_id: str) -> WriteResult:
    imp = _load(session, import_id)
    if imp.status in ("discarded", "rolled_back"):
        raise ApiError(
            409, f"import_{imp.status}", f"import {imp.id} is {imp.status}; import again"
        )
    if imp.status == "active":
        return 200, import_detail(session, imp)
    imp.status, imp.activated_at = "active", utcnow()
    apply_customer_update(session, imp)
    subs = session.scalars(
        select(m.Subscription)
        .where(m.Subscription.import_id == imp.id)
        .order_by(m.Subscription.created_at, m.Subscription.id)
    ).all()
    for s in subs:
        if s.status in BILLING_STATUSES:
            s.next_renewal_at = s.trial_end if s.status == "trialing" else s.current_period_end
    session.flush()
    body = import_detail(session, imp)
    emit = outbox.emit
    emit(
        session,
        user_id=imp.user_id,
        type_="import.activated",
        obj=import_out(imp),
        cause="import",
        import_id=imp.id,
    )
    for s in subs:
        emit(
            session,
            user_id=imp.user_id,
            type_="subscription.created",
            obj=subscription_out(s),
            cause="import",
            import_id=imp.id,
        )
    return 200, body


def discard(session: Session, outbox: Outbox, import_id: str) -> WriteResult:
    imp = _load(session, import_id)
    if imp.status in ("active", "rolled_back"):
        raise ApiError(
            409, f"import_{imp.status}", f"import {imp.id} is {imp.status}; it can no longer be "
            "discarded"
        )  # fmt: skip
    if imp.status == "discarded":
        return 200, import_detail(session, imp)
    for model in m.IMPORTED_TABLES:
        session.execute(delete(model).where(model.import_id == imp.id))  # type: ignore[attr-defined]
    imp.status, imp.discarded_at = "discarded", utcnow()
    session.flush()
    body = import_detail(session, imp)
    outbox.emit(
        session,
        user_id=imp.user_id,
        type_="import.discarded",
        obj=import_out(imp),
        cause="import",
        import_id=imp.id,
    )
    return 200, body
