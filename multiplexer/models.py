"""Multiplexer tables: routing, rollout policy, application tokens, webhook inbox and outbox,
the invoice-number index (``multiplexer.search_index``) and the legacy change feed
(``multiplexer.change_feed``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UtcDateTime, utcnow

BigId = sa.BigInteger().with_variant(sa.Integer, "sqlite")


class Route(Base):
    """Where one app user's billing lives. Changed only through ``routing.transition``."""

    __tablename__ = "routes"

    user_id: Mapped[str] = mapped_column(sa.String(120), primary_key=True)
    system: Mapped[str] = mapped_column(sa.String(10))  # legacy | new
    state: Mapped[str] = mapped_column(sa.String(12), index=True)
    held_from: Mapped[str | None] = mapped_column(sa.String(12), default=None)
    cohort: Mapped[str | None] = mapped_column(sa.String(80), default=None, index=True)
    legacy_customer_id: Mapped[str | None] = mapped_column(sa.String(120), unique=True)
    new_customer_id: Mapped[str | None] = mapped_column(sa.String(120), default=None, index=True)
    email: Mapped[str | None] = mapped_column(sa.String(254), default=None, index=True)
    name: Mapped[str | None] = mapped_column(sa.String(200), default=None)
    currency: Mapped[str | None] = mapped_column(sa.String(3), default=None)
    facets: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    # set when a migration of this user passed the pivot (legacy canceled): from then on
    # the route may never lead back to legacy (``routing.ALLOWED`` + ``transition``)
    pivoted_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    version: Mapped[int] = mapped_column(sa.Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)

    def snapshot(self) -> dict[str, Any]:
        """The audited view of a route (before/after in the activity log)."""
        return {
            "system": self.system,
            "state": self.state,
            "held_from": self.held_from,
            "cohort": self.cohort,
            "legacy_customer_id": self.legacy_customer_id,
            "new_customer_id": self.new_customer_id,
            "version": self.version,
        }


class InvoiceNumber(Base):
    """Invoice number -> user, for the admin search box (numbers are what customers quote).

    Kept in sync by ``multiplexer.search_index.index_invoice_numbers``: the migration's
    verify step, the admin user page and the ``twinbill users index-invoices`` backfill.
    The table is created by revision 0005.
    """

    __tablename__ = "invoice_numbers"

    number: Mapped[str] = mapped_column(sa.String(120), primary_key=True)
    system: Mapped[str] = mapped_column(sa.String(10), primary_key=True)  # legacy | new
    user_id: Mapped[str] = mapped_column(sa.String(120), index=True)


class RolloutPolicy(Base):
    """Single row: where brand-new users are placed."""

    __tablename__ = "rollout_policy"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    new_users_bp: Mapped[int] = mapped_column(sa.Integer, default=0)  # basis points of 100%
    salt: Mapped[str] = mapped_column(sa.String(64))
    allow: Mapped[list[str]] = mapped_column(sa.JSON, default=list)  # always new
    deny: Mapped[list[str]] = mapped_column(sa.JSON, default=list)  # always legacy
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class ApiToken(Base):
    """Bearer tokens of the application; only a SHA-256 of the secret is kept."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(sa.String(80), unique=True)
    prefix: Mapped[str] = mapped_column(sa.String(16))
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)


class InboundEvent(Base):
    """Every webhook received from either billing system, kept whatever its fate."""

    __tablename__ = "inbound_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(sa.String(10))  # legacy | new
    provider_event_id: Mapped[str] = mapped_column(sa.String(120))
    type: Mapped[str] = mapped_column(sa.String(80))
    user_id: Mapped[str | None] = mapped_column(sa.String(120), default=None, index=True)
    canonical_type: Mapped[str | None] = mapped_column(sa.String(80), default=None)
    # forwarded | suppressed | unknown_user | ignored
    disposition: Mapped[str] = mapped_column(sa.String(20), index=True)
    reason: Mapped[str | None] = mapped_column(sa.Text, default=None)
    payload: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    __table_args__ = (
        sa.UniqueConstraint(
            "provider", "provider_event_id", name="uq_inbound_events_provider_event"
        ),
    )


class OutboxMessage(Base):
    """A canonical event waiting to be delivered to the application, in order per user."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(sa.String(40), unique=True)
    user_id: Mapped[str] = mapped_column(sa.String(120))
    type: Mapped[str] = mapped_column(sa.String(80))
    body: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    status: Mapped[str] = mapped_column(sa.String(12), default="pending")  # pending|delivered|dead
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(sa.Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)

    __table_args__ = (
        sa.Index("ix_outbox_user_status", "user_id", "status", "id"),
        sa.Index("ix_outbox_status_next", "status", "next_attempt_at"),
    )


