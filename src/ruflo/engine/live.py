"""The live engine: drives a stored hive through real time with asyncio. One loop per agent,
asleep until an event wakes it; claims with leases renewed while the agent works; the same
policy objects as the simulator decide who takes what.

Depends on the model, the Store and Gateway protocols, ruflo.policies, ruflo.agents and
ruflo.engine.core (the run loop it shares with company mode).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, TypeVar

from ruflo.agents import (
    SOLO_TOOLS,
    SWARM_TOOLS,
    Executor,
    Limits,
    OutcomeKind,
    SubtaskSpec,
    TaskOutcome,
    TaskTool,
    executor_for,
)
from ruflo.engine.clock import REAL_CLOCK, LiveClock
from ruflo.engine.core import KILLED, AgentSlot, HiveEngine, objective_succeeded
from ruflo.errors import (
    BudgetExceeded,
    ConfigError,
    Conflict,
    GatewayError,
    NotFound,
    PolicyError,
    RufloError,
)
from ruflo.model import (
    JSON,
    Agent,
    AgentStatus,
    Event,
    Hive,
    Mode,
    Task,
    TaskState,
)
from ruflo.policies import (
    BasePolicy,
    Decompose,
    Delegate,
    Idle,
    SwarmParams,
    SwarmPolicy,
    Take,
    TaskSpec,
    find_cycle,
    make_policy,
)
from ruflo.policies.swarm import ANY_SKILL

if TYPE_CHECKING:
    from ruflo.gateway.base import Gateway
    from ruflo.memory.notes import Memory
    from ruflo.store.base import Store

__all__ = ["LiveEngine", "LiveParams", "RunSummary", "summarise"]

log = logging.getLogger(__name__)

CONTENDED = "(claiming elsewhere)"
"""Board holder of a task whose row another process holds locked while it claims it: this
process's agents pass it over until that claim's event (or a recheck) says who has it."""

SPREAD_OFFERED = 16
"""Most tasks one claim offers the store (the chosen one and alternatives like it)."""

RECHECK_CONTENDED = 2.0
"""Seconds after which a task still held for another process's claim is read again (that
claim may have rolled back)."""

STORE_THREADS = 4
"""Threads (each with its own Postgres connection) that run an engine's claim and finish
transactions, so one agent's wait for a commit does not stall the others."""

_T = TypeVar("_T")

FOLLOWED = frozenset({
    "task_posted", "task_claimed", "task_done", "task_failed", "task_cancelled",
    "task_released", "lease_expired", "hive_paused", "hive_running", "hive_budget_changed",
    "hive_cancelled", "hive_done", "hive_failed", "agent_added",
})
"""Event kinds the engine applies to its board; the rest (transcripts, ledger) it skips."""


@dataclass(frozen=True, slots=True)
class LiveParams:
    """How a live run behaves."""

    lease_seconds: float = 60.0
    """A claim's lease; the holder renews it every third of this while it works. A dead
    agent's task reopens at most this long after its last renewal."""
    time_unit: float = 10.0
    """Wall seconds per policy time unit (the simulator's effort unit): how fast stimulus
    grows and thresholds learn in real time."""
    poll_seconds: float = 1.0
    """How often the store is read for changes made by other processes (CLI, server): a store
    read, never a gateway call."""
    follow_interval: float = 0.0
    """Least seconds between two reads of the event log. 0 reads at every wake-up; a worker
    sharing a busy hive with others waits a little, so one read takes in the events of many
    notifications rather than one each."""
    seed: int = 0
    limits: Limits = field(default_factory=Limits)
    swarm: SwarmParams | None = None
    stop_on_pause: bool = True
    """`run` returns when the hive pauses (the CLI); False keeps waiting for a resume."""
    max_split_depth: int = 2
    """How many times a task may be split into subtasks, counting down from the objective."""
    probe_initial: float = 1.0
    """Seconds before the first look at a gateway that stopped answering (the hive paused
    "gateway unreachable"); each look that finds it still down doubles the wait..."""
    probe_max: float = 30.0
    """...up to this. A look is one GET of the model list: no tokens."""

    def __post_init__(self) -> None:
        if self.lease_seconds <= 0 or self.time_unit <= 0 or self.poll_seconds <= 0:
            raise ConfigError("live engine: lease_seconds, time_unit and poll_seconds must be "
                              "positive")
        if not 0 <= self.follow_interval < self.poll_seconds:
            raise ConfigError("live engine: follow_interval must be at least 0 and shorter "
                              "than poll_seconds")
        if not 0 < self.probe_initial <= self.probe_max:
            raise ConfigError("live engine: probe_initial must be positive and at most "
                              "probe_max")

    def probing(self, longest: float) -> LiveParams:
        """These params, looking at a down gateway as RUFLO_GATEWAY_PROBE_SECONDS says: first
        after a second (or `longest` if shorter), then up to `longest` apart."""
        return replace(self, probe_initial=min(1.0, longest), probe_max=longest)


