"""Hives inside `ruflo serve`: one engine per running hive, as asyncio tasks in the server's own
event loop, started, steered and stopped through the server's HiveRunner seam.
Depends on the model, the Store and Gateway protocols, the live and company engines, the
steering helpers (engine/control.py, engine/approvals.py) and engine/hosting.py, which it shares
with `ruflo worker`; never on the server package.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ruflo.agents import Executor, executor_for
from ruflo.engine.board_engine import BoardEngine, LiveParams
from ruflo.engine.clock import REAL_CLOCK, LiveClock
from ruflo.engine.control import cancel_hive, pause_hive, resume_hive
from ruflo.engine.driving import DRIVER_LEASE_SECONDS, Driving, left_alone
from ruflo.engine.hosting import Host, every_hive, wants_hosting
from ruflo.engine.params import config_number
from ruflo.engine.start import GatewayPlanner, seed_board
from ruflo.errors import ConfigError, Conflict, NotFound, RufloError
from ruflo.event_kinds import EventKind
from ruflo.model import (
    Agent,
    Approval,
    ApprovalStatus,
    Hive,
    HiveDriver,
    HiveStatus,
    Mode,
    TaskState,
)

if TYPE_CHECKING:
    from ruflo.engine.company import CompanyEngine
    from ruflo.gateway.base import Gateway
    from ruflo.store.base import Store

__all__ = ["EngineRunner", "server_runner"]

log = logging.getLogger(__name__)

SERVER_PREFIX = "server:"
"""Worker ids of ruflo servers. A server is registered in the workers table like a worker, so
`ruflo worker` processes leave the agents it hosts alone while it lives."""


def server_runner(store: Store, gateway: Gateway | None, settings: Any) -> EngineRunner:
    """The runner `ruflo serve` hands to its hive routes (through ruflo.server.listening)."""
    return EngineRunner(store, gateway, settings)


@dataclass
class Hosting:
    """One engine driving one hive in this server."""

    hive_id: str
    engine: BoardEngine | CompanyEngine
    agents: list[str]
    """The agents this server adopted (their `worker_id` is the server's)."""
    run: asyncio.Task[None] | None = None
    lost: bool = False
    """Another process took the hive's driver lease: its agents and claims are not ours."""


class EngineRunner:
    """Hosts an engine per running hive in the server's event loop.

    - Exactly one process drives a hive: before an engine starts, the server takes the hive's
      driver lease in the store (engine/driving.py) and renews it while the engine runs. A hive
      another live process drives (a second server on the same store, `ruflo orchestrate`,
      `ruflo hive resume`) is left alone with one line saying so, and looked at again every
      renewal: once that driver's lease has run out (it was killed), this server takes over.
    - `attach` (server start): registers the server, then re-attaches to every hive the store
      says is running (or paused for an unreachable gateway, which its engine probes for) and
      no live process drives; claims left by the previous driver are released when the engine
      loads (its own agents), or reopen when their leases expire.
    - `start` (hive created): seeds the first board when it is empty (engine/start.py: the
      objective planned with this server's gateway; company hives plan their own), adopts the
      hive's agents and starts its engine.
    - `pause`/`resume`/`cancel`: recorded in the store; the engine follows the event (a pause
      releases the claims in flight and the engine waits for a resume; a cancel ends it).
      A resume starts an engine when none is running (e.g. the server restarted while paused).
    - An engine that stops on an error pauses its hive with the reason (resumable).
    - `aclose` (SIGTERM): every engine stops its work in flight and hands its claims back
      (the tasks reopen, nothing is lost), within `stop_seconds`; the server unregisters.
    """

    def __init__(self, store: Store, gateway: Gateway | None, settings: Any, *,
                 executors: Callable[[Agent], Executor] = executor_for,
                 poll_seconds: float = 1.0, stop_seconds: float = 3.0,
                 server_id: str | None = None,
                 driver_lease_seconds: float = DRIVER_LEASE_SECONDS,
                 clock: LiveClock = REAL_CLOCK) -> None:
        self.store = store
        self.clock = clock
        """Heartbeats, staleness, driver leases and the engines' leases run on it (tests move
        it)."""
        self.gateway = gateway
        self.settings = settings
        self.executors = executors
        self.poll_seconds = poll_seconds
        self.stop_seconds = stop_seconds
        """How long engines get to hand their claims back on shutdown (uvicorn may already
        have used up to 5 s of the 10 s budget on open connections)."""
        self.id = server_id or f"{SERVER_PREFIX}{socket.gethostname()}:{os.getpid()}"
        self.hosting: dict[str, Hosting] = {}
        lease = float(getattr(settings, "lease_seconds", 60.0) or 60.0)
        self.as_host = Host(store, self.id, kind="server",
                            host=self.id.removeprefix(SERVER_PREFIX), lease_seconds=lease,
                            keeps_agents=_not_a_server, clock=clock)
        """This server in the workers table, as for workers: a worker silent for longer than
        `as_host.stale_after` is gone and its agents are free."""
        host, _, pid = self.id.removeprefix(SERVER_PREFIX).rpartition(":")
        self.driving = Driving(store, lease_seconds=driver_lease_seconds,
                               host=host or socket.gethostname(),
                               pid=int(pid) if pid.isdigit() else os.getpid(), clock=clock)
        self.watching: dict[str, str] = {}
        """Hives another live process drives, with that driver's instance (said once each)."""
        self._registered = False
        self._closing = False
        self._beat: asyncio.Task[None] | None = None
        self._keep: asyncio.Task[None] | None = None

    # -- HiveRunner ------------------------------------------------------------------------------
    async def attach(self) -> None:
        self._register()
        running = []
        for hive in every_hive(self.store):
            if hive.damage is not None:
                log.warning("hive %s is not taken up: %s", hive.id, hive.damage)
            elif wants_hosting(hive):
                running.append(hive)
        for hive in running:
            await self._launch(hive.id, reattach=True)
        if running:
            log.info("re-attached to %d of %d running hive(s)", len(self.hosting), len(running))

    async def start(self, hive_id: str) -> None:
        hive = self.store.get_hive(hive_id)
        try:
            self._params(hive)
        except ConfigError:
            pass  # the engine refuses the hive's config: no tokens spent planning (it pauses)
        else:
            await seed_board(self.store, hive_id, await self._planner(hive))
        await self._launch(hive_id)

    async def _planner(self, hive: Hive) -> GatewayPlanner | None:
        """The planner of a hive's first board: this server's gateway, if it has one."""
        gateway = await self._gateway()
        if gateway is None:
            return None
        return GatewayPlanner(gateway, str(hive.config.get("model")
                                    or getattr(self.settings, "model", "gpt-4o-mini")))

    async def pause(self, hive_id: str, *, reason: str) -> Hive:
        hive = pause_hive(self.store, hive_id, reason=reason)
        await self._released(hive_id)
        return self.store.get_hive(hive.id)

    async def resume(self, hive_id: str) -> Hive:
        hive = resume_hive(self.store, hive_id)
        await self._launch(hive_id)
        return hive

    async def cancel(self, hive_id: str) -> Hive:
        hive = cancel_hive(self.store, hive_id)
        hosting = self.hosting.get(hive_id)
        if hosting is not None and hosting.run is not None:
            await asyncio.wait({hosting.run}, timeout=self.stop_seconds)
        return hive

    async def decide_approval(self, approval_id: str, status: ApprovalStatus, *,
                              decided_by: str, reason: str | None = None) -> Approval:
        from ruflo.engine.approvals import decide

        decided = decide(self.store, approval_id, status, decided_by=decided_by, reason=reason)
        # An approved budget override may have set the hive running again.
        if self.store.get_hive(decided.hive_id).status is HiveStatus.RUNNING:
            await self._launch(decided.hive_id)
        return decided

    async def aclose(self) -> None:
        self._closing = True
        for hosting in self.hosting.values():
            hosting.engine.stop()
        runs = {h.run for h in self.hosting.values() if h.run is not None}
        if runs:
            _, late = await asyncio.wait(runs, timeout=self.stop_seconds)
            if late:
                log.error("%d engine(s) did not hand their claims back within %g s; their "
                          "tasks reopen when the leases expire", len(late), self.stop_seconds)
                for run in late:
                    run.cancel()
                await asyncio.gather(*late, return_exceptions=True)
        for beat in (self._beat, self._keep):
            if beat is not None:
                beat.cancel()
                await asyncio.gather(beat, return_exceptions=True)
        try:
            self.driving.release_all()
        except RufloError:
            log.exception("server %s could not hand its hives' driver leases back; they run "
                          "out within %g s", self.id, self.driving.lease_seconds)
        if self._registered:
            self.as_host.unregister()

    # -- hosting ---------------------------------------------------------------------------------
    async def _launch(self, hive_id: str, *, reattach: bool = False) -> None:
        """Start the hive's engine unless one runs already, the hive is not running, or another
        live process drives it (then the hive is watched, to take over when that one dies)."""
        current = self.hosting.get(hive_id)
        if current is not None and current.run is not None and not current.run.done():
            return
        if self._closing:
            return
        self._register()
        hive = self.store.get_hive(hive_id)
        if not wants_hosting(hive):
            if hive.status.terminal:
                self.watching.pop(hive_id, None)
            return  # a paused hive stays watched: it may run again under a driver that dies
        # Only the driver may touch the hive's claims (the engine releases its agents' old
        # claims as it loads): win the lease first.
        other = self.driving.take(hive_id)
        if other is not None:
            self._leave_alone(other)
            return
        previous = self.watching.pop(hive_id, None)
        if reattach or previous is not None:
            self.store.append_event(hive_id, EventKind.SERVER_REATTACHED, data={
                "server": self.id, "instance": self.driving.instance,
                **({"took_over_from": previous} if previous is not None else {})})
            if previous is not None:
                log.warning("hive %s: its driver's lease ran out; this server takes it over",
                            hive_id)
        try:
            agents = self._adopt(hive)
            if not agents:
                log.info("hive %s: every agent is hosted by a live worker or driven by an "
                         "outside client (REST, MCP); the server stands by", hive_id)
                self.driving.release(hive_id)
                return
            everyone = len(agents) == len(self.store.list_agents(hive_id))
            engine = await self._engine(hive, None if everyone else agents)
        except RufloError as error:
            self._let_go(hive_id, self._adopted_ids(hive_id))
            self._stopped_by(hive_id, error)
            self._release_driver(hive_id)
            return
        hosting = Hosting(hive_id, engine, agents)
        self.hosting[hive_id] = hosting
        hosting.run = asyncio.create_task(self._drive(hosting), name=f"ruflo-hive-{hive_id}")

    async def _drive(self, hosting: Hosting) -> None:
        try:
            await hosting.engine.run()
        except Conflict as error:
            # Paused or ended between the look and the start: a resume starts it again.
            log.info("hive %s: not started: %s", hosting.hive_id, error)
        except RufloError as error:
            self._stopped_by(hosting.hive_id, error)
        except Exception as error:
            log.exception("hive %s: the engine crashed", hosting.hive_id)
            self._stopped_by(hosting.hive_id, error)
        finally:
            if self.hosting.get(hosting.hive_id) is hosting:
                del self.hosting[hosting.hive_id]
            if not hosting.lost:
                self._let_go(hosting.hive_id, hosting.agents)
                self._release_driver(hosting.hive_id)

    # -- the driver lease --------------------------------------------------------------------
    def _leave_alone(self, driver: HiveDriver) -> None:
        if self.watching.get(driver.hive_id) != driver.instance:
            log.warning("%s", left_alone(driver))
        self.watching[driver.hive_id] = driver.instance

    def _release_driver(self, hive_id: str) -> None:
        try:
            self.driving.release(hive_id)
        except RufloError:
            log.exception("hive %s: could not hand its driver lease back; it runs out within "
                          "%g s", hive_id, self.driving.lease_seconds)

    async def _keep_driving(self) -> None:
        """Renew the leases of the hives this server drives; stop at once the engine of one
        another process took meanwhile (this one stalled past its lease), without touching
        its claims, which are the new driver's now; and take over watched hives whose
        driver's lease ran out."""
        while True:
            await self.clock.sleep(self.driving.renew_every)
            try:
                lost = self.driving.renew()
            except RufloError:
                log.exception("server %s: could not renew its driver leases; retrying", self.id)
                continue
            for hive_id, driver in lost.items():
                hosting = self.hosting.get(hive_id)
                if driver is not None:
                    log.error("hive %s: lost its driver lease to %s while silent; this server "
                              "stops driving it", hive_id, driver.who)
                    self.watching[hive_id] = driver.instance  # and takes over if that one dies
                if hosting is not None:
                    hosting.lost = True
                    hosting.engine.abandon()
            for hive_id in list(self.watching):
                try:
                    await self._launch(hive_id)
                except NotFound:
                    self.watching.pop(hive_id, None)
                except RufloError:
                    log.exception("hive %s: could not look at its driver; retrying", hive_id)

    def _stopped_by(self, hive_id: str, error: BaseException) -> None:
        """The engine could not run or stopped on an error: the hive pauses with the reason
        (nothing is lost; `resume` tries again once the cause is fixed)."""
        why = str(error) if isinstance(error, RufloError) else repr(error)
        log.error("hive %s: the server's engine stopped: %s", hive_id, why)
        try:
            self.store.append_event(hive_id, EventKind.ENGINE_ERROR, data={"error": why[:2000]})
            if self.store.get_hive(hive_id).status is HiveStatus.RUNNING:
                pause_hive(self.store, hive_id, reason=f"the server's engine stopped: {why}"[:500])
        except RufloError:
            log.exception("hive %s: could not record why its engine stopped", hive_id)

    async def _engine(self, hive: Hive, hosted: list[str] | None) -> BoardEngine | CompanyEngine:
        from ruflo.agents.commands import command_env

        config = hive.config
        params = self._params(hive)
        model = str(config.get("model") or getattr(self.settings, "model", "gpt-4o-mini"))
        gateway = await self._gateway()
        env = command_env()
        if hive.mode is Mode.COMPANY:
            from ruflo.engine.company import CompanyEngine

            return CompanyEngine(self.store, hive.id, gateway=gateway, params=params,
                                 executors=self.executors, model=model, env=env,
                                 clock=self.clock)
        return BoardEngine(self.store, hive.id, gateway=gateway, params=params,
                          executors=self.executors, model=model, env=env, hosted=hosted,
                          clock=self.clock)

    def _params(self, hive: Hive) -> LiveParams:
        """How the hive's engine runs; ConfigError when its config is not usable."""
        config = hive.config
        return LiveParams(
            lease_seconds=config_number(config, "lease_seconds",
                                  float(getattr(self.settings, "lease_seconds", 60.0))),
            time_unit=config_number(config, "time_unit", 10.0),
            poll_seconds=self.poll_seconds,
            seed=int(config_number(config, "seed", 0.0)),
            stop_on_pause=False,
        ).probing(float(getattr(self.settings, "gateway_probe_seconds", 30.0)))

    async def _gateway(self) -> Gateway | None:
        """The real gateway client (the server may hold a stand-in that builds it lazily): the
        engine reloads the client's budget accounts on resume, which a stand-in has not."""
        build = getattr(self.gateway, "client", None)
        if self.gateway is None or not inspect.iscoroutinefunction(build):
            return self.gateway
        try:
            client: Gateway = await build()
        except Exception as error:
            # Every call through the stand-in raises the same error, which pauses the agent
            # with it: the hive shows why.
            log.warning("the gateway client could not be built: %s", error)
            return self.gateway
        return client

    async def _released(self, hive_id: str) -> None:
        """Give a hosted engine a moment to hand back the claims a pause stopped, so the answer
        shows the board as the pause left it."""
        if hive_id not in self.hosting:
            return
        deadline = time.monotonic() + self.stop_seconds
        while time.monotonic() < deadline and hive_id in self.hosting:
            if not self.store.count_tasks(hive_id).get(TaskState.CLAIMED):
                return
            await asyncio.sleep(0.02)

    # -- living beside `ruflo worker` ------------------------------------------------------------
    def _register(self) -> None:
        if self._registered or self._closing:
            return
        self.as_host.register()
        self._registered = True
        self._beat = asyncio.create_task(self.as_host.beat(self._declared_lost),
                                         name="ruflo-server-heartbeat")
        self._keep = asyncio.create_task(self._keep_driving(), name="ruflo-server-driving")

    def _declared_lost(self) -> bool:
        """Declared lost by a worker during a long stall: register again; the agents it adopted
        meanwhile stay with it (adoption never takes a live worker's agents)."""
        self.as_host.register()
        return True

    def _adopt(self, hive: Hive) -> list[str]:
        """Mark the hive's free agents as this server's: never hosted, hosted by an earlier
        server process, or by a worker silent for longer than `stale_after`. Agents of a live
        worker stay with it. Serialised with workers' adoption by the store's adoption lock."""
        return [agent.id for agent in self.as_host.adopt(hive.id)]

    def _adopted_ids(self, hive_id: str) -> list[str]:
        return [a.id for a in self.store.list_agents(hive_id) if a.worker_id == self.id]

    def _let_go(self, hive_id: str, agents: list[str]) -> None:
        try:
            with self.store.transaction():
                for agent_id in agents:
                    if self.store.get_agent(agent_id).worker_id == self.id:
                        self.store.update_agent(agent_id, worker_id=None)
        except NotFound:
            pass  # the hive is gone: nothing to let go of
        except RufloError:
            log.exception("hive %s: could not let go of its agents", hive_id)


def _not_a_server(worker: dict[str, Any]) -> bool:
    """Live workers keep their agents from a server; other servers' agents are its to take
    (two servers never drive one hive: the driver lease decides which one does)."""
    return not str(worker["id"]).startswith(SERVER_PREFIX)
