"""Clocks: real time for live runs, virtual time for the simulator, manual time for tests of the
live engine. Depends on nothing in ruflo."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Time as the engine sees it, in seconds (live) or effort units (simulated)."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class LiveClock(Clock, Protocol):
    """A clock that also tells the date: the live engine and the liveness checks stamp leases,
    heartbeats and driver leases with `utcnow()` and wait with `sleep`."""

    def utcnow(self) -> datetime: ...


class RealClock:
    """Monotonic wall time; `sleep` really waits."""

    def now(self) -> float:
        return time.monotonic()

    def utcnow(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


REAL_CLOCK = RealClock()
"""The default clock of everything live."""


class VirtualClock:
    """Time that moves only when the engine says so; `sleep` jumps ahead instead of waiting."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance_to(self, when: float) -> None:
        if when < self._now:
            raise ValueError(f"virtual time cannot go back from {self._now} to {when}")
        self._now = when

    async def sleep(self, seconds: float) -> None:
        self.advance_to(self._now + max(0.0, seconds))
        await asyncio.sleep(0)


class ManualClock:
    """Time that moves only when a test says so (`advance`): a `sleep` waits until the clock
    has been advanced past its end, so a lease runs out, a heartbeat goes stale or a backoff
    ends exactly when the test wants, without waiting for real. The date starts at `start`
    (now by default). Sleepers may belong to any event loop: `advance` wakes each in its own."""

    def __init__(self, start: datetime | None = None) -> None:
        self._start = start or datetime.now(UTC)
        self._now = 0.0
        self._order = itertools.count()
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []

    def now(self) -> float:
        return self._now

    def utcnow(self) -> datetime:
        return self._start + timedelta(seconds=self._now)

    @property
    def sleepers(self) -> int:
        """How many sleeps are waiting for the clock to move."""
        return sum(1 for _, _, future in self._sleepers if not future.done())

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), future))
        await future

    def advance(self, seconds: float) -> None:
        """Move time on by `seconds` and wake every sleep that ends by then."""
        if seconds < 0:
            raise ValueError(f"manual time cannot go back ({seconds} s)")
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, future = heapq.heappop(self._sleepers)
            future.get_loop().call_soon_threadsafe(_wake, future)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
