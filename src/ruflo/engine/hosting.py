"""Hosting agents of stored hives, as `ruflo worker` and `ruflo serve` both do: this process's
entry in the store's workers table, its heartbeat, when a silent host counts as gone, which hives
want hosting, and adopting free agents under the store's adoption lock. Depends on the model,
the store's role protocols and engine/control.py, engine/driving.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Protocol

from ruflo.engine.clock import REAL_CLOCK, LiveClock
from ruflo.engine.control import awaits_gateway
from ruflo.engine.driving import heartbeat_period, stale_after
from ruflo.errors import NotFound, RufloError
from ruflo.event_kinds import EventKind
from ruflo.model import JSON, Agent, Hive, HiveStatus
from ruflo.store.base import EventStore, HiveStore, Lifecycle, WorkerStore

__all__ = ["PAGE", "Host", "HostingStore", "every_hive", "wants_hosting"]

log = logging.getLogger(__name__)

PAGE = 500
"""Hives read per page when looking for work to host."""


class HostingStore(Lifecycle, HiveStore, EventStore, WorkerStore, Protocol):
    """The roles of the store that hosting uses: hives and agents, the log, the workers table."""


def every_hive(store: HiveStore) -> Iterator[Hive]:
    """Every stored hive, newest first, read a page at a time."""
    offset = 0
    while True:
        page = store.list_hives(limit=PAGE, offset=offset)
        yield from page
        if len(page) < PAGE:
            return
        offset += PAGE


def wants_hosting(hive: Hive) -> bool:
    """A hive whose agents should run somewhere: running, or paused only because its gateway
    stopped answering (its engine probes for the gateway's return)."""
    return hive.status is HiveStatus.RUNNING or awaits_gateway(hive)


class Host:
    """This process as a host of agents: registered in the store's workers table under `id`,
    beating every `heartbeat_seconds`, and adopting free agents of a hive.

    A host silent for longer than `stale_after` is gone: its agents are free for another host
    (its claims reopen when their leases run out, or when the new host's engine loads).
    """

    def __init__(self, store: HostingStore, host_id: str, *, kind: str, host: str,
                 lease_seconds: float, heartbeat_seconds: float | None = None,
                 hive_id: str | None = None, capacity: int = 0,
                 keeps_agents: Callable[[JSON], bool] = lambda _: True,
                 announce: bool = False, clock: LiveClock = REAL_CLOCK) -> None:
        self.store = store
        self.clock = clock
        """Heartbeats and staleness run on it (tests move it)."""
        self.id = host_id
        self.kind = kind
        """What the logs call this host: "worker" or "server"."""
        self.host = host
        self.hive_id = hive_id
        """The one hive this host serves, or None for all (shown in the workers table)."""
        self.capacity = capacity
        """Agents per hive it hosts at most (shown in the workers table; 0: no limit)."""
        self.heartbeat_seconds = (heartbeat_seconds if heartbeat_seconds is not None
                                  else heartbeat_period(lease_seconds))
        self.stale_after = stale_after(lease_seconds, self.heartbeat_seconds)
        self.keeps_agents = keeps_agents
        """Whether a live host of this row keeps its agents from this one (a worker leaves a
        live server's agents alone; a server takes over agents any other server left)."""
        self.announce = announce
        """Record adoptions in the hive's log (worker_lost, worker_attached)."""

    # -- the workers table -----------------------------------------------------------------------
    def register(self) -> None:
        self.store.register_worker(self.id, hive_id=self.hive_id, host=self.host,
                                   agents=self.capacity, now=self.clock.utcnow())

    def unregister(self) -> None:
        """Leave the workers table; a failure is logged (the entry goes stale by itself)."""
        try:
            self.store.unregister_worker(self.id)
        except RufloError:
            log.exception("%s %s could not unregister", self.kind, self.id)

    async def beat(self, on_lost: Callable[[], bool]) -> None:
        """Report liveness every `heartbeat_seconds` until cancelled. When another host declared
        this one lost meanwhile (a long stall), `on_lost()` decides: True beats on, False ends
        the heartbeat. Other failures are logged and retried at the next beat."""
        while True:
            await self.clock.sleep(self.heartbeat_seconds)
            try:
                self.store.worker_heartbeat(self.id, now=self.clock.utcnow())
            except NotFound:
                if not on_lost():
                    return
            except RufloError:
                log.exception("%s %s: heartbeat failed; retrying", self.kind, self.id)

    # -- adoption --------------------------------------------------------------------------------
    def adopt(self, hive_id: str, *, room: int | None = None,
              mine: set[str] | None = None) -> list[Agent]:
        """Take up to `room` (None: all) free agents of the hive, under the store's adoption
        lock so two hosts never adopt one agent. Free: not an outside client's; and hosted by
        no one, by a host that is gone or does not keep its agents, or by this host's id but not
        among `mine` (left by an earlier run under the same id; None: every agent under this id
        is free to take again)."""
        with self.store.adoption_lock():
            cutoff = self.clock.utcnow() - timedelta(seconds=self.stale_after)
            workers = {w["id"]: w for w in self.store.list_workers()}
            live = {wid for wid, w in workers.items()
                    if w["heartbeat_at"] >= cutoff and self.keeps_agents(w)}
            free = [a for a in self.store.list_agents(hive_id) if not a.external and (
                    a.worker_id is None
                    or (a.worker_id != self.id and a.worker_id not in live)
                    or (a.worker_id == self.id and (mine is None or a.id not in mine)))]
            taken = free if room is None else free[:room]
            if not taken:
                return []
            with self.store.transaction():
                if self.announce:
                    self._lost(hive_id, taken, workers)
                for agent in taken:
                    self.store.update_agent(agent.id, worker_id=self.id)
                if self.announce:
                    self.store.append_event(hive_id, EventKind.WORKER_ATTACHED, data={
                        "worker_id": self.id, "host": self.host,
                        "agents": [a.id for a in taken]})
            return taken

    def _lost(self, hive_id: str, taken: list[Agent], workers: dict[str, JSON]) -> None:
        """The silent hosts whose agents were taken leave the workers table, with a line in
        the hive's log."""
        lost = sorted({a.worker_id for a in taken
                       if a.worker_id is not None and a.worker_id != self.id})
        for worker_id in lost:
            if worker_id in workers:
                self.store.unregister_worker(worker_id)
            self.store.append_event(hive_id, EventKind.WORKER_LOST, data={
                "worker_id": worker_id, "reason": f"silent for more than {self.stale_after:g}s"})
