"""Running spend per hive and per agent, kept with each ledger entry, so a budget check reads one
row instead of summing the hive's whole ledger before every gateway call.

Revision ID: 0002
Revises: 0001
Existing ledgers are summed into it once, here.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "spend_totals",
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("scope_id", sa.Text, nullable=False),
        sa.Column("tokens", sa.BigInteger, nullable=False),
        sa.Column("cost", sa.Float(53), nullable=False),
        sa.Column("calls", sa.BigInteger, nullable=False),
        sa.Column("unknown_cost_calls", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("scope", "scope_id"),
    )
    for scope, column in (("hive", "hive_id"), ("agent", "agent_id")):
        op.execute(
            "INSERT INTO spend_totals (scope, scope_id, tokens, cost, calls, unknown_cost_calls) "
            f"SELECT '{scope}', {column}, SUM(prompt_tokens + completion_tokens), "
            "COALESCE(SUM(cost), 0), COUNT(*), SUM(CASE WHEN cost IS NULL THEN 1 ELSE 0 END) "
            f"FROM ledger WHERE {column} IS NOT NULL GROUP BY {column}")


def downgrade() -> None:
    op.drop_table("spend_totals")
