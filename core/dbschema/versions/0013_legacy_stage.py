"""multiplexer: a bulk read of the legacy account, staged in the database

Revision ID: 0013
Revises: 0012

A chunk's bulk read listed the whole legacy account and kept only the chunk, so a
600,000-user cohort in chunks of 1,000 would have read the account 600 times (the cost
estimate then chose per-user reads: about 9 requests per user, not 3.3); and ``users
sync`` held the whole account in memory, which a 600,000-customer account does not fit.
A read now keeps its objects in ``legacy_stage_objects`` (under its reader id), and
``legacy_stages`` points each scope (a cohort, ``users sync``) at its finished read.

``migrations.owner`` gains an index: each worker process refreshes its received marks
by owner every few seconds (``leases.beat_received``), which scanned every migration.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer, "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "legacy_stages",
        sa.Column("scope", sa.String(120), nullable=False),
        sa.Column("reader", sa.String(40), nullable=True),
        sa.Column("taken_at", TS, nullable=True),
        sa.Column("extra", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("scope", name="pk_legacy_stages"),
    )
    op.create_table(
        "legacy_stage_objects",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("scope", sa.String(120), nullable=False),
        sa.Column("reader", sa.String(40), nullable=False),
        sa.Column("customer_id", sa.String(120), nullable=False),
        sa.Column("list_name", sa.String(40), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_legacy_stage_objects"),
    )
    op.create_index(
        "ix_legacy_stage_objects_customer",
        "legacy_stage_objects",
        ["scope", "reader", "customer_id"],
    )
    op.create_index(
        "ix_legacy_stage_objects_list",
        "legacy_stage_objects",
        ["scope", "reader", "list_name", "id"],
    )
    op.create_index("ix_migrations_owner", "migrations", ["owner"])


def downgrade() -> None:
    op.drop_index("ix_migrations_owner", table_name="migrations")
    op.drop_index("ix_legacy_stage_objects_list", table_name="legacy_stage_objects")
    op.drop_index("ix_legacy_stage_objects_customer", table_name="legacy_stage_objects")
    op.drop_table("legacy_stage_objects")
    op.drop_table("legacy_stages")
