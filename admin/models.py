"""Admin tables: operator accounts, server-side sessions, sign-in attempts; search indexes.

Passwords are argon2 hashes; session cookies carry a random token of which only
a keyed hash is stored, so a database dump cannot be replayed as a cookie.
``invoice_numbers`` (the search index support staff type invoice numbers into)
lives in the multiplexer layer (``multiplexer.models.InvoiceNumber``) so that
the migration can keep it in sync; only its search index is declared here.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UtcDateTime, utcnow
from multiplexer.models import InvoiceNumber, Route

BigId = sa.BigInteger().with_variant(sa.Integer, "sqlite")

ROLES = ("support", "finance", "developer", "admin")


class AdminUser(Base):
    __tablename__ = "admin_users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)  # stored lower-case
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    role: Mapped[str] = mapped_column(sa.String(12))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    disabled_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)


class AdminSession(Base):
    __tablename__ = "admin_sessions"

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)  # HMAC of the cookie token
    user_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("admin_users.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    ip: Mapped[str | None] = mapped_column(sa.String(64), default=None)
    #: one-shot banners for the next page ([{"kind": "ok"|"bad", "text": ...}]), never from a URL
    flash: Mapped[list[dict[str, str]] | None] = mapped_column(sa.JSON, default=None)


class LoginAttempt(Base):
    """One row per sign-in attempt; throttling counts recent failures per email and per IP."""

    __tablename__ = "admin_login_attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    email_key: Mapped[str] = mapped_column(sa.String(64))  # SHA-256 of the lower-cased email
    ip: Mapped[str] = mapped_column(sa.String(64))
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    ok: Mapped[bool] = mapped_column(sa.Boolean, default=False)

    __table_args__ = (
        sa.Index("ix_admin_login_attempts_email", "email_key", "at"),
        sa.Index("ix_admin_login_attempts_ip", "ip", "at"),
    )


#: Search indexes on the routing table and the invoice numbers (revision 0005).
#: ``lower(col)`` btree indexes serve prefix search everywhere (``text_pattern_ops``
#: on PostgreSQL so ``LIKE 'abc%'`` can use them); pg_trgm GIN indexes serve
#: substring search of email and name on PostgreSQL only (ids are searched by prefix).
ix_routes_name = sa.Index("ix_routes_name", Route.name)


def _lower_prefix(name: str, column: sa.ColumnElement[str]) -> sa.Index:
    label = f"{name}_expr"
    return sa.Index(
        name, sa.func.lower(column).label(label), postgresql_ops={label: "text_pattern_ops"}
    )


def _trigram(name: str, column: sa.ColumnElement[str]) -> sa.Index:
    label = f"{name}_expr"
    index = sa.Index(
        name,
        sa.func.lower(column).label(label),
        postgresql_using="gin",
        postgresql_ops={label: "gin_trgm_ops"},
    )
    return index.ddl_if(dialect="postgresql")


SEARCH_INDEXES = (
    _lower_prefix("ix_routes_email_lower_prefix", Route.email),
    _lower_prefix("ix_routes_name_lower_prefix", Route.name),
    _lower_prefix("ix_routes_user_id_lower_prefix", Route.user_id),
    _lower_prefix("ix_invoice_numbers_lower_prefix", InvoiceNumber.number),
    _trigram("ix_routes_email_trgm", Route.email),
    _trigram("ix_routes_name_trgm", Route.name),
)
