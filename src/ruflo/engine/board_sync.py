"""A policy's board kept in line with the store: the live engine's in-memory board (the same
policy object the simulator runs) loaded from the stored hive, brought in line with the event
log (tasks posted, claimed, finished or released by this or another process), and what the
policy learned written back to the agents' rows. Depends on the model, the Store protocol,
ruflo.policies and ruflo.engine.core.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from ruflo.agents import Executor
from ruflo.engine.clock import REAL_CLOCK, LiveClock
from ruflo.engine.core import AgentSlot, HiveEngine
from ruflo.engine.params import LiveParams
from ruflo.engine.stored_policy import load_board
from ruflo.errors import ConfigError, Conflict, NotFound
from ruflo.event_kinds import EventKind
from ruflo.model import Agent, Event, Mode, Task, TaskState
from ruflo.policies import BasePolicy, TaskSpec, make_policy

if TYPE_CHECKING:
    from ruflo.gateway.base import Gateway
    from ruflo.memory.notes import Memory
    from ruflo.store.base import Store

__all__ = ["CONTENDED", "PolicyBoardEngine"]

CONTENDED = "(claiming elsewhere)"
"""Board holder of a task whose row another process holds locked while it claims it: this
process's agents pass it over until that claim's event (or a recheck) says who has it."""


class PolicyBoardEngine(HiveEngine):
    """A hive engine whose decisions come from a policy over an in-memory board that follows
    the store; `BoardEngine` adds the claims, attempts and outcomes."""

    def __init__(self, store: Store, hive_id: str, *, gateway: Gateway | None,
                 params: LiveParams, executors: Callable[[Agent], Executor], model: str,
                 env: dict[str, str] | None, memory: Memory | None,
                 on_change: Callable[[], None] | None, hosted: Iterable[str] | None,
                 clock: LiveClock = REAL_CLOCK) -> None:
        super().__init__(store, hive_id, gateway=gateway, params=params, executors=executors,
                         model=model, env=env, memory=memory, on_change=on_change, clock=clock)
        self.hosted = frozenset(hosted) if hosted is not None else None
        """Agents this engine runs; None means all of the hive's (one-process hives)."""
        self.policy: BasePolicy
        self._t0 = 0.0
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


    # -- loading the board -----------------------------------------------------------------------
    def _load_work(self, agents: Sequence[Agent]) -> None:
        hive = self.hive
        if hive.mode is Mode.COMPANY:
            raise ConfigError("company mode needs its own engine hooks (delegation, "
                              "escalation), which this engine does not have yet; nothing was run")
        self.policy = make_policy(hive.mode, agents, seed=self.params.seed,
                                  swarm=self.params.swarm)
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
        doomed = load_board(self.policy, by_id.values(), 0.0)
        for task_id in doomed:
            self._cancel_on_board(task_id)
        if doomed:  # only they end tasks on the board here: spare a second read of the board
            self._mirror_ends("a task it depends on did not succeed")
        self._restore_thresholds(agents)
        self.policy.drain_wakes()

    def _restore_thresholds(self, agents: Sequence[Agent]) -> None:
        for agent in agents:
            self.policy.restore_thresholds(agent.id, dict(agent.thresholds))
            if agent.id in self.slots:
                self._persist_thresholds(agent.id)

    def _unsaved_thresholds(self, agent_id: str) -> dict[str, float] | None:
        """The agent's learned thresholds if they changed since last written, else None."""
        learned = self.policy.thresholds(agent_id)
        if not learned:
            return None
        thresholds = {k: round(v, 4) for k, v in learned.items()}
        return None if self._saved_thresholds.get(agent_id) == thresholds else thresholds

    def _persist_thresholds(self, agent_id: str) -> None:
        thresholds = self._unsaved_thresholds(agent_id)
        if thresholds is not None:
            self.store.update_agent(agent_id, thresholds=thresholds)
            self._saved_thresholds[agent_id] = thresholds


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
        if kind == EventKind.TASK_POSTED and task_id is not None and task_id not in board.tasks:
            self._post_foreign(task_id)
        elif kind == EventKind.TASK_CLAIMED:
            self._claims_changed.set()
            if task_id in board.tasks and board.tasks[task_id].holder != agent_id and \
                    not self._claimed_elsewhere(task_id, agent_id):
                self._reconcile(task_id)
        elif kind in (EventKind.TASK_DONE, EventKind.TASK_FAILED,
                      EventKind.TASK_CANCELLED) and task_id in board.tasks:
            if kind == EventKind.TASK_CANCELLED:
                for slot in self.slots.values():
                    self._stop_work(slot, task_id, "task cancelled")
            board_task = board.tasks[task_id]
            if kind == EventKind.TASK_DONE and board_task.state is TaskState.CLAIMED and \
                    board_task.holder == agent_id and agent_id is not None:
                # The board already shows the claim this event ends: apply it as it says.
                self.policy.on_task_finished(task_id, agent_id, True, self.now())
                if board_task.parent is not None:
                    self._reopen_parent(board_task.parent)
            elif not board_task.state.terminal:
                self._reconcile(task_id)
                if kind == EventKind.TASK_DONE:
                    self._after_done(self.store.get_task(task_id))
        elif kind in (EventKind.TASK_RELEASED, EventKind.LEASE_EXPIRED) and task_id in board.tasks:
            self._released(task_id, agent_id, expired=kind == EventKind.LEASE_EXPIRED)
        elif kind == EventKind.AGENT_ADDED and agent_id is not None and \
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

