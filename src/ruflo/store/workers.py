"""Workers: the processes hosting agents of shared hives, with their heartbeats, the lock
under which they adopt agents and the per-hive lock under which they merge. Depends on the core model and ruflo.store.core."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

from ruflo.errors import NotFound, StoreError
from ruflo.model import JSON
from ruflo.store.core import SqlCore
from ruflo.store.rows import dt_req, epoch

log = logging.getLogger("ruflo.store")

ADOPTION_LOCK = 0x7275666C6F5F7731
"""Postgres advisory lock key that serialises agent adoption across processes ("ruflo_w1")."""
MERGE_LOCK = 0x72666D31
"""First key of the per-hive advisory lock that serialises merges across machines ("rfm1");
the second is the hive id's hash."""
_LOCK = "SELECT pg_advisory_lock(%s)"
_HIVE_LOCK = "SELECT pg_advisory_lock(%s, hashtext(%s))"
_UNLOCK = "SELECT pg_advisory_unlock(%s)"


class SqlWorkers(SqlCore):
    """Workers, in SQL."""

    def register_worker(self, worker_id: str, *, hive_id: str | None, host: str,
                        agents: int, now: datetime | None = None) -> None:
        at = time.time() if now is None else epoch(now)
        with self.transaction():
            self._exec("INSERT INTO workers (id, hive_id, host, agents, started_at, "
                       "heartbeat_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                       "hive_id = excluded.hive_id, host = excluded.host, "
                       "agents = excluded.agents, heartbeat_at = excluded.heartbeat_at",
                       (worker_id, hive_id, host, agents, at, at))

    def worker_heartbeat(self, worker_id: str, *, now: datetime | None = None) -> None:
        at = time.time() if now is None else epoch(now)
        with self.transaction():
            if self._exec("UPDATE workers SET heartbeat_at = ? WHERE id = ?",
                          (at, worker_id)).rowcount != 1:
                raise NotFound(f"no worker {worker_id!r} (it was unregistered)")

    def unregister_worker(self, worker_id: str) -> None:
        with self.transaction():
            self._exec("DELETE FROM workers WHERE id = ?", (worker_id,))

    def list_workers(self, hive_id: str | None = None) -> list[JSON]:
        sql, params = "SELECT id, hive_id, host, agents, started_at, heartbeat_at FROM workers", []
        if hive_id is not None:
            sql += " WHERE hive_id = ?"
            params.append(hive_id)
        return [{"id": r[0], "hive_id": r[1], "host": r[2], "agents": r[3],
                 "started_at": dt_req(r[4]), "heartbeat_at": dt_req(r[5])}
                for r in self._read(sql + " ORDER BY id", params)]

    def merge_lock(self, hive_id: str) -> Callable[[], None]:
        if not self._sql.postgres:
            raise StoreError("merges across machines need the shared Postgres store; a SQLite "
                             "hive stays on one machine (its repository's lock file is enough)")
        conn = self._connect()
        try:
            cur = conn.cursor()
            cur.execute(_HIVE_LOCK, (MERGE_LOCK, hive_id))
            cur.fetchall()
        except self._operational as error:
            self._close_conn(conn)
            raise self._translate(error) from None
        # A connection of its own: the lock outlives the thread that took it, and closing the
        # session (or its death with the process) frees it.
        return lambda: self._close_conn(conn)

    @contextmanager
    def adoption_lock(self) -> Iterator[None]:
        state = self._state()
        if state.depth:
            raise RuntimeError("the adoption lock is taken before a transaction opens, not "
                               "inside one (a failed transaction could not release it)")
        if not self._sql.postgres:
            # BEGIN IMMEDIATE takes the file's write lock, for which every writer of every
            # process on this file waits: adopters run one at a time without a lock of their own.
            with self.transaction():
                yield
            return
        try:
            state.cur.execute(_LOCK, (ADOPTION_LOCK,))
            state.cur.fetchall()
        except self._operational as error:
            self._drop_state(state)
            raise self._translate(error) from None
        try:
            yield
        finally:
            # A session lock: if the body lost this connection, the server freed the lock with it.
            if getattr(self._local, "state", None) is state:
                try:
                    state.cur.execute(_UNLOCK, (ADOPTION_LOCK,))
                    state.cur.fetchall()
                except self._operational:
                    log.warning("could not release the adoption lock; closing the connection, "
                                "which releases it")
                    self._drop_state(state)