class OfflineMoney(Base):
    """One offline payment or refund (bank transfer), decided once per (user, kind, reference).

    The row is written *before* the backend write, in the transaction that decides to record
    it (``multiplexer.offline_ledger``): the unique constraint makes a concurrent double
    submit lose there, and a row left ``pending`` (the backend's answer was lost) is re-sent
    with the very same body and idempotency key, so the backend replays instead of
    recording twice. Created by revision 0006.
    """

    __tablename__ = "offline_money"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(sa.String(120))
    kind: Mapped[str] = mapped_column(sa.String(8))  # payment | refund
    reference: Mapped[str] = mapped_column(sa.String(120))
    system: Mapped[str] = mapped_column(sa.String(10))  # legacy | new
    amount: Mapped[int] = mapped_column(sa.BigInteger)  # minor units
    currency: Mapped[str] = mapped_column(sa.String(3))
    happened_at: Mapped[datetime] = mapped_column(UtcDateTime)  # paid_at / refunded_at as sent
    target_id: Mapped[str | None] = mapped_column(sa.String(120), default=None)  # invoice/payment
    note: Mapped[str | None] = mapped_column(sa.Text, default=None)
    request_hash: Mapped[str] = mapped_column(sa.String(64))  # of the caller's own fields
    idempotency_key: Mapped[str] = mapped_column(sa.String(200))
    status: Mapped[str] = mapped_column(sa.String(10), default="pending")  # pending | recorded
    record_id: Mapped[str | None] = mapped_column(sa.String(120), default=None)
    actor: Mapped[str] = mapped_column(sa.String(120))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    recorded_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)

    __table_args__ = (
        sa.UniqueConstraint("user_id", "kind", "reference", name="uq_offline_money_reference"),
    )


class LegacyChangeMark(Base):
    """The last time legacy changed something an id names (a customer, a plan, a charge,
    or ``*``: an owner the event could not tell). Written by the change feed's event reads
    and by incoming legacy webhooks; only ever moves forward. Revision 0009."""

    __tablename__ = "legacy_changes"

    key: Mapped[str] = mapped_column(sa.String(120), primary_key=True)
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    event_type: Mapped[str] = mapped_column(sa.String(80))
    event_id: Mapped[str] = mapped_column(sa.String(120))
    source: Mapped[str] = mapped_column(sa.String(10))  # events | webhook


class LegacyChangeFeed(Base):
    """Single row: the window the marks are complete for, and who may read next.

    Every legacy change stamped from ``complete_from`` up to ``horizon`` is in
    ``legacy_changes``. One worker at a time extends it (``lease_owner`` until
    ``lease_until``), at most once per refresh interval after ``last_read_at``.
    """

    __tablename__ = "legacy_change_feed"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    complete_from: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    horizon: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    gap: Mapped[str | None] = mapped_column(sa.Text, default=None)  # the last read's gap
    gap_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    last_read_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    lease_owner: Mapped[str | None] = mapped_column(sa.String(120), default=None)
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    reads: Mapped[int] = mapped_column(sa.Integer, default=0)  # event reads so far
    requests: Mapped[int] = mapped_column(sa.Integer, default=0)  # legacy requests they took


class LegacyStage(Base):
    """A bulk read of the legacy account kept in the database (``multiplexer.stage``): one
    per ``scope`` (a cohort's, ``users sync``'s), pointing at the read being served."""

    __tablename__ = "legacy_stages"

    scope: Mapped[str] = mapped_column(sa.String(120), primary_key=True)
    # the finished read whose rows are served, when it started, the adapter's notes on it
    reader: Mapped[str | None] = mapped_column(sa.String(40), default=None)
    taken_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    extra: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, default=None)


class LegacyStagedObject(Base):
    """One legacy object a staged read kept, under the read that kept it (``reader``)."""

    __tablename__ = "legacy_stage_objects"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    scope: Mapped[str] = mapped_column(sa.String(120))
    reader: Mapped[str] = mapped_column(sa.String(40))
    customer_id: Mapped[str] = mapped_column(sa.String(120))
    list_name: Mapped[str] = mapped_column(sa.String(40))
    body: Mapped[dict[str, Any]] = mapped_column(sa.JSON)

    __table_args__ = (
        sa.Index("ix_legacy_stage_objects_customer", "scope", "reader", "customer_id"),
        sa.Index("ix_legacy_stage_objects_list", "scope", "reader", "list_name", "id"),
    )
