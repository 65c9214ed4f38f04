"""The one way tests wait: for an event in the store (woken by the store's own after-commit
listener, not by polling), for a condition to hold (`until` in a test's event loop,
`wait_until` in plain threads and for other processes), and for a `ManualClock`'s sleepers
(`sleeping`) before moving it. `within` bounds a failure only: no test depends on how fast
anything is, so it is generous (a loaded CI machine is slow).

The one fixed wait is `stays`/`stays_sync`: that something does NOT happen (no gateway call
while a hive is paused or waits for a person) has no event to wait for, so it is watched for
`QUIET` seconds."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from ruflo.engine.clock import ManualClock
from ruflo.model import Event
from ruflo.store.base import Store

WITHIN = 60.0
"""Seconds before a wait gives up and fails the test."""

POLL = 0.02
"""How often a condition that no store event announces is looked at again."""

QUIET = 0.6
"""How long a test watches for something that must not happen: three polls of the engines the
tests run (poll_seconds 0.2), so an agent woken by any of them would have been seen."""


async def wait_for_event(store: Store, hive_id: str, kind: str, *, task_id: str | None = None,
                where: Callable[[Event], bool] = lambda _: True,
                within: float = WITHIN) -> Event:
    """The first event of this kind (about this task, meeting `where`), already recorded or the
    next one committed through `store`."""
    loop = asyncio.get_running_loop()
    heard = asyncio.Event()

    def listener(new: Event) -> None:
        if new.hive_id == hive_id and new.kind == kind:
            with contextlib.suppress(RuntimeError):  # the test's loop is closed already
                loop.call_soon_threadsafe(heard.set)

    store.add_listener(listener)
    try:
        async with asyncio.timeout(within):
            while True:
                heard.clear()
                for found in store.events(hive_id, kinds=[kind]):
                    if (task_id is None or found.task_id == task_id) and where(found):
                        return found
                await heard.wait()
    except TimeoutError:
        raise AssertionError(f"no {kind} event{f' for {task_id}' if task_id else ''} in hive "
                             f"{hive_id} within {within} s") from None
    finally:
        store.remove_listener(listener)


async def until(condition: Callable[[], Any], *, within: float = WITHIN,
                what: str = "the condition never held",
                meanwhile: Callable[[], object] = lambda: None) -> Any:
    """Wait in the event loop until `condition()` is truthy; return what it returned.
    `meanwhile` runs before each new look (e.g. moving a `ManualClock` on a step)."""
    deadline = asyncio.get_running_loop().time() + within
    while not (held := condition()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {within} s: {what}")
        meanwhile()
        await asyncio.sleep(POLL)
    return held


def wait_until(condition: Callable[[], Any], *, within: float = WITHIN,
               what: str = "the condition never held",
               explain: Callable[[], str] = lambda: "") -> Any:
    """`until` for code outside an event loop (servers in threads, other processes): wait until
    `condition()` is truthy and return it; on timeout, fail with `what` and `explain()` (logs)."""
    deadline = time.monotonic() + within
    while not (held := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s: {what}\n{explain()}".rstrip())
        time.sleep(POLL)
    return held


async def sleeping(clock: ManualClock, count: int = 1, *, within: float = WITHIN) -> None:
    """Wait until at least `count` sleeps wait on the clock: what the test advances it for is
    then waiting for it."""
    await until(lambda: clock.sleepers >= count, within=within,
                what=f"{count} sleeps on the manual clock")


async def stays(condition: Callable[[], Any], *, seconds: float = QUIET,
                what: str = "the condition stopped holding") -> None:
    """Fail as soon as `condition()` is falsy during the next `seconds`."""
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        assert condition(), what
        await asyncio.sleep(POLL)
    assert condition(), what


def stays_sync(condition: Callable[[], Any], *, seconds: float = QUIET,
               what: str = "the condition stopped holding") -> None:
    """`stays` outside an event loop."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert condition(), what
        time.sleep(POLL)
    assert condition(), what
