"""Live hive event streams (SSE) that resume from Last-Event-ID without loss or duplication.

A stream reads `store.events(after_seq)` and then sleeps until the store's after-commit listener
says its hive has news. Events committed by other processes (workers on Postgres) are caught by
a slow safety-net poll. Nothing runs while nobody listens. Depends on the store protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from typing import Any

from ruflo.model import Event
from ruflo.server.wire import dumps, iso
from ruflo.store.base import Store

BATCH = 500
KEEPALIVE_SECONDS = 15.0


def event_json(event: Event) -> dict[str, Any]:
    return {"seq": event.seq, "hive_id": event.hive_id, "kind": event.kind,
            "ts": iso(event.ts), "agent_id": event.agent_id, "task_id": event.task_id,
            "data": event.data}


class EventHub:
    """Wakes the streams of a hive when the store commits one of its events.

    The store calls the listener in the committing thread, which may not be the event loop's:
    wake-ups cross over with `call_soon_threadsafe`, coalesced per hive so a burst of commits
    costs one hop.
    """

    def __init__(self, store: Store, *, poll_seconds: float = 2.0) -> None:
        self.store = store
        self.poll_seconds = poll_seconds
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self.closed = False

    def attach(self) -> None:
        """Start listening; call from the event loop that serves the streams."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self.store.add_listener(self._on_commit)

    def detach(self) -> None:
        """Stop listening and end every open stream."""
        self.closed = True
        self.store.remove_listener(self._on_commit)
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.set()

    def _on_commit(self, event: Event) -> None:
        if event.hive_id not in self._waiters or self._loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            self._wake(event.hive_id)
            return
        with self._lock:
            first = not self._pending
            self._pending.add(event.hive_id)
        if first:
            # RuntimeError: the loop has closed, the server is gone and nobody waits.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._wake_pending)

    def _wake_pending(self) -> None:
        with self._lock:
            hives, self._pending = self._pending, set()
        for hive_id in hives:
            self._wake(hive_id)

    def _wake(self, hive_id: str) -> None:
        for waiter in self._waiters.get(hive_id, ()):
            waiter.set()

    async def stream(self, hive_id: str, after_seq: int) -> AsyncIterator[bytes]:
        """SSE frames of the hive's events after `after_seq`, then each new one as it commits."""
        yield b"retry: 2000\n\n"
        idle = 0.0
        async for batch in self.batches(hive_id, after_seq):
            if batch:
                yield b"".join(
                    b"id: %d\ndata: %s\n\n" % (event.seq, dumps(event_json(event)))
                    for event in batch)
                idle = 0.0
                continue
            idle += self.poll_seconds
            if idle >= KEEPALIVE_SECONDS:
                idle = 0.0
                yield b": keep-alive\n\n"

    async def batches(self, hive_id: str, after_seq: int) -> AsyncIterator[list[Event]]:
        """The hive's events after `after_seq` in batches, then each new batch as it commits; an
        empty batch each time a poll interval passes with nothing new (the A2A follower and the
        SSE keep-alive count on it). Ends when the hub is detached.

        The wake flag is cleared before the store is read, so an event committed between the
        read and the wait still wakes us: no event is missed, none is sent twice.
        """
        wake = asyncio.Event()
        self._waiters.setdefault(hive_id, set()).add(wake)
        last = after_seq
        try:
            while not self.closed:
                wake.clear()
                batch = self.store.events(hive_id, after_seq=last, limit=BATCH)
                if batch:
                    yield batch
                    last = batch[-1].seq
                    continue
                try:
                    await asyncio.wait_for(wake.wait(), self.poll_seconds)
                except TimeoutError:
                    yield []
        finally:
            waiters = self._waiters.get(hive_id)
            if waiters is not None:
                waiters.discard(wake)
                if not waiters:
                    del self._waiters[hive_id]
