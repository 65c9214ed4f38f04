"""Clocks: real time for live runs, virtual time for the simulator. Depends on nothing in ruflo."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """Time as the engine sees it, in seconds (live) or effort units (simulated)."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class RealClock:
    """Monotonic wall time; `sleep` really waits."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


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
