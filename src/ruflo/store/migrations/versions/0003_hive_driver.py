"""Who drives each hive: one row per hive naming the process whose engine drives it (host, pid, a
random instance id) and until when its lease holds; exactly one process may drive a hive.

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


def upgrade() -> None:
    op.create_table(
        "hive_drivers",
        sa.Column("hive_id", sa.Text, sa.ForeignKey("hives.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("instance", sa.Text, nullable=False),
        sa.Column("host", sa.Text, nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("driving_since", sa.Float(53), nullable=False),
        sa.Column("driver_until", sa.Float(53), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("hive_drivers")
