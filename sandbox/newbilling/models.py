"""The service's own typed SQLAlchemy models (no code shared with twinbill).

Every imported row carries ``import_id`` so discarding a pending import can
delete exactly that import's rows in one statement per table. ``external_id`` is
globally unique per table (NULL for natively created records): an id held by
another user is a mapping bug to refuse, not to merge.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from .clock import UTCDateTime


def new_id(prefix: str) -> str:
    """Opaque random ids; the prefix tells a human what the id points at."""
    return f"{prefix}_{secrets.token_hex(12)}"


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), int: BigInteger(), dict[str, Any]: JSON()}


class Import(Base):
    __tablename__ = "nb_imports"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(200), index=True)
    status: Mapped[str] = mapped_column(String(20))  # pending | active | discarded | rolled_back
    source: Mapped[str] = mapped_column(String(50))
    source_ref: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]
    activated_at: Mapped[datetime | None]
    discarded_at: Mapped[datetime | None]
    counts: Mapped[dict[str, Any]]
    rolled_back_at: Mapped[datetime | None] = mapped_column(default=None)
    #: a re-import over a rolled-back user keeps its customer row: the customer fields of
    #: the payload wait here and are applied at activation (sandbox/newbilling/rollback.py)
    customer_update: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)


class Customer(Base):
    __tablename__ = "nb_customers"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(200), unique=True)
    import_id: Mapped[str | None] = mapped_column(ForeignKey("nb_imports.id"), index=True)
    external_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    email: Mapped[str | None] = mapped_column(String(320))
    name: Mapped[str | None] = mapped_column(String(500))
    currency: Mapped[str] = mapped_column(String(3))
    balance: Mapped[int]
    payment_method_ids: Mapped[list[str]] = mapped_column(JSON)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata")
    created_at: Mapped[datetime]


class Subscription(Base):
    __tablename__ = "nb_subscriptions"
    __table_args__ = (Index("ix_nb_subscriptions_user_created", "user_id", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(200))
    import_id: Mapped[str | None] = mapped_column(ForeignKey("nb_imports.id"), index=True)
    external_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    status: Mapped[str] = mapped_column(String(30))
    currency: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[datetime]
    current_period_start: Mapped[datetime]
    current_period_end: Mapped[datetime]
    trial_start: Mapped[datetime | None]
    trial_end: Mapped[datetime | None]
    cancel_at_period_end: Mapped[bool]
    canceled_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    next_renewal_at: Mapped[datetime | None]
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata")
    tax_rates: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    items: Mapped[list[SubscriptionItem]] = relationship(
        order_by="SubscriptionItem.position", cascade="all, delete-orphan", lazy="selectin"
    )


class SubscriptionItem(Base):
    __tablename__ = "nb_subscription_items"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(ForeignKey("nb_subscriptions.id"), index=True)
    import_id: Mapped[str | None] = mapped_column(ForeignKey("nb_imports.id"), index=True)
    external_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    position: Mapped[int] = mapped_column(Integer)
    plan_code: Mapped[str] = mapped_column(String(200))
    product_name: Mapped[str | None] = mapped_column(String(500))
    unit_amount: Mapped[int]
    quantity: Mapped[int]
    interval: Mapped[str] = mapped_column(String(10))
    interval_count: Mapped[int]


class Discount(Base):
    __tablename__ = "nb_discounts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(200), index=True)
    import_id: Mapped[str | None] = mapped_column(ForeignKey("nb_imports.id"), index=True)
    external_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    subscription_id: Mapped[str | None] = mapped_column(ForeignKey("nb_subscriptions.id"))
    subscription_external_id: Mapped[str | None] = mapped_column(String(200))
    coupon_code: Mapped[str] = mapped_column(String(200))
    percent_off_bp: Mapped[int | None]
    amount_off: Mapped[int | None]
    currency: Mapped[str | None] = mapped_column(String(3))
    duration: Mapped[str] = mapped_column(String(20))
    duration_in_months: Mapped[int | None]
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime | None]


class Invoice(Base):
    __tablename__ = "nb_invoices"
    __table_args__ = (Index("ix_nb_invoices_user_created", "user_id", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(200))
    import_id: Mapped[str | None] = mapped_column(ForeignKey("nb_imports.id"), index=True)
    external_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    number: Mapped[str | None] = mapped_column(String(200))
    subscription_id: Mapped[str | None] = mapped_column(ForeignKey("nb_subscriptions.id"))
    subscription_external_id: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20))
    currency: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[datetime]
    period_start: Mapped[datetime]
    period_end: Mapped[datetime]
    due_at: Mapped[datetime | None]
    paid_at: Mapped[datetime | None]
    subtotal: Mapped[int]
    discount_total: Mapped[int]
    tax: Mapped[int]
    tax_breakdown: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    total: Mapped[int]
    amount_paid: Mapped[int]
    amount_due: Mapped[int]
    balance_applied: Mapped[int] = mapped_column(default=0)
    paid_out_of_band: Mapped[bool]
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    lines: Mapped[list[InvoiceLine]] = relationship(
        order_by="InvoiceLine.position", cascade="all, delete-orphan", lazy="selectin"
    )


class InvoiceLine(Base):
    __tablename__ = "nb_invoice_lines"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    invoice_id: Mapped[str] = mapped_column(ForeignKey("nb_invoices.id"), index=True)
    import_id: Mapped[str | None] = mapped_column(ForeignKey("nb_imports.id"), index=True)
    external_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    position: Mapped[int] = mapped_column(Integer)
    description: Mapped[str | None] = mapped_column(Text)
    amount: Mapped[int]
    quantity: Mapped[int]
    period_start: Mapped[datetime]
    period_end: Mapped[datetime]
    proration: Mapped[bool]
    plan_code: Mapped[str | None] = mapped_column(String(200))


class Payment(Base):
    __tablename__ = "nb_payments"
    __table_args__ = (
        Index("ix_nb_payments_user_paid", "user_id", "paid_at", "id"),
        UniqueConstraint("user_id", "offline_reference", name="uq_nb_payments_offline_ref"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(200))
    import_id: Mapped[str | None] = mapped_column(ForeignKey("nb_imports.id"), index=True)
    external_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    invoice_id: Mapped[str | None] = mapped_column(ForeignKey("nb_invoices.id"))
    invoice_external_id: Mapped[str | None] = mapped_column(String(200))
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(20))
    method: Mapped[str] = mapped_column(String(20))
    payment_method_id: Mapped[str | None] = mapped_column(String(200))
    reference: Mapped[str | None] = mapped_column(String(500))
    # Set only for natively recorded offline payments: the (user, reference) dedupe key.
    offline_reference: Mapped[str | None] = mapped_column(String(500))
    note: Mapped[str | None] = mapped_column(Text)
    paid_at: Mapped[datetime]


class Refund(Base):
    __tablename__ = "nb_refunds"
    __table_args__ = (
        Index("ix_nb_refunds_user_created", "user_id", "created_at", "id"),
        UniqueConstraint("user_id", "offline_reference", name="uq_nb_refunds_offline_ref"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(200))
    import_id: Mapped[str | None] = mapped_column(ForeignKey("nb_imports.id"), index=True)
    external_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    payment_id: Mapped[str | None] = mapped_column(ForeignKey("nb_payments.id"), index=True)
    payment_external_id: Mapped[str | None] = mapped_column(String(200))
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str | None] = mapped_column(Text)
    method: Mapped[str] = mapped_column(String(20))
    reference: Mapped[str | None] = mapped_column(String(500))
    offline_reference: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime]


class IdempotencyKey(Base):
    """A stored response per (token, key); the token is kept only as a SHA-256 digest."""

    __tablename__ = "nb_idempotency_keys"
    __table_args__ = (UniqueConstraint("token_digest", "key", name="uq_nb_idempotency"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_digest: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(255))
    request_digest: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response_body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class OutboxEvent(Base):
    """Webhook events written in the same transaction as the change they describe."""

    __tablename__ = "nb_outbox"
    __table_args__ = (Index("ix_nb_outbox_pending", "delivered_at", "failed_at", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(40), unique=True)
    user_id: Mapped[str] = mapped_column(String(200), index=True)
    type: Mapped[str] = mapped_column(String(60))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]
    failed_at: Mapped[datetime | None]


IMPORTED_TABLES: tuple[type[Base], ...] = (
    Refund,
    Payment,
    InvoiceLine,
    Invoice,
    Discount,
    SubscriptionItem,
    Subscription,
    Customer,
)
"""Child-first order, so deletes never trip a foreign key."""
