"""reconciler: stored reports and per-user results

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_BigId = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "reconciliation_reports",
        sa.Column("id", _BigId, primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(120), nullable=False),
        sa.Column("scope_kind", sa.String(20), nullable=False),
        sa.Column("scope_value", sa.String(200), nullable=True),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("users_checked", sa.Integer(), nullable=False),
        sa.Column("users_with_differences", sa.Integer(), nullable=False),
        sa.Column("differences", sa.Integer(), nullable=False),
        sa.Column("violations", sa.Integer(), nullable=False),
        sa.Column("counts_by_kind", sa.JSON(), nullable=False),
        sa.Column("clean", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_reconciliation_reports"),
    )
    op.create_index(
        "ix_reconciliation_reports_created_at", "reconciliation_reports", ["created_at"]
    )
    op.create_index(
        "ix_reconciliation_reports_scope",
        "reconciliation_reports",
        ["scope_kind", "scope_value", "id"],
    )
    op.create_table(
        "reconciliation_results",
        sa.Column("id", _BigId, primary_key=True, autoincrement=True),
        sa.Column("report_id", _BigId, nullable=False),
        sa.Column("user_id", sa.String(120), nullable=False),
        sa.Column("cohort", sa.String(120), nullable=True),
        sa.Column("clean", sa.Boolean(), nullable=False),
        sa.Column("differences", sa.Integer(), nullable=False),
        sa.Column("violations", sa.Integer(), nullable=False),
        sa.Column("counts_by_kind", sa.JSON(), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_reconciliation_results"),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["reconciliation_reports.id"],
            ondelete="CASCADE",
            name="fk_reconciliation_results_report_id_reconciliation_reports",
        ),
    )
    op.create_index("ix_reconciliation_results_report_id", "reconciliation_results", ["report_id"])
    op.create_index("ix_reconciliation_results_user", "reconciliation_results", ["user_id", "id"])
    op.create_index(
        "ix_reconciliation_results_cohort",
        "reconciliation_results",
        ["cohort", "checked_at", "user_id"],
    )


def downgrade() -> None:
    op.drop_table("reconciliation_results")
    op.drop_table("reconciliation_reports")