@dataclass(frozen=True, slots=True)
class RunSummary:
    """How a hive stands: what the CLI prints at the end and `hive show` prints any time."""

    hive: Hive
    counts: dict[str, int]
    objective_succeeded: bool
    tokens: int
    cost: float
    coordination_tokens: int
    calls: int

    def to_json(self) -> JSON:
        return {"hive_id": self.hive.id, "status": self.hive.status.value,
                "reason": self.hive.pause_reason, "tasks": self.counts,
                "objective_succeeded": self.objective_succeeded, "tokens": self.tokens,
                "cost": self.cost, "coordination_tokens": self.coordination_tokens,
                "calls": self.calls}


def summarise(store: Store, hive_id: str) -> RunSummary:
    from ruflo.model import CostKind

    hive = store.get_hive(hive_id)
    counts = {state.value: n for state, n in store.count_tasks(hive_id).items()}
    spend = store.spend(hive_id=hive_id)
    coordination = store.spend(hive_id=hive_id, kind=CostKind.COORDINATION)
    return RunSummary(hive=hive, counts=counts,
                      objective_succeeded=objective_succeeded(store.list_tasks(hive_id)),
                      tokens=spend.tokens, cost=spend.cost,
                      coordination_tokens=coordination.tokens, calls=spend.calls)


