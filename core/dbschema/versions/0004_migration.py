"""migration: migrations, saga steps, snapshots, cohorts

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer, "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "migrations",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("user_id", sa.String(120), nullable=False),
        sa.Column("cohort", sa.String(80), nullable=True),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("step", sa.String(20), nullable=True),
        sa.Column("pivoted", sa.Boolean(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("include_in_flight", sa.Boolean(), nullable=False),
        sa.Column("inject_bug", sa.String(40), nullable=True),
        sa.Column("snapshot_id", BigId, nullable=True),
        sa.Column("import_id", sa.String(60), nullable=True),
        sa.Column("owner", sa.String(120), nullable=True),
        sa.Column("heartbeat_at", TS, nullable=True),
        sa.Column("error_kind", sa.String(20), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("defer_reason", sa.Text(), nullable=True),
        sa.Column("defer_until", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_migrations"),
    )
    op.create_index("ix_migrations_user_id", "migrations", ["user_id"])
    op.create_index("ix_migrations_cohort", "migrations", ["cohort"])
    op.create_index("ix_migrations_status", "migrations", ["status"])
    op.create_index("ix_migrations_heartbeat_at", "migrations", ["heartbeat_at"])

    op.create_table(
        "migration_steps",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("migration_id", sa.String(40), nullable=False),
        sa.Column("step", sa.String(20), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("outcome", sa.String(12), nullable=False),
        sa.Column("error_kind", sa.String(20), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sa.String(120), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["migration_id"], ["migrations.id"], name="fk_migration_steps_migration_id_migrations"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_migration_steps"),
    )
    op.create_index("ix_migration_steps_migration", "migration_steps", ["migration_id", "id"])

    op.create_table(
        "snapshots",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("migration_id", sa.String(40), nullable=False),
        sa.Column("user_id", sa.String(120), nullable=False),
        sa.Column("customer_id", sa.String(120), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("taken_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_snapshots"),
    )
    op.create_index("ix_snapshots_migration_id", "snapshots", ["migration_id"])
    op.create_index("ix_snapshots_user_id", "snapshots", ["user_id"])

    op.create_table(
        "cohorts",
        sa.Column("name", sa.String(80), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("halt_at_bp", sa.Integer(), nullable=False),
        sa.Column("halt_reason", sa.Text(), nullable=True),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("include_in_flight", sa.Boolean(), nullable=False),
        sa.Column("inject_bug", sa.String(40), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_cohorts"),
    )

    op.create_table(
        "cohort_members",
        sa.Column("cohort", sa.String(80), nullable=False),
        sa.Column("user_id", sa.String(120), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("migration_id", sa.String(40), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("error_kind", sa.String(20), nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["cohort"], ["cohorts.name"], name="fk_cohort_members_cohort_cohorts"
        ),
        sa.PrimaryKeyConstraint("cohort", "user_id", name="pk_cohort_members"),
    )
    op.create_index("ix_cohort_members_status", "cohort_members", ["cohort", "status"])


def downgrade() -> None:
    for table in ("cohort_members", "cohorts", "snapshots", "migration_steps", "migrations"):
        op.drop_table(table)
