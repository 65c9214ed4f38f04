"""The first schema: hives, agents, the board, events, ledger, approvals, chat, memory, workers.

Revision ID: 0001
Revises: -
Timestamps are float seconds since the epoch (UTC) and JSON is stored as text, so that the hot
path reads the same plain values on SQLite and Postgres.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.Float(53)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.create_table(
        "ruflo_meta",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.bulk_insert(sa.table("ruflo_meta", sa.column("key"), sa.column("value")),
                   [{"key": "app", "value": "ruflo"}])
    op.create_table(
        "hives",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("mode", sa.Text, nullable=False),
        sa.Column("objective", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("pause_reason", sa.Text),
        sa.Column("budget_tokens", sa.BigInteger),
        sa.Column("budget_cost", sa.Float(53)),
        sa.Column("workspace", sa.Text),
        sa.Column("config", sa.Text, nullable=False, server_default="{}"),
        sa.Column("owner", sa.Text),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("last_seq", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.create_index("hives_owner", "hives", ["owner", "created_at"])
    op.create_table(
        "agents",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("hive_id", sa.Text, sa.ForeignKey("hives.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("capabilities", sa.Text, nullable=False),
        sa.Column("skills", sa.Text, nullable=False),
        sa.Column("thresholds", sa.Text, nullable=False),
        sa.Column("adapter", sa.Text, nullable=False),
        sa.Column("adapter_config", sa.Text, nullable=False),
        sa.Column("model", sa.Text),
        sa.Column("reports_to", sa.Text),
        sa.Column("budget_tokens", sa.BigInteger),
        sa.Column("budget_cost", sa.Float(53)),
        sa.Column("spent_tokens", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("spent_cost", sa.Float(53), nullable=False, server_default="0"),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("current_task", sa.Text),
        sa.Column("heartbeat_at", TS),
        sa.Column("worker_id", sa.Text),
        sa.Column("ord", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.create_index("agents_hive", "agents", ["hive_id", "ord"])
    op.create_table(
        "tasks",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("hive_id", sa.Text, sa.ForeignKey("hives.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("parent_id", sa.Text),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("skills", sa.Text, nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("effort", sa.Float(53), nullable=False),
        sa.Column("depends_on", sa.Text, nullable=False),
        sa.Column("pending_deps", sa.Integer, nullable=False, server_default="0"),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("assignee", sa.Text),
        sa.Column("lease_until", TS),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("stimulus", sa.Float(53), nullable=False, server_default="0"),
        sa.Column("verify", sa.Text),
        sa.Column("result", sa.Text),
        sa.Column("verified", sa.Boolean),
        sa.Column("blocked_on", sa.Text),
        sa.Column("depth", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("claimed_at", TS),
        sa.Column("finished_at", TS),
        sa.Column("ord", sa.BigInteger, nullable=False, server_default="0"),
    )
    # The claim path: the most urgent ready task of a hive is the first entry of this index.
    op.create_index("tasks_ready", "tasks", ["hive_id", sa.text("priority DESC"), "ord"],
                    sqlite_where=sa.text("state = 'open' AND pending_deps = 0"),
                    postgresql_where=sa.text("state = 'open' AND pending_deps = 0"))
    # No state column here: a claim or finish then rewrites no page of this index.
    op.create_index("tasks_hive", "tasks", ["hive_id", "ord"])
    op.create_index("tasks_leases", "tasks", ["lease_until"],
                    sqlite_where=sa.text("state = 'claimed'"),
                    postgresql_where=sa.text("state = 'claimed'"))
    op.create_table(
        "task_deps",
        sa.Column("task_id", sa.Text, sa.ForeignKey("tasks.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("depends_on", sa.Text, primary_key=True),
    )
    op.create_index("task_deps_target", "task_deps", ["depends_on"])
    op.create_table(
        "events",
        sa.Column("hive_id", sa.Text, sa.ForeignKey("hives.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True),
        sa.Column("ts", TS, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("agent_id", sa.Text),
        sa.Column("task_id", sa.Text),
        sa.Column("data", sa.Text, nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "ledger",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("ts", TS, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger, nullable=False),
        sa.Column("completion_tokens", sa.BigInteger, nullable=False),
        sa.Column("cost", sa.Float(53)),
        sa.Column("cost_source", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("hive_id", sa.Text),
        sa.Column("agent_id", sa.Text),
        sa.Column("task_id", sa.Text),
        sa.Column("request_id", sa.Text),
    )
    op.create_index("ledger_hive", "ledger", ["hive_id", "id"])
    op.create_index("ledger_agent", "ledger", ["agent_id", "id"])
    op.create_table(
        "approvals",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("hive_id", sa.Text, sa.ForeignKey("hives.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("agent_id", sa.Text),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("decided_by", sa.Text),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("decided_at", TS),
    )
    op.create_index("approvals_hive", "approvals", ["hive_id", "status", "created_at"])
    op.create_table(
        "users",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "conversations",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("preprompt", sa.Text),
        sa.Column("root_message_id", sa.Text),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("conversations_user", "conversations", ["user_id", "updated_at"])
    op.create_table(
        "messages",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("conversation_id", sa.Text,
                  sa.ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False),
        sa.Column("ord", sa.Integer, nullable=False),
        sa.Column("parent_id", sa.Text),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("interrupted", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("messages_conversation", "messages", ["conversation_id", "ord"])
    op.create_table(
        "user_settings",
        sa.Column("user_id", sa.Text, primary_key=True),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "tokens",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("token_hash", sa.Text, nullable=False, unique=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked_at", TS),
    )
    op.create_table(
        "memory",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("namespace", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("tags", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.UniqueConstraint("namespace", "key", name="memory_namespace_key"),
    )
    if dialect == "sqlite":
        op.execute("CREATE VIRTUAL TABLE memory_fts USING fts5(key, content, tags, "
                   "content='memory', content_rowid='id', tokenize='porter unicode61')")
        op.execute("CREATE TRIGGER memory_ai AFTER INSERT ON memory BEGIN "
                   "INSERT INTO memory_fts(rowid, key, content, tags) "
                   "VALUES (new.id, new.key, new.content, new.tags); END")
        op.execute("CREATE TRIGGER memory_ad AFTER DELETE ON memory BEGIN "
                   "INSERT INTO memory_fts(memory_fts, rowid, key, content, tags) "
                   "VALUES ('delete', old.id, old.key, old.content, old.tags); END")
        op.execute("CREATE TRIGGER memory_au AFTER UPDATE ON memory BEGIN "
                   "INSERT INTO memory_fts(memory_fts, rowid, key, content, tags) "
                   "VALUES ('delete', old.id, old.key, old.content, old.tags); "
                   "INSERT INTO memory_fts(rowid, key, content, tags) "
                   "VALUES (new.id, new.key, new.content, new.tags); END")
    else:
        op.execute("ALTER TABLE memory ADD COLUMN tsv tsvector GENERATED ALWAYS AS ("
                   "setweight(to_tsvector('english', coalesce(key, '')), 'A') || "
                   "setweight(to_tsvector('english', coalesce(tags, '')), 'B') || "
                   "setweight(to_tsvector('english', coalesce(content, '')), 'C')) STORED")
        op.execute("CREATE INDEX memory_tsv ON memory USING gin (tsv)")
    op.create_table(
        "workers",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("hive_id", sa.Text),
        sa.Column("host", sa.Text, nullable=False),
        sa.Column("agents", sa.Integer, nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("heartbeat_at", TS, nullable=False),
    )


def downgrade() -> None:
    raise NotImplementedError("ruflo's store does not downgrade; restore a backup instead")
