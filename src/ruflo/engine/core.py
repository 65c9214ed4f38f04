"""What every engine that drives a stored hive in real time shares: hosted agents and their
loops, the event follower, the lease timer and renewals, pausing, ending and teardown. The swarm
(board_engine.py) and company (company.py) engines add how an agent finds work and what it does with it.
Depends on the model, the Store and Gateway protocols and ruflo.agents.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, TypeVar

from ruflo import telemetry
from ruflo.agents import SWARM_TOOLS, Executor, RunContext, TaskTool
from ruflo.agents.isolated import Integrator, Isolated
from ruflo.engine.clock import REAL_CLOCK, LiveClock
from ruflo.engine.control import (
    GATEWAY_UNREACHABLE,
    awaits_gateway,
    pause_hive,
    resume_after_outage,
)
from ruflo.engine.isolation import open_isolation, remote_of
from ruflo.errors import ConfigError, Conflict, GatewayError, GatewayUnavailable, RufloError
from ruflo.event_kinds import EventKind
from ruflo.model import (
    JSON,
    Agent,
    AgentStatus,
    Event,
    Hive,
    HiveStatus,
    Task,
    TaskState,
)

if TYPE_CHECKING:
    from ruflo.engine.params import LiveParams
    from ruflo.gateway.base import Gateway
    from ruflo.memory.notes import Memory
    from ruflo.store.base import Store

__all__ = ["KILLED", "AgentSlot", "HiveEngine", "objective_succeeded", "wait_at_most"]

log = logging.getLogger(__name__)

KILLED = "killed"
"""Stop reason of an agent that dies on purpose (tests, chaos): nothing is released."""

_T = TypeVar("_T")


class AgentSlot:
    """One hosted agent: its executor, its wake-up flag and what it is doing now."""

    def __init__(self, agent: Agent, executor: Executor) -> None:
        self.agent = agent
        self.executor = executor
        self.wake = asyncio.Event()
        self.loop_task: asyncio.Task[None] | None = None
        self.work: asyncio.Task[None] | None = None
        self.task_id: str | None = None
        """The task it holds a claim on, while it works."""
        self.stop_reason: str | None = None
        """Why its work is being stopped from outside (pause, cancel, lost lease, killed)."""
        self.retry: asyncio.Task[None] | None = None
        """Its look-again wake-up, when the policy told it to wait."""
        self.alive = True
        self.lost = False
        """The engine has recorded this agent as gone."""
        self.paused: str | None = None
        """Why the agent stopped taking work on its own (budget, configuration, crash)."""

    @property
    def id(self) -> str:
        return self.agent.id

    @property
    def can_work(self) -> bool:
        return self.alive and self.paused is None


def objective_succeeded(tasks: Sequence[Task]) -> bool:
    """The objective's tasks are the top-level ones (subtasks serve their parent): all done."""
    roots = [t for t in tasks if t.parent_id is None]
    return bool(roots) and all(t.state is TaskState.DONE for t in roots)


async def wait_at_most(flag: asyncio.Event, seconds: float) -> None:
    """Wait until the flag is set or the time is up. (`asyncio.timeout` rather than `wait_for`:
    on 3.11 the latter can turn a cancellation into a TimeoutError, which would be swallowed.)"""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await flag.wait()


