"""migration: a direction on every migration row (forward | rollback)

Revision ID: 0010
Revises: 0007

A rollback (the reverse saga, ``migration.rollback``) is a migration of its own: the
same rows, step records, leases and reaper, run over another step table. The
direction says which table; existing rows are forward migrations.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("migrations") as batch:
        batch.add_column(
            sa.Column("direction", sa.String(10), nullable=False, server_default="forward")
        )


def downgrade() -> None:
    with op.batch_alter_table("migrations") as batch:
        batch.drop_column("direction")
