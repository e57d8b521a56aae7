"""migration: shadow rehearsal of a cohort (runs, per-user shadow imports, comparisons)

Revision ID: 0011
Revises: 0007

A cohort still on legacy can be imported into the new system as *shadow* imports
(pending, never billing), kept in step with legacy and compared every day and on
every legacy webhook, before anyone moves (docs/architecture.md, "Shadow").
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer, "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "shadow_runs",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("cohort", sa.String(80), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("inject_bug", sa.String(40), nullable=True),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("until", TS, nullable=False),
        sa.Column("ended_at", TS, nullable=True),
        sa.Column("end_reason", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(120), nullable=False),
        sa.ForeignKeyConstraint(["cohort"], ["cohorts.name"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_shadow_runs_cohort", "shadow_runs", ["cohort"])
    op.create_table(
        "shadow_imports",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("run_id", sa.String(40), nullable=False),
        sa.Column("cohort", sa.String(80), nullable=False),
        sa.Column("user_id", sa.String(120), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("snapshot_id", BigId, nullable=True),
        sa.Column("content_hash", sa.String(64), nullable=True),
        sa.Column("import_id", sa.String(60), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("migration_id", sa.String(40), nullable=True),
        sa.Column("busy_until", TS, nullable=True),
        sa.Column("last_checked_at", TS, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["shadow_runs.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_shadow_imports_run_id", "shadow_imports", ["run_id"])
    op.create_index("ix_shadow_imports_user_id", "shadow_imports", ["user_id"])
    op.create_index(
        "ix_shadow_imports_run_user", "shadow_imports", ["run_id", "user_id"], unique=True
    )
    op.create_table(
        "shadow_checks",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(40), nullable=False),
        sa.Column("user_id", sa.String(120), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("trigger", sa.String(20), nullable=False),
        sa.Column("outcome", sa.String(10), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("checked_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_shadow_checks_run", "shadow_checks", ["run_id", "checked_at"])


def downgrade() -> None:
    op.drop_table("shadow_checks")
    op.drop_table("shadow_imports")
    op.drop_table("shadow_runs")
