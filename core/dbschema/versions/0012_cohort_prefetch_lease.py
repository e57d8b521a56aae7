"""migration: the lease of a cohort's prefetch task, and when a migration was queued

Revision ID: 0012
Revises: 0011

A prefetch task enqueues each member as its snapshot is stored, so a worker killed
mid-read left the members it had not reached pending, with no task, until the reaper's
one-hour "lost" sweep. The task now holds a lease on its cohort (owner + heartbeat, as a
migration's); gone stale, the reaper hands those members back within a lease period.

``migrations.queued_at``: the reaper's "lost" sweep counted from ``created_at``, so in a
cohort that takes hours every member still waiting for its chunk's read was presumed
lost after an hour, and handed to the control queue again at every reaper run.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("migrations") as batch:
        batch.add_column(sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("cohorts") as batch:
        batch.add_column(sa.Column("prefetch_owner", sa.String(120), nullable=True))
        batch.add_column(
            sa.Column("prefetch_heartbeat_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("cohorts") as batch:
        batch.drop_column("prefetch_heartbeat_at")
        batch.drop_column("prefetch_owner")
    with op.batch_alter_table("migrations") as batch:
        batch.drop_column("queued_at")
