"""The distributed worker: hosts agent loops of hives stored in a shared Postgres, wakes when
the store says a hive's log grew, registers itself and reports liveness, hands its claims back
when stopped. Also `watch_hive`, which follows a hive whose agents all live in workers elsewhere.

Depends on the model, the Store protocol (its wake-ups and adoption lock included), the live
engine and engine/hosting.py, which it shares with the server's runner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ruflo.agents import Executor, executor_for
from ruflo.engine.board_engine import BoardEngine, LiveParams
from ruflo.engine.clock import REAL_CLOCK, LiveClock
from ruflo.engine.control import awaits_gateway
from ruflo.engine.core import wait_at_most
from ruflo.engine.driving import heartbeat_period, stale_after
from ruflo.engine.hosting import Host, every_hive, wants_hosting
from ruflo.engine.isolation import remote_of
from ruflo.engine.params import config_number
from ruflo.errors import ConfigError, Conflict, NotFound, RufloError
from ruflo.event_kinds import EventKind
from ruflo.model import JSON, Agent, AgentStatus, Hive, HiveStatus, Mode, TaskState, new_id, utcnow

if TYPE_CHECKING:
    from ruflo.gateway.base import Gateway
    from ruflo.store.base import Listening, Store

__all__ = ["DISTRIBUTED_MODES", "Worker", "WorkerParams", "hive_workers", "require_shared_store",
           "watch_hive"]

log = logging.getLogger(__name__)

DISTRIBUTED_MODES = frozenset({Mode.SWARM})
"""Modes whose agents may live in many processes. Round robin and solo deal tasks to named
agents up front: a pile dealt to an agent no worker hosts would wait forever."""

FOLLOW_INTERVAL = 0.02
"""Least seconds between a worker engine's reads of the event log: every event of a shared hive
wakes every worker, and one read per event each would grow the store's load with the product
of events and workers. Other processes' claims reach the board this much later at most (a
claim raced for meanwhile is refused by the store, and the agent picks again)."""


def require_shared_store(url: str) -> None:
    """Refuse anything but Postgres: a SQLite file is one machine's."""
    if not url.startswith(("postgresql", "postgres:")):
        raise ConfigError("this hive is stored in SQLite, which stays on one machine: workers "
                          "on many machines need a shared Postgres (set DATABASE_URL="
                          "postgresql://...). Nothing was started; run the hive here with "
                          "`ruflo orchestrate` instead")


@dataclass(frozen=True, slots=True)
class WorkerParams:
    """How a worker behaves."""

    agents: int = 8
    """Agent loops this worker hosts per hive, at most (the hive's roster may be smaller)."""
    hive_id: str | None = None
    """The one hive to host; None hosts every running hive (`--all-hives`)."""
    lease_seconds: float = 60.0
    """Claim lease; also how long a silent worker is trusted before its agents are free."""
    poll_seconds: float = 5.0
    """The safety-net poll (store reads only, never a gateway call) for a lost notification."""
    heartbeat_seconds: float | None = None
    """Liveness report period; None means a quarter of the lease, at most 15 s."""
    time_unit: float | None = None
    """Seconds per policy time unit; None takes the hive's own (config `time_unit`)."""
    seed: int | None = None
    """Policy seed; None takes the hive's own (config `seed`)."""
    model: str = "gpt-4o-mini"
    env: dict[str, str] = field(default_factory=dict)
    """Environment for agents' commands (see agents.commands.command_env)."""
    gateway_probe_seconds: float = 30.0
    """Longest wait between looks at a gateway that stopped answering (RUFLO_GATEWAY_PROBE_SECONDS)."""
    workspace: Path | None = None
    """Where this worker keeps its own copy of each hive on a git remote (`<workspace>/<hive>`);
    None: such hives are refused (no folder to work in)."""

    def __post_init__(self) -> None:
        if self.agents < 1:
            raise ConfigError("a worker hosts at least one agent (--agents 1 or more)")
        if self.lease_seconds <= 0 or self.poll_seconds <= 0:
            raise ConfigError("worker: lease and poll seconds must be positive")

    @property
    def heartbeat(self) -> float:
        if self.heartbeat_seconds is not None:
            return self.heartbeat_seconds
        return heartbeat_period(self.lease_seconds)

    @property
    def stale_after(self) -> float:
        """A worker silent this long is gone: its agents may be adopted by another."""
        return stale_after(self.lease_seconds, self.heartbeat)


