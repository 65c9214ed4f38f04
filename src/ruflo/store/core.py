"""The SQL store's core: one driver connection per thread, transactions, the event log's
gap-free sequencing at commit, wake-ups after it, and what a failed statement means. The stores of
each kind of data (hives, board, ledger, ...) build on it. Depends on the core model,
ruflo.store.opening, ruflo.store.rows, ruflo.store.statements and the DB drivers.

SQLAlchemy creates the engines and Alembic owns the schema; the statements themselves run on the
driver connection (one per thread, with its prepared-statement cache), because the claim and
finish path must cost tens of microseconds, which SQLAlchemy's execution layer alone exceeds.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ruflo.errors import Conflict, NotFound, StoreError, StoreFull, StoreUnreachable, Unstorable
from ruflo.event_kinds import known_event_kind
from ruflo.model import JSON, Event
from ruflo.store import opening
from ruflo.store.base import EventListener, Listening
from ruflo.store.rows import UPDATABLE, Queued, assignments, dt_req, dumps, holds_nul
from ruflo.store.statements import Statements, ThreadState
from ruflo.store.wakeups import LocalListener

log = logging.getLogger("ruflo.store")

_PROBE_BYTES = 256 * 1024


class SqlCore:
    """Connections, transactions and event sequencing on SQLite (embedded, WAL) or Postgres
    (psycopg 3)."""

    def __init__(self, url: str, *, sqlite_synchronous: str = "normal") -> None:
        url = opening.normalise_url(url)
        self.url = opening.mask_password(url)
        self.created = False
        """True when this open created a new, empty store (the boot trace says so)."""
        self.path: Path | None = None
        self._listeners: list[EventListener] = []
        self._wakers: list[LocalListener] = []
        """SQLite: this process's wake-up subscribers (Postgres wakes through LISTEN)."""
        self._subscriptions: list[Listening] = []
        """Every `listen` not yet stopped, which `close` stops."""
        self._states: dict[int, ThreadState] = {}
        self._states_lock = threading.Lock()
        self._local = threading.local()
        self._closed = False
        self.write_failure: str | None = None
        """Why a write failed for want of space, until `check_writes` finds space again. (A
        later commit does not clear it: one that wrote nothing would prove nothing.)"""
        if url.startswith("sqlite"):
            self.dialect = "sqlite"
            self.path = opening.sqlite_file(url)
            self._connect, self.created = opening.open_sqlite(self.path, sqlite_synchronous)
            self._operational: tuple[type[BaseException], ...] = (sqlite3.OperationalError,)
            self._integrity: tuple[type[BaseException], ...] = (sqlite3.IntegrityError,)
            self._data: tuple[type[BaseException], ...] = (sqlite3.DataError,)
        elif url.startswith("postgresql"):
            psycopg = opening.postgres_driver()  # an extra: one line on what to install
            self.dialect = "postgresql"
            engine = opening.pg_engine(url)
            opening.prepare_pg(engine, url)
            self._engine = engine
            self._connect = lambda: opening.pg_connect(engine, url)
            self._operational = (psycopg.OperationalError,)
            self._integrity = (psycopg.IntegrityError,)
            self._data = (psycopg.DataError,)
        else:
            raise StoreError(f"unsupported store URL {self.url!r}: use sqlite:///PATH or "
                             "postgresql://USER@HOST/DB")
        self._sql = Statements(self.dialect)
        self._q = self._sql.q
        self._where = opening.describe_pg(url) if self.dialect == "postgresql" else str(self.path)

    # -- connections and transactions ------------------------------------------------------------
    def _state(self) -> ThreadState:
        try:
            state: ThreadState = self._local.state
        except AttributeError:
            return self._new_state()
        if self._sql.postgres and state.conn.driver_connection.closed:
            return self._new_state()
        return state

    def _new_state(self) -> ThreadState:
        if self._closed:
            raise StoreError("the store is closed")
        thread = threading.current_thread()
        state = ThreadState(self._connect(), thread)
        self._local.state = state
        with self._states_lock:
            for key, other in list(self._states.items()):
                if not other.thread.is_alive():
                    del self._states[key]
                    self._close_conn(other.conn)
            old = self._states.get(id(state))
            self._states[id(state)] = state
            if old is not None:
                self._close_conn(old.conn)
        return state

    @staticmethod
    def _close_conn(conn: Any) -> None:
        try:
            conn.close()
        except Exception:
            log.warning("closing a store connection failed", exc_info=True)

    def close(self) -> None:
        self._closed = True
        for subscription in list(self._subscriptions):
            subscription.stop()
        self._subscriptions.clear()
        with self._states_lock:
            states = list(self._states.values())
            self._states.clear()
        for state in states:
            self._close_conn(state.conn)
        self._local = threading.local()
        engine = getattr(self, "_engine", None)
        if engine is not None:
            engine.dispose()

    def ping(self) -> None:
        try:
            cur = self._state().cur
            cur.execute("SELECT 1")
            cur.fetchall()
        except StoreError:
            raise
        except Exception as error:
            raise StoreUnreachable(f"store at {self._where} does not answer: "
                                   f"{opening.pg_cause(error)}") from None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        state = self._state()
        if state.depth:
            state.depth += 1
            try:
                yield
            finally:
                state.depth -= 1
            return
        cur = state.cur
        try:
            cur.execute(self._sql.begin_write)
        except self._operational as error:
            self._drop_state(state)
            raise self._translate(error) from None
        state.depth = 1
        state.pending = []
        try:
            yield
            if state.deferred:
                self._sequence_and_commit(state)
            else:
                cur.execute("COMMIT")
        except BaseException as error:
            state.depth = 0
            state.pending = []
            state.deferred = {}
            state.notices = []
            self._rollback(state)
            if isinstance(error, (*self._operational, *self._integrity, *self._data)):
                raise self._translate(error) from None
            raise
        state.depth = 0
        if state.notices:
            self._notify(state)
        pending, state.pending = state.pending, []
        for event in pending:
            for listener in list(self._listeners):
                try:
                    listener(event)
                except Exception:
                    log.exception("event listener %r failed on %s #%d", listener, event.kind,
                                  event.seq)

    def _rollback(self, state: ThreadState) -> None:
        try:
            state.cur.execute("ROLLBACK")
        except Exception:
            # The connection itself is gone or broken: start afresh on the next call.
            self._drop_state(state)

    def _drop_state(self, state: ThreadState) -> None:
        with self._states_lock:
            self._states.pop(id(state), None)
        self._close_conn(state.conn)
        if getattr(self._local, "state", None) is state:
            del self._local.state

    def _translate(self, error: BaseException) -> StoreError:
        cause = opening.pg_cause(error)
        if isinstance(error, self._integrity):
            return Conflict(f"the store refused a change: {cause}; nothing was changed")
        if isinstance(error, self._data):
            return Unstorable(f"the store can't hold a value given: {cause}; nothing was changed")
        if self._out_of_space(error):
            self.write_failure = cause
            return self._full(cause)
        if self._sql.postgres:
            return StoreUnreachable(f"lost the Postgres store at {self._where}: {cause}; the "
                                    "change was not saved")
        return StoreError(f"the SQLite store at {self._where} failed: {cause}; the change was "
                          "not saved")

    def _out_of_space(self, error: BaseException) -> bool:
        if self._sql.postgres:
            return getattr(error, "sqlstate", None) == "53100"  # disk_full
        code = getattr(error, "sqlite_errorcode", None)
        return code is not None and code & 0xFF == sqlite3.SQLITE_FULL

    def _full(self, cause: str) -> StoreFull:
        return StoreFull(f"the store's disk is full ({self._where}: {cause}); nothing was "
                         "changed. Free some space there: ruflo takes writes again by itself")

    def check_writes(self) -> None:
        """Raise StoreFull while writes fail for want of space. Free (nothing is written) until
        a write has failed so; after that, each call makes a small probe write, and the first
        that succeeds clears the failure."""
        if self.write_failure is None:
            return
        try:
            if self._sql.postgres:
                self._probe_pg()
            else:
                self._probe_sqlite()
        except StoreFull:
            raise
        except OSError as error:
            if error.errno != errno.ENOSPC:
                raise StoreError(f"the store's folder can't be written: {error}") from None
            self.write_failure = str(error)
            raise self._full(os.strerror(error.errno)) from None
        self.write_failure = None

    def _probe_sqlite(self) -> None:
        # SQLite writes its pages at commit, so a rolled-back write proves nothing: write (and
        # remove) a file of some pages beside the database instead.
        assert self.path is not None
        probe = self.path.with_name(self.path.name + "-space-probe")
        try:
            with probe.open("wb") as out:
                out.write(os.urandom(_PROBE_BYTES))
                out.flush()
                os.fsync(out.fileno())
        finally:
            probe.unlink(missing_ok=True)

    def _probe_pg(self) -> None:
        # Postgres extends a table's files when a row needs a new page, before commit: a
        # rolled-back insert of some pages' worth of text meets a full disk as a real one would.
        now = time.time()
        state = self._state()
        if state.depth:
            return
        try:
            state.cur.execute("BEGIN")
            state.cur.execute(self._q(
                "INSERT INTO hives (id, name, mode, objective, status, config, created_at, "
                "updated_at, last_seq) VALUES (?, ?, 'solo', ?, 'cancelled', '{}', ?, ?, 0)"),
                (f"space-probe-{os.urandom(8).hex()}", "space probe", os.urandom(_PROBE_BYTES // 2).hex(), now, now))
        except self._operational as error:
            self._rollback(state)
            raise self._translate(error) from None
        self._rollback(state)

    def add_listener(self, listener: EventListener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: EventListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        cur = self._state().cur
        try:
            cur.execute(self._q(sql), params)
            return cur.fetchall()  # type: ignore[no-any-return]
        except self._operational as error:
            raise self._translate(error) from None
        except self._data:
            # Postgres can't even be asked about text holding a NUL. No stored text holds one
            # (writes refuse it), so nothing matches: the answer SQLite gives.
            if holds_nul(params):
                return []
            raise

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = self._read(sql, params)
        return rows[0] if rows else None

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run a statement inside the current transaction; returns the cursor."""
        cur = self._state().cur
        cur.execute(self._q(sql), params)
        return cur

    def _many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._state().cur.executemany(self._q(sql), rows)


    def _update_row(self, table: str, kind: str, cols: str, build: Callable[[Any], Any],
                    row_id: str, fields: dict[str, Any], *, touch: bool = True) -> Any:
        columns, values = assignments(kind, UPDATABLE[table], fields)
        if touch and table != "agents" and "updated_at" not in fields:
            columns.append("updated_at = ?")
            values.append(time.time())
        if not columns:
            row = self._one(f"SELECT {cols} FROM {table} WHERE id = ?", (row_id,))
        else:
            cur = self._exec(f"UPDATE {table} SET {', '.join(columns)} WHERE id = ? "
                             f"RETURNING {cols}", [*values, row_id])
            row = cur.fetchone()
        if row is None:
            raise NotFound(f"no {kind} {row_id!r}")
        return build(row)

    # -- appending events (inside the caller's transaction) ---------------------------------
    def _append(self, hive_id: str, items: Sequence[tuple[str, str | None, str | None, JSON]],
                ts: float | None = None, *, want: bool = False) -> list[Event]:
        """Append events inside the current transaction with the next gap-free seqs. On Postgres
        they are sequenced at commit (see `_sequence_and_commit`) unless the caller wants them now."""
        if not items:
            return []
        for kind, _, _, _ in items:
            known_event_kind(kind)  # an unknown kind is refused before anything is written
        state = self._state()
        sql = self._sql
        ts = time.time() if ts is None else ts
        if sql.postgres:
            queue = state.deferred.setdefault(hive_id, [])
            queue.extend((ts, kind, agent_id, task_id, data)
                         for kind, agent_id, task_id, data in items)
            if not want:
                return []
            # The caller needs the seqs now: sequence this hive's queue (in call order) at once.
            return self._sequence_hive(state, hive_id, state.deferred.pop(hive_id))[-len(items):]
        cur = state.cur
        cur.execute(sql.bump_seq, (len(items), hive_id))
        row = cur.fetchone()
        if row is None:
            raise NotFound(f"no hive {hive_id!r}")
        first = row[0] - len(items) + 1
        rows = [(hive_id, first + i, ts, kind, agent_id, task_id, dumps(data))
                for i, (kind, agent_id, task_id, data) in enumerate(items)]
        if len(rows) == 1:
            cur.execute(sql.insert_event, rows[0])
        else:
            cur.executemany(sql.insert_event, rows)
        if self._wakers:
            state.notices.append((hive_id, row[0]))
        if not (want or self._listeners):
            return []
        when = dt_req(ts)
        events = [Event(seq=r[1], hive_id=hive_id, kind=r[3], ts=when, agent_id=r[4],
                        task_id=r[5], data=items[i][3]) for i, r in enumerate(rows)]
        if self._listeners:
            state.pending.extend(events)
        return events

    def _sequence_and_commit(self, state: ThreadState) -> None:
        """Give the transaction's queued events their seqs as its last statements, and commit.

        Why the sequence stays gap-free and in order: a hive's seqs come from its row's
        counter, bumped in the transaction that inserts the events. The bump takes the row's
        lock, held until commit or rollback: a rollback undoes the bump with the events (no
        gap), and the hive's next appender waits for the lock, so it reads the counter only
        after this transaction is visible (no reader sees seq N+1 before seq N).

        Why it stays cheap: the bumps and the COMMIT go to the server in one pipeline, so the
        lock is held for the server's own work and the commit's WAL flush, never across a
        round trip to this process (whose thread, sharing the GIL with the agents' loops and
        the other store threads, may not run again for a while: every other appender to the
        hive would queue behind it). Hives are bumped in id order, so two multi-hive
        transactions cannot deadlock on their counters.
        """
        deferred, state.deferred = state.deferred, {}
        conn = state.conn.driver_connection
        sent: list[tuple[str, list[Queued], Any]] = []
        try:
            with conn.pipeline():
                for hive_id in sorted(deferred):
                    cursor = conn.cursor()
                    self._bump(cursor, hive_id, deferred[hive_id])
                    sent.append((hive_id, deferred[hive_id], cursor))
                state.cur.execute("COMMIT")
        except self._integrity as error:
            raise self._unknown_hive(error, sorted(deferred)) from None
        for hive_id, queue, cursor in sent:
            self._sequenced(state, hive_id, queue, [row[0] for row in cursor.fetchall()])

    def _sequence_hive(self, state: ThreadState, hive_id: str,
                       queue: list[Queued]) -> list[Event]:
        """Sequence one hive's queued events now, mid-transaction (the caller needs the seqs)."""
        self._bump(state.cur, hive_id, queue)
        return self._sequenced(state, hive_id, queue, [row[0] for row in state.cur.fetchall()])

    def _bump(self, cursor: Any, hive_id: str, queue: list[Queued]) -> None:
        try:
            cursor.execute(self._sql.sequence_events, {
                "n": len(queue), "hive": hive_id, "ts": [q[0] for q in queue],
                "kind": [q[1] for q in queue], "agent": [q[2] for q in queue],
                "task": [q[3] for q in queue], "data": [dumps(q[4]) for q in queue]})
        except self._integrity as error:
            raise self._unknown_hive(error, [hive_id]) from None

    @staticmethod
    def _unknown_hive(error: BaseException, hive_ids: Sequence[str]) -> BaseException:
        """A counter bump that found no hive row fails on its NULL seq: say which hive."""
        if getattr(getattr(error, "diag", None), "column_name", None) != "seq":
            return error
        return NotFound(f"no hive {' or '.join(repr(h) for h in hive_ids)}")

    def _sequenced(self, state: ThreadState, hive_id: str, queue: list[Queued],
                   seqs: list[int]) -> list[Event]:
        count = len(queue)
        last = max(seqs)
        state.notices.append((hive_id, last))
        events = [Event(seq=last - count + 1 + i, hive_id=hive_id, kind=q[1], ts=dt_req(q[0]),
                        agent_id=q[2], task_id=q[3], data=q[4]) for i, q in enumerate(queue)]
        if self._listeners:
            state.pending.extend(events)
        return events

    def _notify(self, state: ThreadState) -> None:
        """Wake LISTENers after the commit, outside it: a NOTIFY inside a transaction takes a
        database-wide lock held through the commit's WAL flush, which would serialise every
        appending transaction of every hive. Here it is a statement of its own that writes no
        WAL, so it costs no flush. If it is lost (the connection dropped right after the
        commit), nothing is: the data is committed and the followers' safety-net poll finds it.

        One notification per hive, `<hive_id>:<newest seq>`, however many events the
        transaction appended: a follower reads everything after its last seq anyway, and every
        worker process of the hive receives each notification.

        SQLite has no such channel: its subscribers in this process are called here, in the
        committing thread (see ruflo.store.wakeups.LocalListener)."""
        newest: dict[str, int] = {}
        for hive_id, seq in state.notices:
            newest[hive_id] = max(seq, newest.get(hive_id, 0))
        state.notices = []
        if not self._sql.postgres:
            for hive_id in sorted(newest):
                for waker in list(self._wakers):
                    waker.deliver(hive_id)
            return
        payloads = [f"{hive_id}:{seq}" for hive_id, seq in sorted(newest.items())]
        try:
            state.cur.execute(self._sql.notify, (payloads,))
        except self._operational as error:
            log.warning("committed, but the wake-up notification for %s was not sent (%s); "
                        "followers will find the change at their next poll", payloads[-1],
                        opening.pg_cause(error))
            self._drop_state(state)

