"""The embedded store's schema at the head revision as plain SQL, so a fresh SQLite store is made
in milliseconds instead of through Alembic (whose imports alone cost ~0.5 s of a first start).
A test builds a store both ways and requires identical dumps. Depends on the standard library.

Regenerate after adding a migration:  python -m ruflo.store.resnapshot  (prints this module).
"""

from __future__ import annotations

import sqlite3

REVISION = "0005"
"""The migration these statements equal; a store is made from them only at this revision."""

SQLITE_SCHEMA: tuple[str, ...] = (
    'CREATE TABLE alembic_version (\n\tversion_num VARCHAR(32) NOT NULL, \n\tCONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)\n)',
    'CREATE TABLE ruflo_meta (\n\t"key" TEXT NOT NULL, \n\tvalue TEXT NOT NULL, \n\tPRIMARY KEY ("key")\n)',
    "CREATE TABLE hives (\n\tid TEXT NOT NULL, \n\tname TEXT NOT NULL, \n\tmode TEXT NOT NULL, \n\tobjective TEXT NOT NULL, \n\tstatus TEXT NOT NULL, \n\tpause_reason TEXT, \n\tbudget_tokens BIGINT, \n\tbudget_cost FLOAT, \n\tworkspace TEXT, \n\tconfig TEXT DEFAULT '{}' NOT NULL, \n\towner TEXT, \n\tcreated_at FLOAT NOT NULL, \n\tupdated_at FLOAT NOT NULL, \n\tlast_seq BIGINT DEFAULT '0' NOT NULL, \n\tPRIMARY KEY (id)\n)",
    'CREATE INDEX hives_owner ON hives (owner, created_at)',
    "CREATE TABLE agents (\n\tid TEXT NOT NULL, \n\thive_id TEXT NOT NULL, \n\tname TEXT NOT NULL, \n\trole TEXT NOT NULL, \n\ttitle TEXT NOT NULL, \n\tcapabilities TEXT NOT NULL, \n\tskills TEXT NOT NULL, \n\tthresholds TEXT NOT NULL, \n\tadapter TEXT NOT NULL, \n\tadapter_config TEXT NOT NULL, \n\tmodel TEXT, \n\treports_to TEXT, \n\tbudget_tokens BIGINT, \n\tbudget_cost FLOAT, \n\tspent_tokens BIGINT DEFAULT '0' NOT NULL, \n\tspent_cost FLOAT DEFAULT '0' NOT NULL, \n\tstatus TEXT NOT NULL, \n\tcurrent_task TEXT, \n\theartbeat_at FLOAT, \n\tworker_id TEXT, \n\tord BIGINT DEFAULT '0' NOT NULL, \n\tPRIMARY KEY (id), \n\tFOREIGN KEY(hive_id) REFERENCES hives (id) ON DELETE CASCADE\n)",
    'CREATE INDEX agents_hive ON agents (hive_id, ord)',
    "CREATE TABLE tasks (\n\tid TEXT NOT NULL, \n\thive_id TEXT NOT NULL, \n\tparent_id TEXT, \n\ttitle TEXT NOT NULL, \n\tdescription TEXT NOT NULL, \n\tskills TEXT NOT NULL, \n\tpriority INTEGER NOT NULL, \n\teffort FLOAT NOT NULL, \n\tdepends_on TEXT NOT NULL, \n\tpending_deps INTEGER DEFAULT '0' NOT NULL, \n\tstate TEXT NOT NULL, \n\tassignee TEXT, \n\tlease_until FLOAT, \n\tattempts INTEGER DEFAULT '0' NOT NULL, \n\tstimulus FLOAT DEFAULT '0' NOT NULL, \n\tverify TEXT, \n\tresult TEXT, \n\tverified BOOLEAN, \n\tblocked_on TEXT, \n\tdepth INTEGER DEFAULT '0' NOT NULL, \n\tcreated_at FLOAT NOT NULL, \n\tupdated_at FLOAT NOT NULL, \n\tclaimed_at FLOAT, \n\tfinished_at FLOAT, \n\tord BIGINT DEFAULT '0' NOT NULL, \n\tPRIMARY KEY (id), \n\tFOREIGN KEY(hive_id) REFERENCES hives (id) ON DELETE CASCADE\n)",
    "CREATE INDEX tasks_ready ON tasks (hive_id, priority DESC, ord) WHERE state = 'open' AND pending_deps = 0",
    'CREATE INDEX tasks_hive ON tasks (hive_id, ord)',
    "CREATE INDEX tasks_leases ON tasks (lease_until) WHERE state = 'claimed'",
    'CREATE TABLE task_deps (\n\ttask_id TEXT NOT NULL, \n\tdepends_on TEXT NOT NULL, \n\tPRIMARY KEY (task_id, depends_on), \n\tFOREIGN KEY(task_id) REFERENCES tasks (id) ON DELETE CASCADE\n)',
    'CREATE INDEX task_deps_target ON task_deps (depends_on)',
    'CREATE TABLE events (\n\thive_id TEXT NOT NULL, \n\tseq BIGINT NOT NULL, \n\tts FLOAT NOT NULL, \n\tkind TEXT NOT NULL, \n\tagent_id TEXT, \n\ttask_id TEXT, \n\tdata TEXT NOT NULL, \n\tPRIMARY KEY (hive_id, seq), \n\tFOREIGN KEY(hive_id) REFERENCES hives (id) ON DELETE CASCADE\n)\n WITHOUT ROWID\n\n',
    'CREATE TABLE ledger (\n\tid INTEGER NOT NULL, \n\tts FLOAT NOT NULL, \n\tmodel TEXT NOT NULL, \n\tprompt_tokens BIGINT NOT NULL, \n\tcompletion_tokens BIGINT NOT NULL, \n\tcost FLOAT, \n\tcost_source TEXT NOT NULL, \n\tkind TEXT NOT NULL, \n\thive_id TEXT, \n\tagent_id TEXT, \n\ttask_id TEXT, \n\trequest_id TEXT, \n\tPRIMARY KEY (id)\n)',
    'CREATE INDEX ledger_hive ON ledger (hive_id, id)',
    'CREATE INDEX ledger_agent ON ledger (agent_id, id)',
    'CREATE TABLE approvals (\n\tid TEXT NOT NULL, \n\thive_id TEXT NOT NULL, \n\tkind TEXT NOT NULL, \n\tsubject TEXT NOT NULL, \n\tstatus TEXT NOT NULL, \n\tagent_id TEXT, \n\tdata TEXT NOT NULL, \n\tdecided_by TEXT, \n\tcreated_at FLOAT NOT NULL, \n\tdecided_at FLOAT, \n\tPRIMARY KEY (id), \n\tFOREIGN KEY(hive_id) REFERENCES hives (id) ON DELETE CASCADE\n)',
    'CREATE INDEX approvals_hive ON approvals (hive_id, status, created_at)',
    'CREATE TABLE users (\n\tid TEXT NOT NULL, \n\tdata TEXT NOT NULL, \n\tcreated_at FLOAT NOT NULL, \n\tupdated_at FLOAT NOT NULL, \n\tPRIMARY KEY (id)\n)',
    'CREATE TABLE conversations (\n\tid TEXT NOT NULL, \n\tuser_id TEXT NOT NULL, \n\ttitle TEXT NOT NULL, \n\tmodel TEXT NOT NULL, \n\tpreprompt TEXT, \n\troot_message_id TEXT, \n\tdata TEXT NOT NULL, \n\tcreated_at FLOAT NOT NULL, \n\tupdated_at FLOAT NOT NULL, \n\tPRIMARY KEY (id)\n)',
    'CREATE INDEX conversations_user ON conversations (user_id, updated_at)',
    'CREATE TABLE messages (\n\tid TEXT NOT NULL, \n\tconversation_id TEXT NOT NULL, \n\tord INTEGER NOT NULL, \n\tparent_id TEXT, \n\trole TEXT NOT NULL, \n\tcontent TEXT NOT NULL, \n\tinterrupted BOOLEAN DEFAULT 0 NOT NULL, \n\tdata TEXT NOT NULL, \n\tcreated_at FLOAT NOT NULL, \n\tupdated_at FLOAT NOT NULL, \n\tPRIMARY KEY (id), \n\tFOREIGN KEY(conversation_id) REFERENCES conversations (id) ON DELETE CASCADE\n)',
    'CREATE INDEX messages_conversation ON messages (conversation_id, ord)',
    'CREATE TABLE user_settings (\n\tuser_id TEXT NOT NULL, \n\tdata TEXT NOT NULL, \n\tupdated_at FLOAT NOT NULL, \n\tPRIMARY KEY (user_id)\n)',
    "CREATE TABLE tokens (\n\tid TEXT NOT NULL, \n\tname TEXT NOT NULL, \n\tuser_id TEXT NOT NULL, \n\ttoken_hash TEXT NOT NULL, \n\tcreated_at FLOAT NOT NULL, \n\trevoked_at FLOAT, scopes TEXT DEFAULT '[]' NOT NULL, \n\tPRIMARY KEY (id), \n\tUNIQUE (token_hash)\n)",
    'CREATE TABLE memory (\n\tid INTEGER NOT NULL, \n\tnamespace TEXT NOT NULL, \n\t"key" TEXT NOT NULL, \n\tcontent TEXT NOT NULL, \n\ttags TEXT NOT NULL, \n\tcreated_at FLOAT NOT NULL, \n\tupdated_at FLOAT NOT NULL, \n\tPRIMARY KEY (id), \n\tCONSTRAINT memory_namespace_key UNIQUE (namespace, "key")\n)',
    "CREATE VIRTUAL TABLE memory_fts USING fts5(key, content, tags, content='memory', content_rowid='id', tokenize='porter unicode61')",
    'CREATE TRIGGER memory_ai AFTER INSERT ON memory BEGIN INSERT INTO memory_fts(rowid, key, content, tags) VALUES (new.id, new.key, new.content, new.tags); END',
    "CREATE TRIGGER memory_ad AFTER DELETE ON memory BEGIN INSERT INTO memory_fts(memory_fts, rowid, key, content, tags) VALUES ('delete', old.id, old.key, old.content, old.tags); END",
    "CREATE TRIGGER memory_au AFTER UPDATE ON memory BEGIN INSERT INTO memory_fts(memory_fts, rowid, key, content, tags) VALUES ('delete', old.id, old.key, old.content, old.tags); INSERT INTO memory_fts(rowid, key, content, tags) VALUES (new.id, new.key, new.content, new.tags); END",
    'CREATE TABLE workers (\n\tid TEXT NOT NULL, \n\thive_id TEXT, \n\thost TEXT NOT NULL, \n\tagents INTEGER NOT NULL, \n\tstarted_at FLOAT NOT NULL, \n\theartbeat_at FLOAT NOT NULL, \n\tPRIMARY KEY (id)\n)',
    'CREATE TABLE spend_totals (\n\tscope TEXT NOT NULL, \n\tscope_id TEXT NOT NULL, \n\ttokens BIGINT NOT NULL, \n\tcost FLOAT NOT NULL, \n\tcalls BIGINT NOT NULL, \n\tunknown_cost_calls BIGINT NOT NULL, \n\tPRIMARY KEY (scope, scope_id)\n)',
    'CREATE TABLE hive_drivers (\n\thive_id TEXT NOT NULL, \n\tinstance TEXT NOT NULL, \n\thost TEXT NOT NULL, \n\tpid INTEGER NOT NULL, \n\tdriving_since FLOAT NOT NULL, \n\tdriver_until FLOAT NOT NULL, \n\tPRIMARY KEY (hive_id), \n\tFOREIGN KEY(hive_id) REFERENCES hives (id) ON DELETE CASCADE\n)',
    'CREATE TABLE attempt_journals (\n\tid TEXT NOT NULL, \n\thive_id TEXT NOT NULL, \n\ttask_id TEXT NOT NULL, \n\tagent_id TEXT NOT NULL, \n\ttask_hash TEXT NOT NULL, \n\topening TEXT NOT NULL, \n\topened_at FLOAT NOT NULL, \n\tclosed_at FLOAT, \n\tclose_reason TEXT, \n\tPRIMARY KEY (id), \n\tFOREIGN KEY(hive_id) REFERENCES hives (id) ON DELETE CASCADE\n)',
    'CREATE INDEX attempt_journals_task ON attempt_journals (task_id, opened_at)',
    'CREATE TABLE attempt_entries (\n\tjournal_id TEXT NOT NULL, \n\tseq INTEGER NOT NULL, \n\tkind TEXT NOT NULL, \n\tturn INTEGER NOT NULL, \n\tcall_id TEXT, \n\tdata TEXT NOT NULL, \n\tts FLOAT NOT NULL, \n\tPRIMARY KEY (journal_id, seq), \n\tFOREIGN KEY(journal_id) REFERENCES attempt_journals (id) ON DELETE CASCADE\n)',
    "INSERT INTO ruflo_meta (key, value) VALUES ('app', 'ruflo')",
    "INSERT INTO alembic_version (version_num) VALUES ('0005')",
)
"""Every statement, in the order the migrations ran them (schema, then the rows they insert)."""


def schema_statements(conn: sqlite3.Connection) -> tuple[str, ...]:
    """The statements that rebuild this database's schema and its ruflo_meta/alembic_version
    rows: sqlite_master in creation order, less what SQLite makes by itself (automatic indexes,
    the shadow tables of a full-text index)."""
    rows = conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY rowid").fetchall()
    virtual = [name for kind, name, sql in rows
               if kind == "table" and sql and sql.upper().startswith("CREATE VIRTUAL TABLE")]
    statements = [sql for kind, name, sql in rows
                  if sql is not None and not (kind == "table" and any(
                      name.startswith(f"{table}_") for table in virtual))]
    for table, columns in (("ruflo_meta", "key, value"), ("alembic_version", "version_num")):
        for values in conn.execute(f"SELECT {columns} FROM {table} ORDER BY 1"):
            quoted = ", ".join("'" + str(value).replace("'", "''") + "'" for value in values)
            statements.append(f"INSERT INTO {table} ({columns}) VALUES ({quoted})")
    return tuple(statements)


def create(conn: sqlite3.Connection) -> None:
    """Build the schema on an empty database, in one transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in SQLITE_SCHEMA:
            conn.execute(statement)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