class Attachment:
    """One live engine driving the agents this worker adopted in one hive."""

    def __init__(self, hive_id: str, agents: list[str], engine: BoardEngine) -> None:
        self.hive_id = hive_id
        self.agents = agents
        self.engine = engine
        self.run: asyncio.Task[Hive] | None = None


class Worker:
    """Hosts agent loops of stored hives: see `run` for the loop."""

    def __init__(self, store: Store, database_url: str, params: WorkerParams, *,
                 gateway: Gateway | None = None,
                 executors: Callable[[Agent], Executor] = executor_for,
                 worker_id: str | None = None, host: str | None = None,
                 clock: LiveClock = REAL_CLOCK) -> None:
        require_shared_store(database_url if store.dialect == "postgresql" else store.dialect)
        self.store = store
        self.params = params
        self.gateway = gateway
        self.executors = executors
        self.clock = clock
        """Heartbeats, staleness and the hosted engines' leases run on it (tests move it)."""
        hostname = socket.gethostname()
        self.host = host or f"{hostname}:{os.getpid()}"
        # The host name first: on Kubernetes it is the pod's name. The suffix keeps a restarted
        # process apart from the one it replaces.
        self.id = worker_id or f"{hostname[:60]}-{new_id()[:8]}"
        self.as_host = Host(store, self.id, kind="worker", host=self.host,
                            lease_seconds=params.lease_seconds,
                            heartbeat_seconds=params.heartbeat, hive_id=params.hive_id,
                            capacity=params.agents, announce=True, clock=clock)
        self.attachments: list[Attachment] = []
        self.refused: dict[str, str] = {}
        """Hives this worker will not host, with why (wrong mode, broken configuration)."""
        self.exit_code = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._look = asyncio.Event()
        self._stopping = False
        self._listening: Listening | None = None
        self._said_waiting: set[str] = set()
        self._waking: set[str | None] = set()
        """Hives (None: all) with a wake-up scheduled on the loop and not yet run."""
        self._waking_lock = threading.Lock()

    # -- the run ---------------------------------------------------------------------------------
    async def run(self) -> int:
        """Host agents until stopped (or, with one hive, until that hive ends). Returns the exit
        code: 0 when stopped or the hive ended, 1 when a hive could not be hosted.

        The run loop:
        1. Register in the workers table; start the heartbeat and listen to the store's
           wake-ups (LISTEN/NOTIFY: one of a hive this worker hosts wakes that hive's engine at
           once; one of a hive it does not host wakes this loop, which may attach to it).
        2. Look for hives to host (the one hive, or every running swarm hive): adopt free agents
           of the hive — never hosted, or hosted by a worker silent for longer than
           `stale_after` — up to `agents`, under the store's adoption lock so two workers never
           adopt one agent (engine/hosting.py), and start a live engine that hosts exactly
           those agents. The engine claims through the store (FOR UPDATE SKIP LOCKED), renews
           leases, and expires the leases of dead workers' claims (every engine tries; the
           store makes it race-safe).
        3. Sleep until a notification or the safety-net poll (store reads only), then look
           again: a hive that ended lets go of its agents; new hives and newly free agents are
           taken up.
        4. On stop (SIGTERM): every engine stops its work in flight and releases those claims
           (task_released, the tasks reopen at once), the agents are let go, and the worker
           unregisters.
        """
        self._loop = asyncio.get_running_loop()
        self.as_host.register()
        log.info("worker %s registered (%s, up to %d agents per hive)", self.id, self.host,
                 self.params.agents)
        self._listening = self.store.listen(self._notified)
        beat = asyncio.create_task(self.as_host.beat(self._declared_lost),
                                   name="ruflo-worker-heartbeat")
        try:
            if self.params.hive_id is not None:
                self._check_single_hive()
            while not self._stopping:
                self._reap()
                if self._one_hive_over():
                    break
                self._attach_where_needed()
                await wait_at_most(self._look, self.params.poll_seconds)
                self._look.clear()
        finally:
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)
            await self._shutdown()
        return self.exit_code

    def stop(self) -> None:
        """Stop hosting (SIGTERM): claims in flight are handed back, then the worker exits."""
        self._stopping = True
        self._look.set()

    async def _shutdown(self) -> None:
        for attachment in self.attachments:
            attachment.engine.stop()
        runs = [a.run for a in self.attachments if a.run is not None]
        if runs:
            await asyncio.gather(*runs, return_exceptions=True)
        for attachment in list(self.attachments):
            self._detach(attachment, "the worker stopped")
        if self._listening is not None:
            self._listening.stop()
        self.as_host.unregister()

    # -- hives -----------------------------------------------------------------------------------
    def _check_single_hive(self) -> None:
        hive_id = self.params.hive_id
        assert hive_id is not None
        hive = self.store.get_hive(hive_id)
        refusal = self._refusal(hive)
        if refusal is not None:
            raise ConfigError(f"{refusal}; nothing was started")
        if hive.status.terminal:
            raise Conflict(f"hive {hive.id} is {hive.status.value}: there is nothing left to "
                           "host; nothing was started")
        if hive.status is HiveStatus.PAUSED:
            log.warning("hive %s is paused (%s); waiting for `ruflo hive resume`", hive.id,
                        hive.pause_reason or "no reason given")

    def _refusal(self, hive: Hive) -> str | None:
        if hive.mode not in DISTRIBUTED_MODES:
            return (f"hive {hive.id} runs in {hive.mode.value} mode, which deals tasks to named "
                    "agents and so runs on one machine; workers host swarm hives")
        if not hive.workspace:
            return f"hive {hive.id} has no workspace folder"
        if remote_of(hive) is not None and self.params.workspace is None:
            return (f"hive {hive.id} keeps its work on the git remote {remote_of(hive)}; this "
                    "worker has no folder for its copy (give it --workspace)")
        return None

    def _one_hive_over(self) -> bool:
        if self.params.hive_id is None:
            return False
        if self.params.hive_id in self.refused:
            self.exit_code = 1
            return True
        hive = self.store.get_hive(self.params.hive_id)
        return hive.status.terminal and not self.attachments

    def _candidates(self) -> list[Hive]:
        if self.params.hive_id is not None:
            hive = self.store.get_hive(self.params.hive_id)
            return [hive] if wants_hosting(hive) else []
        return [hive for hive in every_hive(self.store) if wants_hosting(hive)]

    def _attach_where_needed(self) -> None:
        hosted: dict[str, int] = {}
        for attachment in self.attachments:
            hosted[attachment.hive_id] = hosted.get(attachment.hive_id, 0) + len(attachment.agents)
        for hive in self._candidates():
            if self._stopping or hive.id in self.refused:
                continue
            refusal = self._refusal(hive)
            if refusal is not None:
                self._refuse(hive.id, refusal)
                continue
            room = self.params.agents - hosted.get(hive.id, 0)
            if room <= 0:
                continue
            agents = self._adopt(hive.id, room)
            if not agents:
                if hive.id not in self._said_waiting and not hosted.get(hive.id):
                    self._said_waiting.add(hive.id)
                    log.info("hive %s: every agent is hosted by a live worker; this worker "
                             "stands by", hive.id)
                continue
            self._attach(hive, agents)
            hosted[hive.id] = hosted.get(hive.id, 0) + len(agents)

    def _refuse(self, hive_id: str, why: str) -> None:
        self.refused[hive_id] = why
        log.error("not hosting hive %s: %s", hive_id, why)

    def _adopt(self, hive_id: str, room: int) -> list[Agent]:
        """Take up to `room` free agents of the hive (engine/hosting.py says which are free).
        Agents under this worker's own id but not hosted here were left by an earlier run with
        the same id (a restarted pod): they are free too."""
        mine = {a for att in self.attachments for a in att.agents}
        return self.as_host.adopt(hive_id, room=room, mine=mine)

    def _attach(self, hive: Hive, agents: list[Agent]) -> None:
        config = hive.config
        params = LiveParams(
            lease_seconds=self.params.lease_seconds,
            time_unit=self.params.time_unit or config_number(config, "time_unit", 10.0),
            poll_seconds=self.params.poll_seconds,
            follow_interval=min(FOLLOW_INTERVAL, self.params.poll_seconds / 2),
            seed=self.params.seed if self.params.seed is not None
            else int(config_number(config, "seed", 0.0)),
            stop_on_pause=False).probing(self.params.gateway_probe_seconds)
        engine = BoardEngine(self.store, hive.id, gateway=self.gateway, params=params,
                            executors=self.executors,
                            model=str(config.get("model") or self.params.model),
                            env=self.params.env, hosted=[a.id for a in agents], clock=self.clock,
                            clones=self.params.workspace)
        attachment = Attachment(hive.id, [a.id for a in agents], engine)
        attachment.run = asyncio.create_task(engine.run(), name=f"ruflo-hive-{hive.id}")
        attachment.run.add_done_callback(lambda _: self._look.set())
        self.attachments.append(attachment)
        self._said_waiting.discard(hive.id)
        log.info("hive %s: hosting %d agents (%s)", hive.id, len(agents),
                 ", ".join(a.name for a in agents))

    def _reap(self) -> None:
        """Engines that returned (their hive ended, or they could not start) let go."""
        for attachment in list(self.attachments):
            run = attachment.run
            if run is None or not run.done():
                continue
            error = run.exception() if not run.cancelled() else None
            if error is not None:
                why = str(error) if isinstance(error, RufloError) else repr(error)
                if not isinstance(error, RufloError):
                    log.error("hive %s: the engine crashed", attachment.hive_id, exc_info=error)
                if isinstance(error, Conflict):
                    # Not running (paused or ended between the look and the start): try later.
                    self._detach(attachment, f"the hive could not start: {why}")
                    continue
                self._refuse(attachment.hive_id, why)
                self._detach(attachment, f"refused: {why}")
                continue
            hive = run.result()
            self._detach(attachment, f"the hive is {hive.status.value}")

    def _detach(self, attachment: Attachment, why: str) -> None:
        if attachment in self.attachments:
            self.attachments.remove(attachment)
        try:
            with self.store.transaction():
                # A claim the engine did not hand back (made as it stopped, before its attempt
                # began) would otherwise wait for its lease: release it with its agent.
                claimed = self.store.list_tasks(attachment.hive_id, states=[TaskState.CLAIMED])
                for agent_id in attachment.agents:
                    agent = self.store.get_agent(agent_id)
                    if agent.worker_id != self.id:
                        continue  # adopted by another worker while this one was silent
                    for task in claimed:
                        if task.assignee == agent_id:
                            self.store.release_task(task.id, agent_id, reason=why)
                    status = (AgentStatus.PAUSED if agent.status is AgentStatus.PAUSED
                              else AgentStatus.IDLE)
                    self.store.update_agent(agent_id, worker_id=None, status=status,
                                            current_task=None)
                self.store.append_event(attachment.hive_id, EventKind.WORKER_DETACHED, data={
                    "worker_id": self.id, "agents": attachment.agents, "reason": why})
        except NotFound:
            pass  # the hive was deleted: nothing to let go of
        log.info("hive %s: let go of %d agents (%s)", attachment.hive_id,
                 len(attachment.agents), why)

    # -- wake-ups and liveness -------------------------------------------------------------------
    def _notified(self, hive_id: str | None) -> None:
        """From the store's wake-ups (its LISTEN thread on Postgres): None means the connection
        was (re)established, so anything may have been missed. A hive whose wake-up is already
        on its way to the loop gets no second one (a busy hive sends hundreds a second, each
        reaching every worker)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with self._waking_lock:
            if hive_id in self._waking:
                return
            self._waking.add(hive_id)
        with contextlib.suppress(RuntimeError):  # the loop closed under us at exit
            loop.call_soon_threadsafe(self._wake, hive_id)

    def _wake(self, hive_id: str | None) -> None:
        with self._waking_lock:
            self._waking.discard(hive_id)
        hosted = False
        for attachment in self.attachments:
            if hive_id is None or attachment.hive_id == hive_id:
                wake_engine(attachment.engine)
                hosted = True
        if hive_id is None or not hosted:
            self._look.set()

    def _declared_lost(self) -> bool:
        """Declared lost by another worker while silent (a long stall): another worker may host
        our agents now, so going on would run one agent in two places."""
        log.error("worker %s was declared lost by another worker while silent; "
                  "stopping (a supervisor restarts it)", self.id)
        self.exit_code = 1
        self.stop()
        return False


def wake_engine(engine: BoardEngine) -> None:
    """Make the engine read the event log now rather than at its next poll."""
    engine.wake()


# -- who hosts what ------------------------------------------------------------------------------

def hive_workers(store: Store, hive_id: str, *, stale_after: float,
                 now: datetime | None = None) -> list[JSON]:
    """The workers hosting agents of a hive, with their agents and liveness (for the hive API,
    `ruflo hive show` and the watcher). A worker silent for longer than `stale_after` seconds is
    shown as not alive: its claims reopen when their leases expire."""
    by_worker: dict[str, list[Agent]] = {}
    for agent in store.list_agents(hive_id):
        if agent.worker_id is not None:
            by_worker.setdefault(agent.worker_id, []).append(agent)
    if not by_worker:
        return []
    known = {w["id"]: w for w in store.list_workers()}
    now = now or utcnow()
    rows: list[JSON] = []
    for worker_id, agents in sorted(by_worker.items()):
        row = known.get(worker_id)
        beat: datetime | None = row["heartbeat_at"] if row else None
        age = (now - beat).total_seconds() if beat is not None else None
        rows.append({
            "id": worker_id, "host": row["host"] if row else None,
            "capacity": row["agents"] if row else None,
            "started_at": row["started_at"].isoformat() if row else None,
            "heartbeat_at": beat.isoformat() if beat is not None else None,
            "heartbeat_age": round(age, 3) if age is not None else None,
            "alive": age is not None and age <= stale_after,
            "agents": [{"id": a.id, "name": a.name, "status": a.status.value,
                        "current_task": a.current_task} for a in agents]})
    return rows


async def watch_hive(store: Store, hive_id: str, database_url: str, *,
                     on_change: Callable[[], None] | None = None,
                     say: Callable[[str], None] = print, lease_seconds: float = 60.0,
                     poll_seconds: float = 5.0) -> Hive:
    """Follow a hive whose agents live in workers elsewhere until it stops running (done,
    failed, cancelled or paused); return it. Hosts no agent and makes no gateway call.

    Wakes when the store says the hive's log grew (the safety-net poll otherwise), calls
    `on_change` so a view can redraw, expires passed leases (race-safe; the workers do it too,
    this covers the time when none runs) and says once when no live worker hosts the hive's
    agents, and again when that changes.
    """
    require_shared_store(database_url)
    loop = asyncio.get_running_loop()
    flag = asyncio.Event()

    def notified(_: str | None) -> None:
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(flag.set)

    listening = store.listen(notified, hives=[hive_id])
    hosted: bool | None = None
    try:
        while True:
            hive = store.get_hive(hive_id)
            if hive.status is not HiveStatus.RUNNING and not awaits_gateway(hive):
                return hive
            alive = [w for w in hive_workers(store, hive_id, stale_after=lease_seconds)
                     if w["alive"]]
            if bool(alive) != hosted:
                hosted = bool(alive)
                agents = sum(len(w["agents"]) for w in alive)
                say(f"hive {hive_id}: {agents} agents in {len(alive)} live workers" if alive
                    else f"hive {hive_id}: no live worker hosts its agents yet; start "
                         f"`ruflo worker --hive {hive_id} --agents N` where Postgres is reachable")
            expiry = store.next_lease_expiry(hive_id)
            if expiry is not None and expiry <= utcnow():
                store.expire_leases(hive_id=hive_id)
            if on_change is not None:
                on_change()
            wait = poll_seconds
            if expiry is not None:
                wait = min(wait, max(0.05, (expiry - utcnow()).total_seconds() + 0.05))
            await wait_at_most(flag, wait)
            flag.clear()
    finally:
        await asyncio.to_thread(listening.stop)
