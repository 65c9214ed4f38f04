"""Workers: the processes hosting agents of shared hives, with their heartbeats. Depends on the core model and ruflo.store.core."""

from __future__ import annotations

import time

from ruflo.errors import NotFound
from ruflo.model import JSON
from ruflo.store.core import SqlCore
from ruflo.store.rows import dt_req


class SqlWorkers(SqlCore):
    """Workers, in SQL."""

    def register_worker(self, worker_id: str, *, hive_id: str | None, host: str,
                        agents: int) -> None:
        now = time.time()
        with self.transaction():
            self._exec("INSERT INTO workers (id, hive_id, host, agents, started_at, "
                       "heartbeat_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                       "hive_id = excluded.hive_id, host = excluded.host, "
                       "agents = excluded.agents, heartbeat_at = excluded.heartbeat_at",
                       (worker_id, hive_id, host, agents, now, now))

    def worker_heartbeat(self, worker_id: str) -> None:
        with self.transaction():
            if self._exec("UPDATE workers SET heartbeat_at = ? WHERE id = ?",
                          (time.time(), worker_id)).rowcount != 1:
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