class LiveEngine(HiveEngine):
    """Drives one stored hive by a policy (swarm, round robin, solo): see `run` for the loop."""

    FOLLOWED = FOLLOWED

    def __init__(self, store: Store, hive_id: str, *, gateway: Gateway | None = None,
                 params: LiveParams | None = None,
                 executors: Callable[[Agent], Executor] = executor_for,
                 model: str = "gpt-4o-mini", env: dict[str, str] | None = None,
                 memory: Memory | None = None, hosted: Iterable[str] | None = None,
                 on_change: Callable[[], None] | None = None,
                 clock: LiveClock = REAL_CLOCK) -> None:
        super().__init__(store, hive_id, gateway=gateway, params=params or LiveParams(),
                         executors=executors, model=model, env=env, memory=memory,
                         on_change=on_change, clock=clock)
        self.hosted = frozenset(hosted) if hosted is not None else None
        """Agents this engine runs; None means all of the hive's (one-process hives)."""
        self.rng = random.Random(self.params.seed)
        self.policy: BasePolicy
        self._t0 = 0.0
        self._pool: ThreadPoolExecutor | None = None
        """Postgres: threads for the claim and finish transactions (SQLite answers in tens of
        microseconds, less than a thread hop, so it runs them in the loop)."""
        self._claiming: dict[asyncio.Future[tuple[Task, Agent] | None], str] = {}
        """Claims in flight in the pool whose waiter was cancelled: handed back at teardown."""
        self._in_flight: dict[str, str] = {}
        """Tasks this engine is claiming in the store right now, with the claiming agent."""
        self._saved_thresholds: dict[str, dict[str, float]] = {}
        """Thresholds last written per agent: only changes are written."""

    # -- time and wake-ups -----------------------------------------------------------------------
    def now(self) -> float:
        """Policy time: wall seconds since the run began, in time units."""
        return (self.clock.now() - self._t0) / self.params.time_unit

    def _flush_wakes(self) -> None:
        for agent_id in self.policy.drain_wakes():
            slot = self.slots.get(agent_id)
            if slot is not None and slot.alive:
                slot.wake.set()

    # -- the run ---------------------------------------------------------------------------------
    async def run(self) -> Hive:
        """Drive the hive until it ends (done, failed, cancelled) or, by default, pauses.

        The run loop (steps 4 to 6 and the agent loops' sleep and wake are `HiveEngine.run`'s,
        shared with company mode; the policy's board and claims are this engine's):
        1. Load the hive's agents into the policy and its unfinished tasks onto the policy's
           board (a claim left by an earlier run of a hosted agent is released: this process
           hosts that agent now). On Postgres, open the threads that run claim and finish
           transactions. Start one loop per hosted agent, an event consumer and one lease
           timer, then wake every agent.
        2. An agent loop sleeps on its wake flag. Woken (by the policy: a task became ready for
           it; by a resume; or by its own look-again time, which costs no tokens), it asks
           `policy.choose`. Take → `store.claim_task(task_id)` is the atomic compare-and-set;
           lost race → bring the board in line with the store and ask again. Won → the claim
           goes to the policy, a renewal task renews the lease every third of it, and the
           agent's executor does the task. Idle → sleep.
        3. The outcome goes to the store and the policy: complete (verify passed or absent) →
           done; failed → the task reopens, or fails for good after the policy's attempt cap
           (and what depends on it is cancelled); abstain → released; decompose → subtasks
           posted, the task blocked until they are done, then reopened to be integrated.
           Learned thresholds are written to the agent's row.
        4. Every change is an event in the store. The consumer reads events after its last seq
           (flagged by the store's after-commit listener, or found by a slow store poll for
           changes made by other processes) and applies them idempotently: tasks posted or
           cancelled elsewhere, claims of other workers, expired leases (the task reopens; an
           agent whose loop is gone is lost to the policy), hive paused/resumed/cancelled.
        5. The lease timer sleeps until `store.next_lease_expiry()`, then `expire_leases()`.
        6. A refused key or a spent budget pauses the hive (or the agent, for its own budget):
           claims in flight are released, nothing is lost. So does a gateway that does not
           answer past the retries ("gateway unreachable", no attempt charged), and the hive
           resumes by itself when it answers again. A pause or a cancel stops the
           executors in flight. When every task is terminal the hive ends done if the
           objective's tasks succeeded (and the objective's verify command, if any, passes),
           failed otherwise.
        """
        self._t0 = self.clock.now()
        if self.store.dialect == "postgresql":
            self._pool = ThreadPoolExecutor(STORE_THREADS, thread_name_prefix="ruflo-store")
        try:
            return await super().run()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)

    def _after_run(self) -> None:
        if hasattr(self, "policy"):
            self._persist_all_thresholds()

    def _started_data(self) -> JSON:
        return {"mode": self.hive.mode.value, "agents": sorted(self.slots),
                "lease_seconds": self.params.lease_seconds, "seed": self.params.seed,
                "time_unit": self.params.time_unit}

    def _wake_all(self, why: str) -> None:
        for slot in self.slots.values():
            slot.wake.set()

    async def _teardown(self) -> None:
        await super()._teardown()
        await self._hand_back_orphan_claims()

    async def _hand_back_orphan_claims(self) -> None:
        """A claim whose agent loop was stopped while the store was still making it may have
        committed: give it back now rather than leave the task to its lease."""
        for future, agent_id in list(self._claiming.items()):
            with contextlib.suppress(Exception):  # a failed claim holds nothing
                claimed = await future
                slot = self.slots.get(agent_id)
                if claimed is not None and (slot is None or slot.stop_reason != KILLED):
                    with contextlib.suppress(Conflict):
                        self.store.release_task(claimed[0].id, agent_id,
                                                reason="the engine stopped while claiming")
        self._claiming.clear()

    # -- loading the board -----------------------------------------------------------------------
    def _load_work(self, agents: Sequence[Agent]) -> None:
        hive = self.hive
        if hive.mode is Mode.COMPANY:
            raise ConfigError("company mode needs its own engine hooks (delegation, "
                              "escalation), which this engine does not have yet; nothing was run")
        self.policy = make_policy(hive.mode, agents, seed=self.params.seed,
                                  swarm=self.params.swarm)
        self._tools = task_tools_for(hive.mode)
        hosted = [a for a in agents if self.hosted is None or a.id in self.hosted]
        for agent in agents:
            self.policy.add_agent(agent, 0.0)
        for agent in hosted:
            self._host(agent)

        tasks = self.store.list_tasks(self.hive_id)
        by_id = {t.id: t for t in tasks}
        for task in tasks:
            if task.state is TaskState.CLAIMED and task.assignee in self.slots:
                # The previous run of this agent is gone; this process hosts it now.
                task = self.store.release_task(task.id, task.assignee,
                                               reason="the run that held it stopped")
                by_id[task.id] = task
        for task in list(by_id.values()):
            if task.state is TaskState.BLOCKED and not any(
                    t.parent_id == task.id and not t.state.terminal for t in by_id.values()):
                # Its subtasks ended while no engine ran: reopen it, or it cannot succeed.
                self._reopen_parent(task.id)
                by_id[task.id] = task = self.store.get_task(task.id)
                if task.state is TaskState.BLOCKED:
                    by_id[task.id] = self.store.finish_task(
                        task.id, None, state=TaskState.CANCELLED,
                        result="cancelled: one of its subtasks did not succeed")
        unfinished = [t for t in by_id.values() if not t.state.terminal]
        children: dict[str, list[str]] = {}
        for task in unfinished:
            if task.parent_id is not None:
                children.setdefault(task.parent_id, []).append(task.id)
        specs = []
        doomed = []
        for task in unfinished:
            deps = []
            for dep in task.depends_on:
                state = by_id[dep].state if dep in by_id else TaskState.CANCELLED
                if state is TaskState.DONE:
                    continue
                if state.terminal:
                    doomed.append(task.id)
                else:
                    deps.append(dep)
            if task.state is TaskState.BLOCKED:
                deps += children.get(task.id, [])
            specs.append(TaskSpec(task.id, task.skills, task.priority, task.effort, tuple(deps)))
        self.policy.post(specs, 0.0)
        for task in unfinished:
            if task.state is TaskState.CLAIMED and task.assignee is not None:
                # Held by an agent of another process: its lease decides.
                self.policy.claim(task.id, task.assignee, 0.0)
        for task_id in doomed:
            self._cancel_on_board(task_id)
        if doomed:  # only they end tasks on the board here: spare a second read of the board
            self._mirror_ends("a task it depends on did not succeed")
        self._restore_thresholds(agents)
        self.policy.drain_wakes()

    def _restore_thresholds(self, agents: Sequence[Agent]) -> None:
        if not isinstance(self.policy, SwarmPolicy):
            return
        for agent in agents:
            state = self.policy.agents.get(agent.id)
            if state is None:
                continue
            for skill, value in agent.thresholds.items():
                if skill in state.theta:
                    state.theta[skill] = value
            if agent.id in self.slots:
                self._persist_thresholds(agent.id)

    def _unsaved_thresholds(self, agent_id: str) -> dict[str, float] | None:
        """The agent's learned thresholds if they changed since last written, else None."""
        if not isinstance(self.policy, SwarmPolicy) or agent_id not in self.policy.agents:
            return None
        thresholds = {k: round(v, 4) for k, v in self.policy.thresholds(agent_id).items()}
        return None if self._saved_thresholds.get(agent_id) == thresholds else thresholds

    def _persist_thresholds(self, agent_id: str) -> None:
        thresholds = self._unsaved_thresholds(agent_id)
        if thresholds is not None:
            self.store.update_agent(agent_id, thresholds=thresholds)
            self._saved_thresholds[agent_id] = thresholds

    # -- agent loops -----------------------------------------------------------------------------
    async def _next_task(self, slot: AgentSlot) -> Task | None:
        """Ask the policy until a claim is won or it says to wait."""
        for _ in range(16):
            now = self.now()
            decision = self.policy.choose(slot.id, now, self.rng)
            self._flush_wakes()
            if isinstance(decision, Take | Decompose):
                # A live agent decides itself whether to split (post_subtasks).
                task_id, alternatives = decision.task_id, []
                if isinstance(decision, Take):
                    task_id, *alternatives = self._spread(task_id)
                claimed = await self._claim(slot, task_id, now, alternatives)
                if claimed is None:
                    continue
                self._claims_changed.set()
                return claimed
            if isinstance(decision, Idle):
                if decision.retry_at is not None:
                    self._retry_later(slot, decision.retry_at - now)
                return None
            if isinstance(decision, Delegate):
                raise PolicyError(f"{self.hive.mode.value} mode asked agent {slot.agent.name} to "
                                  "delegate, which this engine does not do")
            raise AssertionError(decision)
        # Lost every race: others are claiming as fast as we are; look again soon.
        self._retry_later(slot, 0.1)
        return None

    def _spread(self, task_id: str) -> list[str]:
        """Processes sharing a hive run the same policy over the same board, so their agents
        all reach for the head of the same queue and all but one lose the race. On Postgres,
        offer the store instead, in random order, the first ready tasks of the chosen task's
        queue with the same skills and priority (as many as the hive has agents: the same
        threshold, and nearly the same stimulus, as they became ready in that order); it
        claims the first no one else has (SKIP LOCKED), so a race lost costs no second try."""
        if self._pool is None or not isinstance(self.policy, SwarmPolicy):
            return [task_id]
        chosen = self.policy.board.tasks[task_id]
        queue = self.policy.queues.get(chosen.skills[0] if chosen.skills else ANY_SKILL)
        level = queue.levels.get(chosen.priority) if queue is not None else None
        if not level:
            return [task_id]
        width = len(self.policy.agent_ids)
        picks: list[str] = []
        for looked, task in enumerate(level):
            if looked >= 4 * width or len(picks) >= width:
                break
            if task.ready and task.skills == chosen.skills:
                picks.append(task.id)
        if not picks:
            return [task_id]
        self.rng.shuffle(picks)
        return picks[:SPREAD_OFFERED]

    async def _claim(self, slot: AgentSlot, task_id: str, now: float,
                     alternatives: Sequence[str] = ()) -> Task | None:
        """Claim the chosen task: on the board first, so this process's other agents pass it
        over while the store works; then in the store, where one transaction takes the claim
        (compare-and-set, SKIP LOCKED on Postgres) — or, taken, that of the first free of the
        `alternatives` —, marks the agent working and writes its learned thresholds. Lost →
        the board follows the store, and a task another process is claiming right now is held
        for that claim, so the next choice looks further down."""
        board = self.policy.board
        try:
            self.policy.claim(task_id, slot.id, now)
        except Conflict:
            self._reconcile(task_id)
            return None
        # Learning from the agent's last task rides along with this claim (and is written at
        # the end of the run), rather than costing a commit of its own after each task.
        thresholds = self._unsaved_thresholds(slot.id)
        lease = self.params.lease_seconds

        def claim() -> tuple[Task, Agent] | None:
            with self.store.transaction():
                task = self.store.claim_task(self.hive_id, slot.id, lease_seconds=lease,
                                             task_id=task_id, alternatives=alternatives,
                                             now=self.clock.utcnow())
                if task is None:
                    return None
                fields: dict[str, object] = {"status": AgentStatus.WORKING, "current_task":
                                             task.id, "heartbeat_at": self.clock.utcnow()}
                if thresholds is not None:
                    fields["thresholds"] = thresholds
                return task, self.store.update_agent(slot.id, **fields)

        self._in_flight[task_id] = slot.id
        try:
            claimed = await self._in_store(claim, orphan_of=slot.id)
        finally:
            self._in_flight.pop(task_id, None)
        board_task = board.tasks.get(task_id)
        ours = (board_task is not None and board_task.holder == slot.id
                and board_task.state is TaskState.CLAIMED)
        if claimed is None:
            if ours:
                self.policy.on_released(task_id, slot.id, self.now(), counts=False)
            self._lost_race(task_id)
            return None
        task, agent = claimed
        if thresholds is not None:
            self._saved_thresholds[slot.id] = thresholds
        slot.agent = agent
        if task.id != task_id:
            # The store gave one of the alternatives: the chosen task is someone else's (its
            # event is on the way), and the board takes this claim as the store has it.
            if ours:
                self.policy.on_released(task_id, slot.id, self.now(), counts=False)
            self._lost_race(task_id)
            self._apply_task_state(task)
            board_task = board.tasks.get(task.id)
            ours = (board_task is not None and board_task.holder == slot.id
                    and board_task.state is TaskState.CLAIMED)
        if not ours:
            # The board moved on while the store worked (the task was cancelled meanwhile):
            # give the claim back and look again.
            with contextlib.suppress(Conflict):
                self.store.release_task(task.id, slot.id,
                                        reason="the board was out of step; claim returned")
            self._reconcile(task.id)
            return None
        return task

    def _lost_race(self, task_id: str) -> None:
        """The store refused the claim: another process claimed the task (its event is on the
        way, or was applied already) or holds its row while it claims it (SKIP LOCKED passed
        over it), or the task ended. Either way it is held on the board for that other claim,
        without a store read, until the event log says who has it; a recheck covers a claim
        that rolled back."""
        board_task = self.policy.board.tasks.get(task_id)
        if board_task is None or not board_task.ready:
            return  # the event log got there first
        assert self._loop is not None
        self.policy.claim(task_id, CONTENDED, self.now())
        self._loop.call_later(RECHECK_CONTENDED, self._recheck_contended, task_id)

    def _recheck_contended(self, task_id: str) -> None:
        board_task = self.policy.board.tasks.get(task_id)
        if self._ending or board_task is None or board_task.holder != CONTENDED:
            return
        self.policy.on_released(task_id, CONTENDED, self.now(), counts=False)
        self._reconcile(task_id)

    async def _in_store(self, call: Callable[[], _T], *, orphan_of: str | None = None) -> _T:
        """Run a store transaction off the event loop (Postgres) or in it (SQLite). The
        transaction runs to its end even if the waiter is cancelled; with `orphan_of`, a claim
        so left behind is handed back at teardown."""
        if self._pool is None:
            return call()
        assert self._loop is not None
        future = self._loop.run_in_executor(self._pool, call)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            if orphan_of is not None:
                self._claiming[future] = orphan_of  # type: ignore[index]
            raise

    def _retry_later(self, slot: AgentSlot, units: float) -> None:
        if slot.retry is not None:
            slot.retry.cancel()
        slot.retry = asyncio.create_task(self._wake_after(slot, units * self.params.time_unit),
                                         name=f"{self.NAME}-retry-{slot.id}")

    async def _wake_after(self, slot: AgentSlot, seconds: float) -> None:
        await self.clock.sleep(seconds)
        slot.wake.set()

    # -- one attempt -----------------------------------------------------------------------------
    async def _attempt(self, slot: AgentSlot, task: Task) -> None:
        slot.task_id = task.id
        settled = False  # the agent's row went back to idle with the outcome
        renewal = asyncio.create_task(self._renew(slot, task.id))
        try:
            try:
                outcome = await slot.executor.run(task, slot.agent, self.hive,
                                                  self._context(slot))
            except asyncio.CancelledError:
                if slot.stop_reason in (None, KILLED):
                    raise
                self._give_back(slot, task, slot.stop_reason, counts=False)
                return
            except GatewayError as error:
                if error.pauses_hive:
                    self._give_back(slot, task, f"hive paused: {error.pause_reason}",
                                    counts=False)
                    self._pause_hive(error.pause_reason, str(error))
                else:
                    self._failed(slot, task, TaskOutcome(OutcomeKind.FAILED,
                                                         reason=f"gateway: {error}"))
                return
            except BudgetExceeded as error:
                reason = str(error).split(";")[0]
                self._give_back(slot, task, reason, counts=False)
                if error.scope == "agent":
                    self._pause_agent(slot, reason)
                else:
                    self._pause_hive(reason, str(error))
                return
            except RufloError as error:
                # Configuration, workspace or store trouble: this agent can't work as it is.
                self._give_back(slot, task, f"agent error: {error}", counts=False)
                self._pause_agent(slot, str(error))
                return
            except Exception as error:
                log.exception("agent %s crashed on task %s", slot.agent.name, task.id)
                self._give_back(slot, task, f"agent crashed: {error!r}", counts=False)
                self._pause_agent(slot, f"crashed: {error!r}")
                return
            if outcome.kind is OutcomeKind.COMPLETE:
                renewal.cancel()
                settled = await self._complete(slot, task, outcome)
            else:
                self._apply(slot, task, outcome)
        finally:
            renewal.cancel()
            if slot.stop_reason != KILLED:
                # A killed agent keeps its claim until the lease says otherwise.
                slot.task_id = None
                if not settled:
                    status = AgentStatus.IDLE if slot.paused is None else AgentStatus.PAUSED
                    self.store.update_agent(slot.id, status=status, current_task=None)

    # -- outcomes --------------------------------------------------------------------------------
    def _apply(self, slot: AgentSlot, task: Task, outcome: TaskOutcome) -> None:
        kind = outcome.kind
        if kind is OutcomeKind.COMPLETE:
            self._done(slot, task, outcome)
        elif kind is OutcomeKind.FAILED:
            self._failed(slot, task, outcome)
        elif kind is OutcomeKind.ABSTAIN:
            swarm = isinstance(self.policy, SwarmPolicy)
            self._give_back(slot, task, f"abstained: {outcome.reason or 'no reason given'}",
                            counts=not swarm)
            if isinstance(self.policy, SwarmPolicy) and task.id in self.policy.board.tasks:
                self.policy.on_abstain(slot.id, task.id)
                self._persist_thresholds(slot.id)
        elif kind is OutcomeKind.DECOMPOSE:
            self._split(slot, task, outcome.subtasks)
        elif kind in (OutcomeKind.DELEGATE, OutcomeKind.ESCALATE):
            # Not offered in this mode (an outside agent may still answer it): the task goes
            # back to the board for someone else.
            self._give_back(slot, task, f"{kind.value} is not available in "
                                        f"{self.hive.mode.value} mode: "
                                        f"{outcome.reason or outcome.delegate_to or ''}".rstrip(),
                            counts=True)
        else:
            raise AssertionError(kind)
        self._flush_wakes()

    async def _complete(self, slot: AgentSlot, task: Task, outcome: TaskOutcome) -> bool:
        """The task is done: one transaction finishes it (with its event) and sets the agent
        back to idle. True when it went through."""
        status = AgentStatus.IDLE if slot.paused is None else AgentStatus.PAUSED

        def finish() -> None:
            with self.store.transaction():
                self.store.finish_task(task.id, slot.id, state=TaskState.DONE,
                                       result=outcome.result, verified=outcome.verified,
                                       data={"turns": outcome.turns})
                self.store.update_agent(slot.id, status=status, current_task=None)

        try:
            await self._in_store(finish)
        except Conflict as error:
            self._discarded(slot, task, str(error))
            return False
        board_task = self.policy.board.tasks.get(task.id)
        # The event consumer may have applied this task_done already (Postgres: the commit
        # happened in a store thread while the loop ran on).
        if (board_task is not None and board_task.holder == slot.id
                and board_task.state is TaskState.CLAIMED):
            self.policy.on_task_finished(task.id, slot.id, True, self.now())
        self._after_done(task)
        self._flush_wakes()
        return True

    def _done(self, slot: AgentSlot, task: Task, outcome: TaskOutcome) -> None:
        try:
            self.store.finish_task(task.id, slot.id, state=TaskState.DONE,
                                   result=outcome.result, verified=outcome.verified,
                                   data={"turns": outcome.turns})
        except Conflict as error:
            self._discarded(slot, task, str(error))
            return
        board_task = self.policy.board.tasks.get(task.id)
        if board_task is not None and board_task.holder == slot.id:
            self.policy.on_task_finished(task.id, slot.id, True, self.now())
        self._persist_thresholds(slot.id)
        self._after_done(task)

    def _failed(self, slot: AgentSlot, task: Task, outcome: TaskOutcome) -> None:
        reason = outcome.reason or "the attempt failed"
        board_task = self.policy.board.tasks.get(task.id)
        if board_task is None or board_task.holder != slot.id:
            self._discarded(slot, task, "the board no longer shows this agent holding it")
            return
        final = board_task.lost + 1 >= self.policy.board.max_attempts
        try:
            if final:
                self.store.finish_task(task.id, slot.id, state=TaskState.FAILED,
                                       result=outcome.result or reason,
                                       verified=outcome.verified,
                                       data={"reason": reason, "turns": outcome.turns,
                                             "attempts": board_task.lost + 1})
            else:
                self.store.release_task(task.id, slot.id, reason=f"attempt failed: {reason}")
        except Conflict as error:
            self._discarded(slot, task, str(error))
            return
        self.policy.on_task_finished(task.id, slot.id, False, self.now())
        self._persist_thresholds(slot.id)
        if final:
            self._mirror_ends(f"task {task.id} failed")

    def _give_back(self, slot: AgentSlot, task: Task, reason: str, *, counts: bool) -> None:
        """Release the claim (the task reopens); `counts` uses up one of its attempts."""
        board_task = self.policy.board.tasks.get(task.id)
        holds = board_task is not None and board_task.holder == slot.id
        if counts and holds:
            assert board_task is not None
            if board_task.lost + 1 >= self.policy.board.max_attempts:
                self._failed(slot, task, TaskOutcome(OutcomeKind.FAILED, reason=reason))
                return
        try:
            self.store.release_task(task.id, slot.id, reason=reason)
        except Conflict:
            return  # it was not ours any more (expired, cancelled): the events say what it is
        if holds:
            self.policy.on_released(task.id, slot.id, self.now(), counts=counts)
        self._flush_wakes()

    def _after_done(self, task: Task) -> None:
        if task.parent_id is not None:
            self._reopen_parent(task.parent_id)

    def _reopen_parent(self, parent_id: str) -> None:
        """When the last subtask of a split task is done, the split task reopens (the policy's
        board already made it ready) for an agent to integrate the parts."""
        try:
            parent = self.store.get_task(parent_id)
        except NotFound:
            return
        if parent.state is not TaskState.BLOCKED:
            return
        siblings = [t for t in self.store.list_tasks(self.hive_id) if t.parent_id == parent.id]
        if not all(t.state is TaskState.DONE for t in siblings):
            return
        done = "\n".join(f"- {t.title}: {(t.result or '').strip()[:300]}" for t in siblings)
        self.store.update_task(parent.id, state=TaskState.OPEN, blocked_on=None,
                               description=f"{parent.description}\n\nIts subtasks are done:\n"
                                           f"{done}\nIntegrate them and complete this task; "
                                           "do not split it again.".strip())

    def _split(self, slot: AgentSlot, task: Task, parts: Sequence[SubtaskSpec]) -> None:
        try:
            children = self._subtasks(task, parts)
        except PolicyError as error:
            self._failed(slot, task, TaskOutcome(OutcomeKind.FAILED,
                                                 reason=f"could not split the task: {error}"))
            return
        try:
            with self.store.transaction():
                current = self.store.get_task(task.id)
                if current.state is not TaskState.CLAIMED or current.assignee != slot.id:
                    raise Conflict(f"task {task.id} is no longer held by {slot.agent.name}")
                self.store.post_tasks(self.hive_id, children, agent_id=slot.id)
                self.store.update_task(task.id, state=TaskState.BLOCKED, assignee=None,
                                       lease_until=None,
                                       blocked_on=f"its {len(children)} subtasks")
        except Conflict as error:
            self._discarded(slot, task, str(error))
            return
        self.policy.decompose(task.id, slot.id, children, self.now(),
                              max(0.1, task.effort * 0.1))

    def _subtasks(self, task: Task, parts: Sequence[SubtaskSpec]) -> list[Task]:
        if task.depth >= self.params.max_split_depth:
            raise PolicyError(f"it is already {task.depth} splits deep")
        existing = self.store.list_tasks(self.hive_id)
        if any(t.parent_id == task.id for t in existing):
            raise PolicyError("it was split once already; integrate its subtasks and complete")
        known = {t.id: t for t in existing}
        ids = [f"{task.id}.{n + 1}" for n in range(len(parts))]
        by_title = {p.title: ids[n] for n, p in enumerate(parts)}
        children = []
        for n, part in enumerate(parts):
            deps = []
            for ref in part.depends_on:
                if ref.isdigit() and int(ref) < len(parts):
                    deps.append(ids[int(ref)])
                elif ref in by_title:
                    deps.append(by_title[ref])
                elif ref in known and ref != task.id:
                    if known[ref].state is not TaskState.DONE:
                        deps.append(ref)
                else:
                    raise PolicyError(f"subtask {part.title!r} depends on {ref!r}, which is "
                                      "neither another subtask nor a task of this hive")
            children.append(Task(
                id=ids[n], hive_id=self.hive_id, title=part.title,
                description=part.description, parent_id=task.id,
                skills=part.skills or task.skills, priority=task.priority,
                effort=max(0.1, task.effort / len(parts)), depends_on=tuple(deps),
                verify=part.verify, depth=task.depth + 1))
        cycle = find_cycle({c.id: [d for d in c.depends_on if d in by_title.values()]
                            for c in children})
        if cycle:
            raise PolicyError("the subtasks wait on each other in a cycle: " + " → ".join(cycle))
        return children

    # -- board and store in line -----------------------------------------------------------------
    def _cancel_on_board(self, task_id: str) -> None:
        board = self.policy.board
        if task_id in board.tasks and not board.tasks[task_id].state.terminal:
            self.policy.cancel(task_id, self.now())

    def _mirror_ends(self, why: str) -> None:
        """Tasks the board ended because a dependency failed are cancelled in the store too
        (and their holders stop)."""
        board = self.policy.board
        for task in self.store.list_tasks(self.hive_id, states=[
                TaskState.OPEN, TaskState.CLAIMED, TaskState.BLOCKED]):
            board_task = board.tasks.get(task.id)
            if board_task is None or not board_task.state.terminal:
                continue
            if task.assignee in self.slots and task.state is TaskState.CLAIMED:
                self._stop_work(self.slots[task.assignee], task.id, "task cancelled")
            with contextlib.suppress(Conflict):
                self.store.finish_task(task.id, None, state=TaskState.CANCELLED,
                                       result=f"cancelled: {why}")

    def _reconcile(self, task_id: str) -> None:
        """A claim was refused: make the board show what the store says about the task."""
        try:
            task = self.store.get_task(task_id)
        except NotFound:
            self._cancel_on_board(task_id)
            return
        self._apply_task_state(task)

    def _apply_task_state(self, task: Task) -> None:
        board = self.policy.board
        board_task = board.tasks.get(task.id)
        if board_task is None:
            return
        now = self.now()
        if board_task.holder is not None and board_task.holder != task.assignee:
            self.policy.on_released(task.id, board_task.holder, now, counts=False)
        if task.state is TaskState.CLAIMED and task.assignee is not None:
            if board_task.ready:
                self.policy.claim(task.id, task.assignee, now)
        elif task.state is TaskState.DONE and not board_task.state.terminal:
            holder = board_task.holder
            if holder is None and board_task.ready and task.assignee in self.policy.alive:
                self.policy.claim(task.id, task.assignee, now)
                holder = task.assignee
            if holder is not None:
                self.policy.on_task_finished(task.id, holder, True, now)
            else:
                self._cancel_on_board(task.id)
        elif task.state.terminal and not board_task.state.terminal:
            self._cancel_on_board(task.id)
        self._flush_wakes()

    # -- following the event log -----------------------------------------------------------------
    def _follow(self, event: Event) -> None:
        kind, task_id, agent_id = event.kind, event.task_id, event.agent_id
        board = self.policy.board
        if kind == "task_posted" and task_id is not None and task_id not in board.tasks:
            self._post_foreign(task_id)
        elif kind == "task_claimed":
            self._claims_changed.set()
            if task_id in board.tasks and board.tasks[task_id].holder != agent_id and \
                    not self._claimed_elsewhere(task_id, agent_id):
                self._reconcile(task_id)
        elif kind in ("task_done", "task_failed", "task_cancelled") and task_id in board.tasks:
            if kind == "task_cancelled":
                for slot in self.slots.values():
                    self._stop_work(slot, task_id, "task cancelled")
            board_task = board.tasks[task_id]
            if kind == "task_done" and board_task.state is TaskState.CLAIMED and \
                    board_task.holder == agent_id and agent_id is not None:
                # The board already shows the claim this event ends: apply it as it says.
                self.policy.on_task_finished(task_id, agent_id, True, self.now())
                if board_task.parent is not None:
                    self._reopen_parent(board_task.parent)
            elif not board_task.state.terminal:
                self._reconcile(task_id)
                if kind == "task_done":
                    self._after_done(self.store.get_task(task_id))
        elif kind in ("task_released", "lease_expired") and task_id in board.tasks:
            self._released(task_id, agent_id, expired=kind == "lease_expired")
        elif kind == "agent_added" and agent_id is not None and \
                agent_id not in self.policy.alive:
            self.policy.add_agent(self.store.get_agent(agent_id), self.now())
        else:
            super()._follow(event)

    def _after_follow(self) -> None:
        self._flush_wakes()

    def _claimed_elsewhere(self, task_id: str, agent_id: str | None) -> bool:
        """Apply another process's claim as its event says, without reading the store, when
        the board shows the task free (or held for a claim in flight elsewhere). Events are
        applied in seq order, so later ones correct it if the claim has ended since."""
        board_task = self.policy.board.tasks[task_id]
        if agent_id is None or agent_id in self.slots or agent_id not in self.policy.alive:
            return False
        now = self.now()
        holder = board_task.holder
        if holder == CONTENDED or (holder is not None and self._in_flight.get(task_id) == holder):
            # Held for a claim in flight (elsewhere, or here: the store will refuse it).
            self.policy.on_released(task_id, holder, now, counts=False)
        if not board_task.ready:
            return False
        self.policy.claim(task_id, agent_id, now)
        return True

    def _post_foreign(self, task_id: str) -> None:
        task = self.store.get_task(task_id)
        if task.state.terminal:
            return
        board = self.policy.board
        deps = []
        doomed = False
        for dep in task.depends_on:
            if dep in board.tasks:
                deps.append(dep)
                continue
            try:
                state = self.store.get_task(dep).state
            except NotFound:
                state = TaskState.CANCELLED
            doomed = doomed or state is not TaskState.DONE
        self.policy.post([TaskSpec(task.id, task.skills, task.priority, task.effort,
                                   tuple(deps))], self.now())
        if doomed:
            self._cancel_on_board(task.id)
            self._mirror_ends("a task it depends on did not succeed")
        self._persist_all_thresholds()

    def _persist_all_thresholds(self) -> None:
        for agent_id in self.slots:
            self._persist_thresholds(agent_id)

    def _released(self, task_id: str, agent_id: str | None, *, expired: bool) -> None:
        board_task = self.policy.board.tasks[task_id]
        slot = self.slots.get(agent_id or "")
        if board_task.holder is not None and board_task.holder == agent_id:
            self.policy.on_released(task_id, agent_id, self.now(), counts=False)
        if expired and slot is not None:
            if not slot.alive:
                slot.task_id = None
                self._lose_agent(slot, "its lease expired and its loop is gone")
            elif slot.task_id == task_id:
                # Alive but too slow to renew (a stalled loop): the work is someone else's now.
                self._stop_work(slot, task_id, "lost the lease")
        self._flush_wakes()

    def _lost(self, slot: AgentSlot, why: str) -> None:
        self.policy.on_agent_lost(slot.id, self.now())
        self._flush_wakes()

    # -- pausing and ending ----------------------------------------------------------------------
    def _board_finished(self) -> bool:
        board = self.policy.board
        return bool(len(board)) and board.finished

    def _may_stall(self) -> bool:
        # Other processes may host agents that can still work.
        return self.hosted is None


def task_tools_for(mode: Mode) -> frozenset[TaskTool]:
    """The task tools the built-in agent gets in a mode."""
    return SWARM_TOOLS if mode is Mode.SWARM else SOLO_TOOLS
