"""The SQL that differs between SQLite and Postgres, and the per-thread connection state of the
SQL store. Depends on the core model and ruflo.store.rows.
"""

from __future__ import annotations

import threading
from typing import Any

from ruflo.model import Event
from ruflo.store.rows import TASK_COLS, Queued


class Statements:
    """The few statements that differ between SQLite and Postgres, and the parameter style."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self.postgres = dialect == "postgresql"
        self._cache: dict[str, str] = {}
        self.begin_write = "BEGIN" if self.postgres else "BEGIN IMMEDIATE"
        lock = " FOR UPDATE SKIP LOCKED" if self.postgres else ""
        claim_set = ("UPDATE tasks SET state = 'claimed', assignee = ?, lease_until = ?, "
                     "attempts = attempts + 1, claimed_at = ?, updated_at = ? WHERE id = ")
        self.claim_next = self.q(
            claim_set + "(SELECT id FROM tasks WHERE hive_id = ? AND state = 'open' AND "
            f"pending_deps = 0 ORDER BY priority DESC, ord LIMIT 1{lock}) "
            f"AND state = 'open' RETURNING {TASK_COLS}")
        self.claim_one = self.q(
            claim_set + "(SELECT id FROM tasks WHERE id = ? AND hive_id = ? AND state = 'open' "
            f"AND pending_deps = 0{lock}) AND state = 'open' RETURNING {TASK_COLS}")
        # Postgres: the first claimable of several, in the caller's order, passing over rows
        # other claimers hold right now (SQLite's writers take turns: claim_one each).
        self.claim_first = self.q(
            claim_set + "(SELECT id FROM tasks WHERE id = ANY(?) AND hive_id = ? AND "
            "state = 'open' AND pending_deps = 0 ORDER BY array_position(?, id) LIMIT 1"
            f"{lock}) AND state = 'open' RETURNING {TASK_COLS}") if self.postgres else ""
        self.expiring = ("SELECT id, assignee FROM tasks WHERE state = 'claimed' AND "
                         "lease_until < ? {hive} ORDER BY lease_until" + lock)
        # Postgres: the hive row's counter hands out seqs, its row lock serialising appenders
        # of one hive (see SqlCore._sequence_and_commit for why the sequence stays gap-free
        # and why the lock is taken last). SQLite: writers are already serialised (BEGIN
        # IMMEDIATE), so the next seq is read from the events' primary key, sparing a page write
        # per transaction.
        self.bump_seq = ""
        self.sequence_events = ""
        if self.postgres:
            # Counter bump and inserts in one statement: the lock it takes is held for this
            # statement and the COMMIT only.
            self.sequence_events = (
                # An unknown hive leaves the counter NULL, which the insert refuses: the
                # statement fails rather than inserting nothing (its COMMIT may be on the wire).
                "WITH s AS (UPDATE hives SET last_seq = last_seq + %(n)s WHERE id = %(hive)s "
                "RETURNING last_seq) INSERT INTO events (hive_id, seq, ts, kind, agent_id, "
                "task_id, data) SELECT %(hive)s, (SELECT last_seq FROM s) - %(n)s + e.n, e.ts, "
                "e.kind, e.agent_id, e.task_id, e.data FROM unnest(%(ts)s::float8[], "
                "%(kind)s::text[], %(agent)s::text[], %(task)s::text[], %(data)s::text[]) "
                "WITH ORDINALITY AS e(ts, kind, agent_id, task_id, data, n) RETURNING seq")
        else:
            self.bump_seq = ("SELECT (SELECT COALESCE(MAX(seq), 0) FROM events WHERE "
                             "hive_id = h.id) + ? FROM hives h WHERE h.id = ?")
        self.last_seq = (  # run through SqlCore._read, which translates placeholders
            "SELECT last_seq FROM hives WHERE id = ?" if self.postgres else
            "SELECT (SELECT COALESCE(MAX(seq), 0) FROM events WHERE hive_id = h.id) "
            "FROM hives h WHERE h.id = ?")
        self.insert_event = self.q(
            "INSERT INTO events (hive_id, seq, ts, kind, agent_id, task_id, data) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)")
        self.notify = "SELECT pg_notify('ruflo_events', p) FROM unnest(%s::text[]) AS p"

    def q(self, sql: str) -> str:
        """Translate `?` placeholders to the driver's style (psycopg wants %s)."""
        if not self.postgres:
            return sql
        cached = self._cache.get(sql)
        if cached is None:
            cached = self._cache[sql] = sql.replace("%", "%%").replace("?", "%s")
        return cached


class ThreadState:
    """One thread's connection to the store, and its open transaction."""

    __slots__ = ("conn", "cur", "deferred", "depth", "notices", "pending", "thread")

    def __init__(self, conn: Any, thread: threading.Thread) -> None:
        self.conn = conn
        self.cur = conn.cursor()
        self.depth = 0
        self.pending: list[Event] = []
        self.deferred: dict[str, list[Queued]] = {}
        """Postgres: events of the open transaction waiting for their seqs, by hive."""
        self.notices: list[tuple[str, int]] = []
        """(hive, seq) of the events to announce once the transaction has committed (Postgres
        always; SQLite only while this store has wake-up subscribers in this process)."""
        self.thread = thread
