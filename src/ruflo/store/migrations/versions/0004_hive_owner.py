"""Every hive has an owner, and a token may carry scopes (`operator`: may define commands and
change any hive over HTTP).

Revision ID: 0004
Revises: 0002 (re-chained onto 0003 at merge)
Hives stored without an owner (made by the CLI, MCP, a worker or a comparison before owners
were kept) are given to "local", the user of this machine, as new ones made there are.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

LOCAL_USER = "local"
"""ruflo.model.LOCAL_USER as it was when this migration was written (migrations never follow
later changes of the code)."""


def upgrade() -> None:
    op.execute(f"UPDATE hives SET owner = '{LOCAL_USER}' WHERE owner IS NULL")
    # A JSON list of scope names, as the store keeps other lists.
    op.add_column("tokens", sa.Column("scopes", sa.Text, nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("tokens") as batch:
        batch.drop_column("scopes")
