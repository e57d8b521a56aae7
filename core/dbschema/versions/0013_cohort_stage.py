"""migration: a cohort's account read, staged in the database for all its chunks

Revision ID: 0013
Revises: 0012

A chunk's bulk read read the whole legacy account and kept only the chunk's members,
so a 600,000-user cohort in chunks of 1,000 would have read the account 600 times: the
cost estimate then chose per-user reads (about 9 requests per user, not 3.3). The
account is now read once per cohort into ``cohort_stage`` (the members' objects only)
and each chunk's snapshots are assembled from it; ``cohorts.stage_taken_at`` is set
when that read is complete.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("cohorts") as batch:
        batch.add_column(sa.Column("stage_taken_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("stage_extra", sa.JSON(), nullable=True))
    op.create_table(
        "cohort_stage",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("cohort", sa.String(80), nullable=False),
        sa.Column("reader", sa.String(40), nullable=False),
        sa.Column("customer_id", sa.String(120), nullable=False),
        sa.Column("list_name", sa.String(40), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_cohort_stage"),
        sa.ForeignKeyConstraint(
            ["cohort"], ["cohorts.name"], name="fk_cohort_stage_cohort_cohorts", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_cohort_stage_customer", "cohort_stage", ["cohort", "reader", "customer_id"])


def downgrade() -> None:
    op.drop_index("ix_cohort_stage_customer", table_name="cohort_stage")
    op.drop_table("cohort_stage")
    with op.batch_alter_table("cohorts") as batch:
        batch.drop_column("stage_extra")
        batch.drop_column("stage_taken_at")
