"""Wake-ups when a hive's event log grows: on Postgres a LISTEN thread on a connection of its own,
on SQLite a subscription the committing thread calls. Both implement `Listening`. Depends on the
store's protocol module and the Postgres driver (through the connection factory it is given).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from ruflo.store.base import Listening, Wake

__all__ = ["CHANNEL", "LocalListener", "PgListener"]

log = logging.getLogger("ruflo.store")

CHANNEL = "ruflo_events"
"""After every transaction that appends events the Postgres store sends `pg_notify(CHANNEL,
'<hive_id>:<seq>')`, once per hive, with the newest seq."""


def hive_of(payload: str) -> str:
    """The hive a notification names (`<hive_id>:<seq>`); a foreign payload without a seq names
    itself, which matches no hive and so wakes no one in particular."""
    return payload.rpartition(":")[0] or payload


class _Subscriber:
    """What both kinds of listener share: the hive filter, and a callback whose failure is
    logged without stopping the wake-ups (a follower's bug must not deafen it for good)."""

    def __init__(self, on_notify: Wake, hives: Iterable[str] | None,
                 subscriptions: list[Listening]) -> None:
        self.on_notify = on_notify
        self.hives = frozenset(hives) if hives is not None else None
        self._subscriptions = subscriptions
        """The store's running subscriptions (which it stops when closed): in while running."""

    def deliver(self, hive_id: str | None) -> None:
        if hive_id is not None and self.hives is not None and hive_id not in self.hives:
            return
        try:
            self.on_notify(hive_id)
        except Exception:
            log.exception("a wake-up callback failed on hive %s; wake-ups go on", hive_id)


class LocalListener(_Subscriber):
    """SQLite: called by the committing thread of this store object, after each commit that
    appended events (once per hive). Nothing else can wake it: SQLite tells no one when another
    process writes the file, which the follower's poll covers."""

    def __init__(self, on_notify: Wake, hives: Iterable[str] | None,
                 subscriptions: list[Listening], wakers: list[LocalListener]) -> None:
        super().__init__(on_notify, hives, subscriptions)
        self._wakers = wakers
        self._lock = threading.RLock()  # a callback may commit, and so deliver again
        self._stopped = False

    def start(self) -> None:
        self._subscriptions.append(self)
        self._wakers.append(self)
        self.deliver(None)

    def deliver(self, hive_id: str | None) -> None:
        with self._lock:  # so that stop() returns only once no call is in flight
            if not self._stopped:
                super().deliver(hive_id)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
        for registry in (self._wakers, self._subscriptions):
            if self in registry:
                registry.remove(self)


class PgListener(_Subscriber):
    """Postgres: a thread on a connection of its own that LISTENs on CHANNEL and calls back per
    notification, and with None after every (re)connect. Reconnects with backoff; the caller's
    poll covers the gap."""

    def __init__(self, connect: Callable[[], Any], on_notify: Wake, hives: Iterable[str] | None,
                 subscriptions: list[Listening]) -> None:
        super().__init__(on_notify, hives, subscriptions)
        self._connect = connect
        self.backend_pid: int | None = None
        """The server process of the LISTEN connection while connected (see pg_stat_activity)."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="ruflo-listen", daemon=True)

    def start(self) -> None:
        self._subscriptions.append(self)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self in self._subscriptions:
            self._subscriptions.remove(self)
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _listen(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                raw = self._connect()
                try:
                    conn = raw.driver_connection
                    conn.execute("SET application_name = 'ruflo-listen'")
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.backend_pid = conn.info.backend_pid
                    backoff = 0.5
                    self.deliver(None)
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5):
                            self.deliver(hive_of(note.payload))
                finally:
                    self.backend_pid = None
                    raw.close()
            except Exception as error:
                if self._stop.is_set():
                    return
                log.warning("LISTEN %s connection lost (%s); reconnecting in %.1fs, polling "
                            "meanwhile", CHANNEL, error, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
