"""The live engine: drives a stored hive through real time with asyncio. One loop per agent,
asleep until an event wakes it; claims with leases renewed while the agent works; the same
policy objects as the simulator decide who takes what.

Depends on the model, the Store and Gateway protocols, ruflo.policies, ruflo.agents and
ruflo.engine.core (the run loop it shares with company mode).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

from ruflo import telemetry
from ruflo.agents import (
    SOLO_TOOLS,
    SWARM_TOOLS,
    Executor,
    OutcomeKind,
    SubtaskSpec,
    TaskOutcome,
    TaskTool,
    executor_for,
)
from ruflo.engine.board_sync import CONTENDED, PolicyBoardEngine
from ruflo.engine.clock import REAL_CLOCK, LiveClock
from ruflo.engine.core import KILLED, AgentSlot, objective_succeeded
from ruflo.engine.dispatch import carry_out
from ruflo.engine.params import LiveParams, RunSummary
from ruflo.errors import (
    BudgetExceeded,
    Conflict,
    GatewayError,
    PolicyError,
    RufloError,
)
from ruflo.event_kinds import EventKind
from ruflo.model import (
    JSON,
    Agent,
    AgentStatus,
    Hive,
    Mode,
    Task,
    TaskState,
)
from ruflo.policies import (
    AwaitApproval,
    Decision,
    Decompose,
    Delegate,
    Escalate,
    Idle,
    Take,
    find_cycle,
)

if TYPE_CHECKING:
    from ruflo.gateway.base import Gateway
    from ruflo.memory.notes import Memory
    from ruflo.store.base import Store

__all__ = ["BoardEngine", "LiveParams", "RunSummary", "summarise"]

log = logging.getLogger(__name__)

SPREAD_OFFERED = 16
"""Most tasks one claim offers the store (the chosen one and alternatives like it)."""

RECHECK_CONTENDED = 2.0
"""Seconds after which a task still held for another process's claim is read again (that
claim may have rolled back)."""

STORE_THREADS = 4
"""Threads (each with its own Postgres connection) that run an engine's claim and finish
transactions, so one agent's wait for a commit does not stall the others."""

_T = TypeVar("_T")


class _Race(enum.Enum):
    LOST = "lost"


LOST_RACE = _Race.LOST
"""The chosen task went to another agent first: ask the policy again."""
Chosen = Task | None | Literal[_Race.LOST]
"""What carrying out a decision gives an agent loop: a claimed task, nothing (sleep), or a race
lost."""

FOLLOWED = frozenset({
    EventKind.TASK_POSTED, EventKind.TASK_CLAIMED, EventKind.TASK_DONE, EventKind.TASK_FAILED,
    EventKind.TASK_CANCELLED, EventKind.TASK_RELEASED, EventKind.LEASE_EXPIRED,
    EventKind.HIVE_PAUSED, EventKind.HIVE_RUNNING, EventKind.HIVE_BUDGET_CHANGED,
    EventKind.HIVE_CANCELLED, EventKind.HIVE_DONE, EventKind.HIVE_FAILED, EventKind.AGENT_ADDED,
})
"""Event kinds the engine applies to its board; the rest (transcripts, ledger) it skips."""


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


