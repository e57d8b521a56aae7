"""offline money ledger (unique user + kind + reference) and the route's pivot mark

Revision ID: 0006
Revises: 0005

``offline_money`` replaces the scan of audit JSON that de-duplicated offline
payments/refunds: the row is written in the transaction that decides to record
one, before the backend write, under a unique (user_id, kind, reference).
Existing offline entries of the activity log are copied in as ``recorded``.

``routes.pivoted_at`` is set when a migration of the user passes the pivot (the
legacy cancel); the route state machine then refuses ``failed -> legacy``.
Routes whose migration already pivoted are backfilled from ``migrations``.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer, "sqlite")
TS = sa.DateTime(timezone=True)
KINDS = {"support.offline_payment": "payment", "support.offline_refund": "refund"}


def upgrade() -> None:
    with op.batch_alter_table("routes") as batch:
        batch.add_column(sa.Column("pivoted_at", TS, nullable=True))
    op.create_table(
        "offline_money",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.String(120), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("reference", sa.String(120), nullable=False),
        sa.Column("system", sa.String(10), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("happened_at", TS, nullable=False),
        sa.Column("target_id", sa.String(120), nullable=True),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("record_id", sa.String(120), nullable=True),
        sa.Column("actor", sa.String(120), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("recorded_at", TS, nullable=True),
        sa.UniqueConstraint("user_id", "kind", "reference", name="uq_offline_money_reference"),
    )
    op.create_index("ix_offline_money_created_at", "offline_money", ["created_at"])
    _backfill()


def _backfill() -> None:
    conn = op.get_bind()
    conn.execute(
        sa.text(
            "UPDATE routes SET pivoted_at = (SELECT max(m.created_at) FROM migrations m "
            "WHERE m.user_id = routes.user_id AND m.pivoted) "
            "WHERE state = 'failed' AND EXISTS (SELECT 1 FROM migrations m "
            "WHERE m.user_id = routes.user_id AND m.pivoted)"
        )
    )
    rows = conn.execute(
        sa.text(
            "SELECT id, at, actor, action, resource_id, reason, after FROM audit_log "
            "WHERE action IN ('support.offline_payment', 'support.offline_refund') ORDER BY id"
        )
    )
    seen: set[tuple[str, str, str]] = set()
    table = sa.table(
        "offline_money",
        *(
            sa.column(c)
            for c in (
                "user_id",
                "kind",
                "reference",
                "system",
                "amount",
                "currency",
                "happened_at",
                "note",
                "request_hash",
                "idempotency_key",
                "status",
                "record_id",
                "actor",
                "created_at",
                "recorded_at",
            )
        ),  # fmt: skip
    )
    for row in rows:
        after = row.after if isinstance(row.after, dict) else json.loads(row.after or "{}")
        kind = KINDS[row.action]
        key = (row.resource_id, kind, str(after.get("reference") or ""))
        if key in seen or not key[2]:
            continue
        seen.add(key)
        conn.execute(
            table.insert().values(
                user_id=row.resource_id,
                kind=kind,
                reference=key[2],
                system=str(after.get("system") or ""),
                amount=int(after.get("amount") or 0),
                currency=str(after.get("currency") or ""),
                happened_at=row.at,
                note=row.reason,
                request_hash="",
                idempotency_key="",
                status="recorded",
                record_id=str(after.get("payment") or after.get("refund") or ""),
                actor=row.actor,
                created_at=row.at,
                recorded_at=row.at,
            )
        )


def downgrade() -> None:
    op.drop_index("ix_offline_money_created_at", table_name="offline_money")
    op.drop_table("offline_money")
    with op.batch_alter_table("routes") as batch:
        batch.drop_column("pivoted_at")
