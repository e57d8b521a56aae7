"""multiplexer: the legacy change feed (who changed in legacy, and the window it covers)

Revision ID: 0009
Revises: 0007

The migration's re-check proves "unchanged since the snapshot" from the legacy
account's event stream instead of re-reading every user: ``legacy_changes`` holds the
last change time per id an event names (customer, object, or ``*``), written by the
shared event reads and by incoming legacy webhooks; ``legacy_change_feed`` (one row) is
the window those marks are complete for and the lease of the worker extending it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0007"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "legacy_changes",
        sa.Column("key", sa.String(120), nullable=False),
        sa.Column("changed_at", TS, nullable=False),
        sa.Column("event_type", sa.String(80), nullable=False),
        sa.Column("event_id", sa.String(120), nullable=False),
        sa.Column("source", sa.String(10), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_legacy_changes"),
    )
    op.create_index("ix_legacy_changes_changed_at", "legacy_changes", ["changed_at"])
    op.create_table(
        "legacy_change_feed",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("complete_from", TS, nullable=True),
        sa.Column("horizon", TS, nullable=True),
        sa.Column("gap", sa.Text, nullable=True),
        sa.Column("gap_at", TS, nullable=True),
        sa.Column("last_read_at", TS, nullable=True),
        sa.Column("lease_owner", sa.String(120), nullable=True),
        sa.Column("lease_until", TS, nullable=True),
        sa.Column("reads", sa.Integer, nullable=False),
        sa.Column("requests", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_legacy_change_feed"),
    )
    op.bulk_insert(
        sa.table(
            "legacy_change_feed",
            sa.column("id", sa.Integer),
            sa.column("reads", sa.Integer),
            sa.column("requests", sa.Integer),
        ),
        [{"id": 1, "reads": 0, "requests": 0}],
    )


def downgrade() -> None:
    op.drop_table("legacy_change_feed")
    op.drop_index("ix_legacy_changes_changed_at", table_name="legacy_changes")
    op.drop_table("legacy_changes")