class BoardEngine(PolicyBoardEngine):
    """Drives one stored hive by a policy (swarm, round robin, solo): see `run` for the loop."""

    FOLLOWED = FOLLOWED

    def __init__(self, store: Store, hive_id: str, *, gateway: Gateway | None = None,
                 params: LiveParams | None = None,
                 executors: Callable[[Agent], Executor] = executor_for,
                 model: str = "gpt-4o-mini", env: dict[str, str] | None = None,
                 memory: Memory | None = None, hosted: Iterable[str] | None = None,
                 on_change: Callable[[], None] | None = None,
                 on_decision: Callable[[str, Decision], None] | None = None,
                 clock: LiveClock = REAL_CLOCK, clones: Path | None = None) -> None:
        super().__init__(store, hive_id, gateway=gateway, params=params or LiveParams(),
                         executors=executors, model=model, env=env, memory=memory,
                         on_change=on_change, hosted=hosted, clock=clock)
        self.clones = clones
        self.on_decision = on_decision
        """Called with every decision the policy makes (tests compare runs with it)."""
        self.rng = random.Random(self.params.seed)
        self._pool: ThreadPoolExecutor | None = None
        """Postgres: threads for the claim and finish transactions (SQLite answers in tens of
        microseconds, less than a thread hop, so it runs them in the loop)."""
        self._claiming: dict[asyncio.Future[tuple[Task, Agent] | None], str] = {}
        """Claims in flight in the pool whose waiter was cancelled: handed back at teardown."""

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

    def _load_work(self, agents: Sequence[Agent]) -> None:
        super()._load_work(agents)
        self._tools = task_tools_for(self.hive.mode)

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

    # -- agent loops -----------------------------------------------------------------------------
    async def _next_task(self, slot: AgentSlot) -> Task | None:
        """Ask the policy until a claim is won or it says to wait."""
        for _ in range(16):
            now = self.now()
            decision = self.policy.choose(slot.id, now, self.rng)
            self._flush_wakes()
            if self.on_decision is not None:
                self.on_decision(slot.id, decision)
            claimed = await carry_out(self, (slot, now), decision)
            if claimed is not LOST_RACE:
                return claimed
        # Lost every race: others are claiming as fast as we are; look again soon.
        self._retry_later(slot, 0.1)
        return None

    # -- carrying out a decision (`carry_out` calls these) ---------------------------------------
    async def take(self, choosing: tuple[AgentSlot, float], decision: Take) -> Chosen:
        task_id, *alternatives = self._spread(decision.task_id)
        return await self._claim_chosen(*choosing, task_id, alternatives)

    async def decompose(self, choosing: tuple[AgentSlot, float], decision: Decompose) -> Chosen:
        # A live agent decides itself whether to split (post_subtasks).
        return await self._claim_chosen(*choosing, decision.task_id, ())

    async def idle(self, choosing: tuple[AgentSlot, float], decision: Idle) -> Chosen:
        slot, now = choosing
        if decision.retry_at is not None:
            self._retry_later(slot, decision.retry_at - now)
        return None

    async def delegate(self, choosing: tuple[AgentSlot, float], decision: Delegate) -> Chosen:
        raise self._not_here(choosing[0], "delegate")

    async def escalate(self, choosing: tuple[AgentSlot, float], decision: Escalate) -> Chosen:
        raise self._not_here(choosing[0], "escalate")

    async def await_approval(self, choosing: tuple[AgentSlot, float],
                             decision: AwaitApproval) -> Chosen:
        raise self._not_here(choosing[0], "wait on an approval")

    def _not_here(self, slot: AgentSlot, verb: str) -> PolicyError:
        return PolicyError(f"{self.hive.mode.value} mode asked agent {slot.agent.name} to "
                           f"{verb}, which only a company does")

    async def _claim_chosen(self, slot: AgentSlot, now: float, task_id: str,
                            alternatives: Sequence[str]) -> Chosen:
        with telemetry.hive_span(self.hive.config.get(telemetry.TRACEPARENT), "claim", {
                "ruflo.agent.id": slot.id, "ruflo.task.id": task_id}) as claim_span:
            claimed = await self._claim(slot, task_id, now, alternatives)
            claim_span.set("ruflo.claim.task_id", claimed.id if claimed is not None else None)
        if claimed is None:
            return LOST_RACE
        self._claims_changed.set()
        return claimed

    def _spread(self, task_id: str) -> list[str]:
        """Processes sharing a hive run the same policy over the same board, so their agents
        all reach for the head of the same queue and all but one lose the race. On Postgres,
        offer the store instead, in random order, the tasks the policy would choose as readily
        (`alike`: as many as the hive has agents); it claims the first no one else has (SKIP
        LOCKED), so a race lost costs no second try."""
        if self._pool is None:
            return [task_id]
        picks = self.policy.alike(task_id, len(self.policy.agent_ids))
        if len(picks) > 1:
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
                    self._pause_hive(error.pause_reason, str(error),
                                     paused_before=error.hive_paused)
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
            self._give_back(slot, task, f"abstained: {outcome.reason or 'no reason given'}",
                            counts=self.policy.abstain_counts)
            if task.id in self.policy.board.tasks:
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

    # -- pausing and ending ----------------------------------------------------------------------
    def _may_stall(self) -> bool:
        # Other processes may host agents that can still work.
        return self.hosted is None


def task_tools_for(mode: Mode) -> frozenset[TaskTool]:
    """The task tools the built-in agent gets in a mode."""
    return SWARM_TOOLS if mode is Mode.SWARM else SOLO_TOOLS
