"""admin: a one-shot flash message kept in the server-side session

Revision ID: 0007
Revises: 0006

Success and error banners after a redirect used to come from the query string,
so a crafted link could show a real-looking "Refund … recorded". The banner is
now written into the signed-in session's row and shown (and cleared) once.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("admin_sessions") as batch:
        batch.add_column(sa.Column("flash", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("admin_sessions") as batch:
        batch.drop_column("flash")
