"""Who drives a hive: one process at a time holds a hive's driver lease in the store and renews it
while it lives; any other process leaves the hive alone until that lease runs out. Also the
liveness periods that drivers and `ruflo worker` heartbeats share. Depends on the model and the
Store protocol.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from ruflo.engine.clock import REAL_CLOCK, LiveClock
from ruflo.errors import Conflict, NotFound, RufloError
from ruflo.model import HiveDriver, new_id

if TYPE_CHECKING:
    from ruflo.store.base import Store

__all__ = ["DRIVER_LEASE_SECONDS", "Driving", "HiveDriven", "drive_here", "heartbeat_period",
           "keep_driving", "left_alone", "stale_after"]

log = logging.getLogger(__name__)

DRIVER_LEASE_SECONDS = 20.0
"""How long a driver's claim on a hive holds without renewal: a killed process's hives are taken
over this long after its last renewal at most. Short, because a hive waits that long."""


def heartbeat_period(lease_seconds: float) -> float:
    """How often a process proves it lives, for a lease of this length: four times per lease,
    so one or two late beats (a busy machine) do not lose it."""
    return max(0.2, min(15.0, lease_seconds / 4))


def stale_after(lease_seconds: float, heartbeat: float | None = None) -> float:
    """A process silent this long is gone: what it held may be taken by another."""
    return max(lease_seconds, 3 * (heartbeat if heartbeat is not None
                                   else heartbeat_period(lease_seconds)))


class HiveDriven(Conflict):
    """Another live process drives the hive; this one left it alone."""

    def __init__(self, driver: HiveDriver, *, by: str, hint: str = "") -> None:
        super().__init__(f"{left_alone(driver, by=by)}; nothing was changed{hint}")
        self.driver = driver


def left_alone(driver: HiveDriver, *, by: str = "this server") -> str:
    """The one line that says who drives a hive and that this process keeps out of it."""
    return (f"hive {driver.hive_id} is driven by {driver.who} (lease until "
            f"{driver.driver_until:%Y-%m-%d %H:%M:%S} UTC); {by} leaves it alone")


class Driving:
    """This process's driver leases: `take` a hive before driving it, `renew` them all every
    `renew_every` seconds while driving, `release` when done (another process may take the hive
    at once)."""

    def __init__(self, store: Store, *, lease_seconds: float = DRIVER_LEASE_SECONDS,
                 host: str | None = None, pid: int | None = None,
                 clock: LiveClock = REAL_CLOCK) -> None:
        self.store = store
        self.clock = clock
        self.lease_seconds = lease_seconds
        self.host = host or socket.gethostname()
        self.pid = pid if pid is not None else os.getpid()
        self.instance = new_id()
        """New at each start: a restarted process with a reused pid is another driver."""
        self.held: set[str] = set()

    @property
    def renew_every(self) -> float:
        return heartbeat_period(self.lease_seconds)

    def take(self, hive_id: str, *, now: datetime | None = None) -> HiveDriver | None:
        """Drive the hive (or go on driving it): None when this process is its driver now,
        else the live driver that holds it. NotFound if the hive is gone."""
        at = now or self.clock.utcnow()
        current = self.store.take_hive(
            HiveDriver(hive_id=hive_id, instance=self.instance, host=self.host, pid=self.pid,
                       driving_since=at, driver_until=at),
            lease_seconds=self.lease_seconds, now=at)
        if current.instance == self.instance:
            self.held.add(hive_id)
            return None
        self.held.discard(hive_id)
        return current

    def renew(self, *, now: datetime | None = None) -> dict[str, HiveDriver | None]:
        """Renew every lease held. Returns the hives lost: taken by another process while this
        one was silent past its lease (with that driver), or deleted (None)."""
        lost: dict[str, HiveDriver | None] = {}
        for hive_id in sorted(self.held):
            try:
                other = self.take(hive_id, now=now)
            except NotFound:
                self.held.discard(hive_id)
                other = None
                lost[hive_id] = None
                continue
            if other is not None:
                lost[hive_id] = other
        return lost

    def release(self, hive_id: str) -> None:
        self.held.discard(hive_id)
        self.store.release_hive(hive_id, self.instance)

    def release_all(self) -> None:
        for hive_id in sorted(self.held):
            self.release(hive_id)


def drive_here(store: Store, hive_id: str, *, by: str, hint: str = "") -> Driving:
    """Take the hive's driver lease for this process, or raise HiveDriven (one line) when
    another live process drives it."""
    driving = Driving(store)
    other = driving.take(hive_id)
    if other is not None:
        raise HiveDriven(other, by=by, hint=hint)
    return driving


async def keep_driving(driving: Driving,
                       on_lost: Callable[[str, HiveDriver | None], None]) -> None:
    """Renew the leases every `renew_every` seconds until cancelled; `on_lost(hive, driver)` for
    a hive another process took meanwhile (or that was deleted: driver None)."""
    while True:
        await driving.clock.sleep(driving.renew_every)
        try:
            lost = driving.renew()
        except RufloError:
            log.exception("could not renew the driver leases; retrying")
            continue
        for hive_id, driver in lost.items():
            on_lost(hive_id, driver)
