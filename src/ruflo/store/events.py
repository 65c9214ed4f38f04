"""The event log of each hive: appending one event, reading them in order, the newest seq, and
wake-ups when it grows (ruflo.store.wakeups). Depends on the core model and ruflo.store.core."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ruflo.errors import NotFound, StoreError
from ruflo.model import JSON, Event
from ruflo.store.base import Listening, Wake
from ruflo.store.core import SqlCore
from ruflo.store.rows import EVENT_COLS, read_event
from ruflo.store.wakeups import LocalListener, PgListener


class SqlEvents(SqlCore):
    """The event log of each hive, in SQL."""

    def append_event(self, hive_id: str, kind: str, *, agent_id: str | None = None,
                     task_id: str | None = None, data: JSON | None = None) -> Event:
        with self.transaction():
            return self._append(hive_id, [(kind, agent_id, task_id, data or {})], want=True)[0]

    def events(self, hive_id: str, *, after_seq: int = 0, limit: int | None = None,
               kinds: Sequence[str] | None = None) -> list[Event]:
        sql = f"SELECT {EVENT_COLS} FROM events WHERE hive_id = ? AND seq > ?"
        params: list[Any] = [hive_id, after_seq]
        if kinds:
            sql += f" AND kind IN ({', '.join('?' * len(kinds))})"
            params += list(kinds)
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [read_event(row) for row in self._read(sql, params)]

    def last_seq(self, hive_id: str) -> int:
        row = self._one(self._sql.last_seq, (hive_id,))
        if row is None:
            raise NotFound(f"no hive {hive_id!r}")
        return int(row[0])

    def listen(self, on_notify: Wake, *, hives: Iterable[str] | None = None) -> Listening:
        if self._closed:
            raise StoreError("the store is closed: nothing to listen to")
        listener: LocalListener | PgListener
        if self._sql.postgres:
            listener = PgListener(self._connect, on_notify, hives, self._subscriptions)
        else:
            listener = LocalListener(on_notify, hives, self._subscriptions, self._wakers)
        listener.start()
        return listener