class HiveEngine(ABC):
    """Drives one stored hive through real time: see `run` for the loop. A subclass says how
    an agent finds its next task (`_next_task`), what an attempt does (`_attempt`), and how
    the hive's work is loaded and judged finished."""

    FOLLOWED: ClassVar[frozenset[str]]
    """Event kinds the engine applies; the rest (transcripts, ledger) it skips."""
    NAME: ClassVar[str] = "ruflo"
    """Prefix of the engine's asyncio task names (what a stack dump shows)."""
    OBJECTIVE_FAILED: ClassVar[str] = "not every task of the objective succeeded"

    def __init__(self, store: Store, hive_id: str, *, gateway: Gateway | None,
                 params: LiveParams, executors: Callable[[Agent], Executor], model: str,
                 env: dict[str, str] | None, memory: Memory | None,
                 on_change: Callable[[], None] | None, clock: LiveClock = REAL_CLOCK) -> None:
        self.store = store
        self.clock = clock
        """Leases, renewals, look-again waits and gateway probes run on it (tests move it)."""
        self.hive_id = hive_id
        self.gateway = gateway
        self.params = params
        self.executors = executors
        self.model = model
        self.env = dict(env or {})
        self.memory = memory
        self.on_change = on_change
        """Called (in the event loop) after the engine applied new events: for live views."""
        self.slots: dict[str, AgentSlot] = {}
        self.hive: Hive
        self._followed_kinds = sorted(self.FOLLOWED)
        self._tools: frozenset[TaskTool] = SWARM_TOOLS
        """The task tools its agents get."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._seq = 0
        self._signal = asyncio.Event()
        self._claims_changed = asyncio.Event()
        self._ended: asyncio.Future[None] | None = None
        self._ending = False
        self._status = HiveStatus.RUNNING
        self._helpers: list[asyncio.Task[None]] = []
        self._probing: asyncio.Task[None] | None = None
        """Looking for the gateway to come back, while the hive is paused for it."""
        self._integrator: Integrator | None = None
        """Git isolation's merges (None: the agents share the workspace folder)."""
        self.clones: Path | None = None
        """A worker's folder for its own copies of hives on a git remote (`<clones>/<hive>`);
        None: such a hive works in its workspace (the machine that made it)."""

    # -- what an engine adds -----------------------------------------------------------------------
    @abstractmethod
    def _load_work(self, agents: Sequence[Agent]) -> None:
        """Host the agents (`_host`) and bring the stored tasks into the engine's view."""

    @abstractmethod
    async def _next_task(self, slot: AgentSlot) -> Task | None:
        """Claim the task this agent does next, or None to sleep until woken."""

    @abstractmethod
    async def _attempt(self, slot: AgentSlot, task: Task) -> None:
        """Do one claimed task, with its lease renewed (`_renew`), and record the outcome."""

    @abstractmethod
    def _wake_all(self, why: str) -> None:
        """Wake the agents that may have work (the run starts or the hive resumed)."""

    @abstractmethod
    def _lost(self, slot: AgentSlot, why: str) -> None:
        """The agent was recorded as gone: its work moves on."""

    @abstractmethod
    def _board_finished(self) -> bool:
        """Every task of the hive is terminal (and there is at least one)."""

    @abstractmethod
    def _started_data(self) -> JSON:
        """What the engine_started event records about this run."""

    def _may_stall(self) -> bool:
        """Whether the hive pauses when none of its agents here can work."""
        return True

    def _after_follow(self) -> None:  # noqa: B027 (optional hook)
        """Called after each batch of events was applied."""

    def _objective_checked(self, tasks: Sequence[Task], command: str) -> bool:
        """Whether a task has already run the objective's verify command as its own."""
        return False

    def _check_runnable(self, hive: Hive) -> None:
        """Refuse a hive this engine cannot drive (an engine adds its own reasons)."""
        if hive.status is not HiveStatus.RUNNING and not awaits_gateway(hive):
            why = f" ({hive.pause_reason})" if hive.pause_reason else ""
            raise Conflict(f"hive {hive.id} is {hive.status.value}{why}, not running; "
                           + ("resume it first" if hive.status is HiveStatus.PAUSED
                              else "nothing was run"))

    def _after_run(self) -> None:  # noqa: B027 (optional hook)
        """Write what the run kept in memory, once its loops have stopped."""

    # -- time and wake-ups -----------------------------------------------------------------------
    def _on_store_event(self, event: Event) -> None:
        # Called in the committing thread, right after commit: only flag the consumer (and the
        # view, which shows spend and transcripts too).
        if event.hive_id != self.hive_id or self._loop is None:
            return
        if event.kind in self.FOLLOWED:
            self._loop.call_soon_threadsafe(self._signal.set)
        if self.on_change is not None:
            self._loop.call_soon_threadsafe(self.on_change)

    def wake(self) -> None:
        """Make the engine read the event log now rather than at its next poll (for changes
        made elsewhere, e.g. a Postgres notification a worker received). Call it from the
        engine's event loop."""
        self._signal.set()

    async def _in_store(self, call: Callable[[], _T]) -> _T:
        """Run a store call; an engine may move it off the event loop."""
        return call()

    # -- the run ---------------------------------------------------------------------------------
    async def run(self) -> Hive:
        """Drive the hive until it ends (done, failed, cancelled) or, by default, pauses.

        The skeleton every engine shares (each engine's own `run` docstring tells the rest):
        1. Load the hive's agents and work (`_load_work`), reload budgets, record
           engine_started.
        2. Start one loop per hosted agent, an event consumer and one lease timer, then wake
           the agents that may have work. An agent loop sleeps on its wake flag; woken, it
           claims its next task (`_next_task`) and works it (`_attempt`) while a renewal keeps
           its lease, then looks for more at once.
        3. The consumer reads events after its last seq (flagged by the store's after-commit
           listener, or found by a slow store poll for changes made by other processes) and
           applies them (`_follow`): hive paused, resumed, cancelled or ended elsewhere, budgets
           changed, and the engine's own kinds.
        4. The lease timer sleeps until `store.next_lease_expiry()`, then `expire_leases()`.
        5. A pause or a cancel stops the work in flight (released, nothing lost). A pause for
           an unreachable gateway (or a run started on one) also looks for the gateway and
           resumes the hive when it answers (`_await_gateway`). When every task is terminal
           the hive ends done if the objective's tasks succeeded (and the hive's verify
           command, if any, passes), failed otherwise.
        6. On the way out every loop is stopped, the store listener removed, and
           engine_stopped recorded.
        """
        self._loop = asyncio.get_running_loop()
        self._ended = self._loop.create_future()
        hive = self.store.get_hive(self.hive_id)
        self._check_runnable(hive)
        self.hive = hive
        self.store.add_listener(self._on_store_event)
        try:
            self._seq = self.store.last_seq(self.hive_id)
            self._load()
            self._refresh_budgets()
            self.store.append_event(self.hive_id, EventKind.ENGINE_STARTED,
                                    data=self._started_data())
            self._helpers = [
                asyncio.create_task(self._consume(), name=f"{self.NAME}-consume"),
                asyncio.create_task(self._lease_timer(), name=f"{self.NAME}-leases")]
            for slot in self.slots.values():
                self._start_loop(slot)
            if awaits_gateway(hive):
                self._paused()  # paused for the gateway before this run: look for it first
            else:
                self._wake_all("engine started")
            self._signal.set()
            await self._ended
        finally:
            await self._teardown()
            self.store.remove_listener(self._on_store_event)
        self._after_run()
        final = self.store.get_hive(self.hive_id)
        self.store.append_event(self.hive_id, EventKind.ENGINE_STOPPED,
                                data={"status": final.status.value})
        return final

    def stop(self) -> None:
        """Stop driving the hive and leave it as it is (claims in flight are released)."""
        self._end()

    def _end(self) -> None:
        self._ending = True
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(None)

    async def _teardown(self) -> None:
        working = []
        for slot in self.slots.values():
            if slot.retry is not None:
                slot.retry.cancel()
            if slot.work is not None and not slot.work.done():
                if slot.stop_reason is None:
                    slot.stop_reason = self._stop_reason()
                slot.work.cancel()
                working.append(slot.work)
        if working:
            await asyncio.gather(*working, return_exceptions=True)
        tasks = [t for t in self._helpers if not t.done()]
        tasks += [s.loop_task for s in self.slots.values()
                  if s.loop_task is not None and not s.loop_task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _stop_reason(self) -> str:
        if self._status is HiveStatus.PAUSED:
            return f"hive paused: {self.hive.pause_reason or 'no reason given'}"
        if self._status is HiveStatus.CANCELLED:
            return "hive cancelled"
        return "the engine stopped"

    # -- loading ---------------------------------------------------------------------------------
    def _load(self) -> None:
        hive = self.hive
        if not hive.workspace:
            raise ConfigError(f"hive {hive.id} has no workspace folder; nothing was run")
        if self.clones is None or remote_of(hive) is None:
            Path(hive.workspace).mkdir(parents=True, exist_ok=True)
        self._integrator = open_isolation(self.store, hive, clones=self.clones)
        agents = self.store.list_agents(self.hive_id)
        if not agents:
            raise ConfigError(f"hive {hive.id} has no agents; nothing was run")
        self._load_work(agents)

    def _host(self, agent: Agent) -> AgentSlot:
        """Run this agent here. One left dead by an earlier run is brought back: the process
        that ran it is gone and this one hosts it now."""
        if agent.status is AgentStatus.DEAD:
            agent = self.store.update_agent(agent.id, status=AgentStatus.IDLE, current_task=None)
        executor = self.executors(agent)
        if self._integrator is not None:
            executor = Isolated(executor, self._integrator)
        slot = AgentSlot(agent, executor)
        if agent.status is AgentStatus.PAUSED:
            slot.paused = "paused before this run"
        self.slots[agent.id] = slot
        return slot

    def _refresh_budgets(self) -> None:
        """Budgets may have changed while the hive was paused: the gateway client's accounts
        are reloaded from the store."""
        budgets = getattr(self.gateway, "budgets", None)
        if budgets is None:
            return
        budgets.refresh(hive_id=self.hive_id)
        for agent_id in self.slots:
            budgets.refresh(agent_id=agent_id)

    # -- agent loops -----------------------------------------------------------------------------
    def _may_work(self, slot: AgentSlot) -> bool:
        return not self._ending and self._status is HiveStatus.RUNNING and slot.can_work

    async def _agent_loop(self, slot: AgentSlot) -> None:
        while True:
            await slot.wake.wait()
            slot.wake.clear()
            if not self._may_work(slot):
                continue
            task = await self._next_task(slot)
            if task is None:
                continue
            slot.stop_reason = None
            work = telemetry.attempt(  # a span in the hive's trace, ids for log lines
                self._attempt(slot, task), hive_id=self.hive_id,
                traceparent=self.hive.config.get(telemetry.TRACEPARENT), agent_id=slot.id,
                agent_name=slot.agent.name, task_id=task.id, title=task.title)
            slot.work = asyncio.create_task(work, name=f"{self.NAME}-work-{slot.agent.name}")
            try:
                await slot.work
            finally:
                slot.work = None
            slot.wake.set()  # look for more work at once (choosing costs no LLM call)
            self._check_end()

    def _start_loop(self, slot: AgentSlot) -> None:
        slot.loop_task = asyncio.create_task(self._agent_loop(slot),
                                             name=f"{self.NAME}-agent-{slot.agent.name}")
        slot.loop_task.add_done_callback(self._loop_ended(slot))

    def _loop_ended(self, slot: AgentSlot) -> Callable[[asyncio.Task[None]], None]:
        def ended(task: asyncio.Task[None]) -> None:
            if self._ending:
                return
            slot.alive = False
            if not task.cancelled() and task.exception() is not None:
                log.error("agent %s's loop crashed", slot.agent.name,
                          exc_info=task.exception())
            if slot.task_id is None:
                # It held nothing: it is gone now. Otherwise its lease says when.
                self._lose_agent(slot, "its loop ended")
            self._check_end()
        return ended

    def kill_agent(self, agent_id: str) -> None:
        """Let a hosted agent die as a crashed process would: its loop and work stop at once and
        nothing is released or recorded; its claim reopens when the lease expires."""
        slot = self.slots[agent_id]
        slot.stop_reason = KILLED
        slot.alive = False
        if slot.retry is not None:
            slot.retry.cancel()
        if slot.work is not None:
            slot.work.cancel()
        if slot.loop_task is not None:
            slot.loop_task.cancel()

    def abandon(self) -> None:
        """Stop at once, as a killed process would, because another process drives the hive now
        (this one stalled past its driver lease): work in flight is dropped and nothing is
        released, since the claims of these agents are the new driver's."""
        self._ending = True
        for agent_id in list(self.slots):
            self.kill_agent(agent_id)
        self._end()

    def _lose_agent(self, slot: AgentSlot, why: str) -> None:
        if slot.lost:
            return
        slot.lost = True
        slot.alive = False
        self.store.update_agent(slot.id, status=AgentStatus.DEAD, current_task=None)
        self.store.append_event(self.hive_id, EventKind.AGENT_LOST, agent_id=slot.id,
                                data={"reason": why})
        self._lost(slot, why)

    # -- one attempt -----------------------------------------------------------------------------
    def _context(self, slot: AgentSlot) -> RunContext:
        return RunContext(store=self.store, workspace=Path(self.hive.workspace or "."),
                          gateway=self.gateway, memory=self.memory,
                          task_tools=frozenset(self._tools), env=self.env,
                          limits=self.params.limits, model=self.model)

    async def _renew(self, slot: AgentSlot, task_id: str) -> None:
        every = self.params.lease_seconds / 3
        while True:
            await self.clock.sleep(every)
            if not self.store.renew_lease(task_id, slot.id, lease_seconds=self.params.lease_seconds,
                                          now=self.clock.utcnow()):
                self._stop_work(slot, task_id, "lost the lease")
                return
            self.store.update_agent(slot.id, heartbeat_at=self.clock.utcnow())
            self._claims_changed.set()

    def _stop_work(self, slot: AgentSlot, task_id: str, reason: str) -> None:
        # Not the work that is stopping the hive itself (a gateway error pausing it): that work
        # hands its task back already, and cancelling it would end its agent's loop too.
        if slot.task_id == task_id and slot.work is not None and not slot.work.done() and \
                slot.work is not asyncio.current_task():
            slot.stop_reason = reason
            slot.work.cancel()

    def _discarded(self, slot: AgentSlot, task: Task, why: str) -> None:
        self.store.append_event(self.hive_id, EventKind.ATTEMPT_DISCARDED, agent_id=slot.id,
                                task_id=task.id, data={"reason": why})

    # -- following the event log -----------------------------------------------------------------
    async def _consume(self) -> None:
        assert self._loop is not None
        last_read = 0.0
        while True:
            await wait_at_most(self._signal, self.params.poll_seconds)
            early = last_read + self.params.follow_interval - self._loop.time()
            if early > 0:
                await asyncio.sleep(early)
            self._signal.clear()
            last_read = self._loop.time()
            events = await self._in_store(functools.partial(
                self.store.events, self.hive_id, after_seq=self._seq, kinds=self._followed_kinds))
            if events:
                self._seq = events[-1].seq
            for event in events:
                self._follow(event)
            self._after_follow()
            self._check_end()

    def _follow(self, event: Event) -> None:
        """Apply one event about the hive as a whole; an engine applies its own kinds first and
        hands the rest here."""
        kind = event.kind
        if kind == EventKind.HIVE_PAUSED:
            if self.store.get_hive(self.hive_id).status is HiveStatus.PAUSED:
                self._paused()
        elif kind == EventKind.HIVE_RUNNING and self._status is HiveStatus.PAUSED:
            self._resumed()
        elif kind in (EventKind.HIVE_CANCELLED, EventKind.HIVE_DONE, EventKind.HIVE_FAILED):
            self._status = HiveStatus(kind.removeprefix("hive_"))
            for slot in self.slots.values():
                if slot.task_id is not None:
                    self._stop_work(slot, slot.task_id, self._stop_reason())
            self._end()
        elif kind == EventKind.HIVE_BUDGET_CHANGED:
            self.hive = self.store.get_hive(self.hive_id)
            self._refresh_budgets()

    async def _lease_timer(self) -> None:
        assert self._loop is not None
        while True:
            self._claims_changed.clear()
            expiry = await self._in_store(functools.partial(self.store.next_lease_expiry,
                                                            self.hive_id))
            if expiry is None:
                await self._claims_changed.wait()
                continue
            delay = (expiry - self.clock.utcnow()).total_seconds()
            if delay > 0:
                # A renewal moves the expiry later (then this finds nothing). A new claim
                # expires sooner only if its lease is shorter than this engine's (another
                # process's settings): it is looked for a third of a lease later at most,
                # rather than reading the store after every claim of a busy hive.
                await self.clock.sleep(min(delay + 0.01, self.params.lease_seconds / 3))
                continue
            if not self.store.expire_leases(hive_id=self.hive_id, now=self.clock.utcnow()):
                await self.clock.sleep(0.05)  # the clock read and the store disagree by a hair

    # -- pausing and ending ----------------------------------------------------------------------
    def _pause_hive(self, reason: str, detail: str, *, paused_before: bool = False) -> None:
        """Pause the hive for `reason` and stop the work in flight. `paused_before`: the hive
        was paused already when the trouble was met (the gateway client pauses the hive of a
        call that met a refused key or a spent budget before the engine hears of it); if it
        runs now, a person resumed it since, and that resume stands."""
        hive = self.store.get_hive(self.hive_id)
        if hive.status is HiveStatus.RUNNING and paused_before:
            log.info("hive %s: resumed since the gateway client paused it (%s); going on",
                     self.hive_id, reason)
            return
        if hive.status is HiveStatus.RUNNING:
            self.store.set_hive_status(self.hive_id, HiveStatus.PAUSED, reason=reason)
            self.store.append_event(self.hive_id, EventKind.HIVE_PAUSE_DETAIL,
                                    data={"detail": detail})
        self._paused()

    def _paused(self) -> None:
        """The hive is paused (here or elsewhere): stop the work in flight (it is released).
        Paused because the gateway stopped answering: look for it to come back."""
        self._status = HiveStatus.PAUSED
        self.hive = self.store.get_hive(self.hive_id)
        for slot in self.slots.values():
            if slot.task_id is not None:
                self._stop_work(slot, slot.task_id, self._stop_reason())
        if self.hive.pause_reason == GATEWAY_UNREACHABLE and self.gateway is not None and \
                self._probing is None and not self._ending:
            self._probing = asyncio.create_task(self._await_gateway(),
                                                name=f"{self.NAME}-gateway-probe")
            self._helpers.append(self._probing)
        self._check_end()

    async def _await_gateway(self) -> None:
        """The hive paused "gateway unreachable": an outage, not the work's fault. Look at the
        gateway cheaply (`Gateway.probe`: the model list, no tokens), first after
        `probe_initial` seconds, then twice as long after each look that finds it down, up to
        `probe_max`. When it answers, resume the hive (`gateway_back`), unless a person paused
        it meanwhile: that pause wins. A refused key or a spent gateway budget ends the outage
        too: the hive stays paused with that reason, for a person. A resume by a person, or a
        new pause reason, ends the looking; a CLI run (`stop_on_pause`) waits through it."""
        assert self.gateway is not None
        assert self._loop is not None
        started = self.clock.now()
        wait = self.params.probe_initial
        looks = 0
        try:
            self.store.append_event(self.hive_id, EventKind.GATEWAY_UNREACHABLE, data={
                "probe_initial": wait, "probe_max": self.params.probe_max})
            log.warning("hive %s paused: gateway unreachable; looking again every %g-%g s and "
                        "resuming when it answers", self.hive_id, wait, self.params.probe_max)
            while True:
                await self.clock.sleep(wait)
                if not self._outage_continues():
                    return
                looks += 1
                try:
                    await self.gateway.probe()
                except GatewayUnavailable as error:
                    log.info("hive %s: gateway still unreachable (%s)", self.hive_id, error)
                    wait = min(2 * wait, self.params.probe_max)
                    continue
                except GatewayError as error:
                    if error.pauses_hive:
                        # It answers, refusing: no longer an outage, a person must act.
                        pause_hive(self.store, self.hive_id, reason=error.pause_reason)
                        self.store.append_event(self.hive_id, EventKind.HIVE_PAUSE_DETAIL,
                                                data={"detail": str(error)})
                        return
                    # Rate-limited or an odd answer to the model list: it is there.
                resumed = resume_after_outage(self.store, self.hive_id, data={
                    "down_seconds": round(self.clock.now() - started, 1), "looks": looks})
                if resumed is not None:
                    log.warning("hive %s: the gateway answers again; hive resumed", self.hive_id)
                    if self._status is HiveStatus.PAUSED:
                        self._resumed()  # now, not when its event is read: a CLI run goes on
                return
        except RufloError as error:
            # The store failed under the probe: stay paused; `ruflo hive resume` tries again.
            log.error("hive %s: stopped looking for the gateway: %s", self.hive_id, error)
        finally:
            self._probing = None
            self._check_end()

    def _outage_continues(self) -> bool:
        if self._ending or self._status is not HiveStatus.PAUSED:
            return False
        hive = self.store.get_hive(self.hive_id)
        return hive.status is HiveStatus.PAUSED and hive.pause_reason == GATEWAY_UNREACHABLE

    def _resumed(self) -> None:
        """The hive runs again (resumed here or elsewhere): take up work."""
        self._status = HiveStatus.RUNNING
        self.hive = self.store.get_hive(self.hive_id)
        self._refresh_budgets()
        stored = {a.id: a.status for a in self.store.list_agents(self.hive_id)}
        for slot in self.slots.values():
            if slot.alive and stored.get(slot.id) is not AgentStatus.PAUSED:
                slot.paused = None
        self._wake_all("hive resumed")

    def _pause_agent(self, slot: AgentSlot, reason: str) -> None:
        if slot.paused is not None:
            return
        slot.paused = reason
        self.store.update_agent(slot.id, status=AgentStatus.PAUSED)
        self.store.append_event(self.hive_id, EventKind.AGENT_PAUSED, agent_id=slot.id,
                                data={"reason": reason})
        self._check_end()

    def _check_end(self) -> None:
        if self._ending:
            return
        if self._status is HiveStatus.PAUSED and self.params.stop_on_pause and \
                self._probing is None:
            self._end()
            return
        if self._status is not HiveStatus.RUNNING:
            return
        if any(s.work is not None and not s.work.done() for s in self.slots.values()):
            return
        if self._board_finished():
            self._ending = True
            self._helpers.append(asyncio.create_task(self._finish()))
            return
        if not any(s.can_work for s in self.slots.values()) and self._may_stall():
            reasons = sorted({s.paused or "lost" for s in self.slots.values()})
            self._pause_hive("no agent left that can work", "; ".join(reasons))

    async def _finish(self) -> None:
        """Every task is terminal: the hive is done if the objective's tasks succeeded and the
        objective's verify command (hive config `verify`) passes; failed otherwise."""
        try:
            ended = self.store.get_hive(self.hive_id).status
            if ended.terminal:
                # Another process sharing the hive judged it already: no need to read the
                # whole board again.
                self._status = ended
                return
            tasks = self.store.list_tasks(self.hive_id)
            succeeded = objective_succeeded(tasks)
            reason = None if succeeded else self.OBJECTIVE_FAILED
            command = self.hive.config.get("verify")
            if succeeded and isinstance(command, str) and command.strip() and \
                    not self._objective_checked(tasks, command):
                passed, output = await self._verify_objective(command)
                self.store.append_event(self.hive_id, EventKind.OBJECTIVE_VERIFIED,
                                        data={"command": command, "passed": passed,
                                              "output": output[-2000:]})
                if not passed:
                    succeeded, reason = False, f"the objective's verify command `{command}` failed"
            status = HiveStatus.DONE if succeeded else HiveStatus.FAILED
            hive = self.store.get_hive(self.hive_id)
            if hive.status is HiveStatus.RUNNING:
                self.store.set_hive_status(self.hive_id, status, reason=reason)
            self._status = status
        finally:
            if self._ended is not None and not self._ended.done():
                self._ended.set_result(None)

    async def _verify_objective(self, command: str) -> tuple[bool, str]:
        from ruflo.agents.commands import command_env, run_command

        limits = self.params.limits
        folder = (await self._integrator.latest() if self._integrator is not None
                  else Path(self.hive.workspace or "."))
        result = await run_command(command, cwd=folder,
                                   env=self.env or command_env(),
                                   time_limit=limits.verify_timeout, grace=limits.command_grace,
                                   output_limit=limits.command_output_bytes)
        return result.ok, result.output
