"""The journal of the built-in agent's attempts: one row per attempt of a task (its opening
messages, the hash of the task it was made for, closed once the attempt ends) and one row per
thing the attempt did (an assistant message, a tool call started, a tool result), so a process
that takes the task up after a crash or a pause continues from the last completed turn.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "attempt_journals",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("hive_id", sa.Text, sa.ForeignKey("hives.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("task_id", sa.Text, nullable=False),
        sa.Column("agent_id", sa.Text, nullable=False),
        sa.Column("task_hash", sa.Text, nullable=False),
        sa.Column("opening", sa.Text, nullable=False),
        sa.Column("opened_at", sa.Float(53), nullable=False),
        sa.Column("closed_at", sa.Float(53)),
        sa.Column("close_reason", sa.Text),
    )
    op.create_index("attempt_journals_task", "attempt_journals", ["task_id", "opened_at"])
    op.create_table(
        "attempt_entries",
        sa.Column("journal_id", sa.Text,
                  sa.ForeignKey("attempt_journals.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("turn", sa.Integer, nullable=False),
        sa.Column("call_id", sa.Text),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("ts", sa.Float(53), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("attempt_entries")
    op.drop_index("attempt_journals_task", table_name="attempt_journals")
    op.drop_table("attempt_journals")
