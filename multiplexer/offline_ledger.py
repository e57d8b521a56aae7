"""The offline money ledger: one row per (user, kind, reference), decided before the write.

``earlier`` reads the row an identical earlier request left, before any check of the
request's target (a replay answers what the first request did, even when the first
refund took the whole payment). ``decide`` runs in one transaction: it either finds the
earlier row for this reference
(a replay when the caller's own fields are the same, a 422 when they differ) or
inserts a ``pending`` row under the unique constraint, so of two concurrent submits one
wins and the other replays. The backend write then carries the row's idempotency key
and the row's body (``happened_at`` filled *once*, when the row was decided), so a retry
after a lost answer sends exactly the same request and the backend replays it.
``recorded`` closes the row (with the audit entry, in one transaction); ``forget``
removes a row the backend definitively refused (nothing was written there).

The hash is of what the *caller* sent (``paid_at`` absent stays absent), never of what
the gateway filled in, so an identical retry with or without an Idempotency-Key is
recognised as the same request.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from core import audit
from core.db import transaction, utcnow
from core.errors import InvalidInput
from multiplexer.models import OfflineMoney

KINDS = ("payment", "refund")
ACTION = {"payment": "support.offline_payment", "refund": "support.offline_refund"}


def client_hash(kind: str, fields: dict[str, Any]) -> str:
    """SHA-256 of the caller's own fields (JSON, sorted keys; datetimes as ISO in UTC)."""
    plain = {
        k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in sorted(fields.items())
    }
    blob = json.dumps({"kind": kind, **plain}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Entry:
    id: int
    status: str  # pending | recorded
    idempotency_key: str
    happened_at: datetime
    record_id: str | None
    system: str
    fresh: bool  # decided by this call (False: an earlier identical request)


def _entry(row: OfflineMoney, *, fresh: bool) -> Entry:
    return Entry(
        row.id, row.status, row.idempotency_key, row.happened_at, row.record_id, row.system, fresh
    )


def find(session: Session, kind: str, user_id: str, reference: str) -> OfflineMoney | None:
    return session.scalar(
        sa.select(OfflineMoney).where(
            OfflineMoney.user_id == user_id,
            OfflineMoney.kind == kind,
            OfflineMoney.reference == reference,
        )
    )


def _same_or_refuse(row: OfflineMoney, request_hash: str) -> Entry:
    if row.request_hash and row.request_hash != request_hash:
        raise InvalidInput(
            f"reference {row.reference!r} was already used for another offline {row.kind} of "
            f"user {row.user_id!r} (recorded {row.created_at:%Y-%m-%d}) with different "
            "details; use a new reference, or send exactly the same request to replay it"
        )
    return _entry(row, fresh=False)


def earlier(
    sessions: sessionmaker[Session],
    kind: str,
    user_id: str,
    reference: str,
    request_hash: str,
    *,
    idempotency_key: str | None = None,
) -> Entry | None:
    """The row an identical earlier request left (a replay), or None. Refused
    (``InvalidInput``): the same reference with other details, and the caller's
    ``idempotency_key`` already used by this user's request for another reference."""
    with sessions() as session:
        row = find(session, kind, user_id, reference)
        if row is not None:
            return _same_or_refuse(row, request_hash)
        if idempotency_key is not None:
            other = session.scalar(
                sa.select(OfflineMoney).where(
                    OfflineMoney.user_id == user_id,
                    OfflineMoney.idempotency_key == idempotency_key,
                )
            )
            if other is not None:
                raise key_reused(idempotency_key, f"offline {other.kind} {other.reference!r}")
        return None


def key_reused(idempotency_key: str, first: str) -> InvalidInput:
    """The refusal of a caller's key sent again with another request than ``first``."""
    return InvalidInput(
        f"Idempotency-Key {idempotency_key!r} was already used for another request "
        f"({first}); use a new key for a different request"
    )


def decide(
    sessions: sessionmaker[Session],
    *,
    kind: str,
    user_id: str,
    reference: str,
    system: str,
    amount: int,
    currency: str,
    happened_at: datetime,
    target_id: str | None,
    note: str | None,
    request_hash: str,
    idempotency_key: str,
    actor: str,
) -> Entry:
    """The earlier row for this reference, or a new ``pending`` one (see the module doc)."""
    for _ in range(2):
        try:
            with transaction(sessions) as session:
                row = find(session, kind, user_id, reference)
                if row is not None:
                    return _same_or_refuse(row, request_hash)
                row = OfflineMoney(
                    user_id=user_id,
                    kind=kind,
                    reference=reference,
                    system=system,
                    amount=amount,
                    currency=currency,
                    happened_at=happened_at,
                    target_id=target_id,
                    note=note,
                    request_hash=request_hash,
                    idempotency_key=idempotency_key,
                    status="pending",
                    actor=actor,
                )
                session.add(row)
                session.flush()
                return _entry(row, fresh=True)
        except IntegrityError:
            continue  # a concurrent submit won the unique constraint: read its row
    raise InvalidInput(f"reference {reference!r} is being recorded right now; retry")


def recorded(
    sessions: sessionmaker[Session],
    entry_id: int,
    record_id: str,
    *,
    actor: str,
    after: dict[str, Any],
    reason: str | None,
) -> None:
    """Close the row and write its audit entry, in one transaction."""
    with transaction(sessions) as session:
        row = session.get(OfflineMoney, entry_id)
        assert row is not None
        if row.status == "recorded":
            return
        row.status, row.record_id, row.recorded_at = "recorded", record_id, utcnow()
        audit.record(
            session,
            actor=actor,
            action=ACTION[row.kind],
            resource_type="user",
            resource_id=row.user_id,
            after={"system": row.system, **after},
            reason=reason,
        )


def forget(sessions: sessionmaker[Session], entry_id: int) -> None:
    """The backend refused the write for good: nothing was recorded, free the reference."""
    with transaction(sessions) as session:
        row = session.get(OfflineMoney, entry_id)
        if row is not None and row.status == "pending":
            session.delete(row)


def pending(sessions: sessionmaker[Session], *, older_than: datetime) -> list[OfflineMoney]:
    """Rows whose backend answer was never seen (recovery: ``BillingMux.recover_offline``)."""
    with sessions() as session:
        rows = list(
            session.scalars(
                sa.select(OfflineMoney)
                .where(OfflineMoney.status == "pending", OfflineMoney.created_at < older_than)
                .order_by(OfflineMoney.id)
            )
        )
        for row in rows:
            session.expunge(row)
        return rows
