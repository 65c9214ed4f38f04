"""What every policy answers and how an engine drives it: decisions, the Policy protocol, and the
shared bookkeeping (board, wake list, assigned queues). Pure: no I/O, no asyncio, no clock.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ruflo.model import Mode
from ruflo.policies.board import Board, BoardTask, TaskLike


class AgentLike(Protocol):
    """What a policy needs to know about an agent: `ruflo.model.Agent` fits."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def skills(self) -> tuple[str, ...]: ...
    @property
    def role(self) -> str: ...
    @property
    def capabilities(self) -> str: ...
    @property
    def reports_to(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """A light task description (the simulator's million-task boards, decomposition children)."""

    id: str
    skills: tuple[str, ...] = ()
    priority: int = 1
    effort: float = 1.0
    depends_on: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Take:
    """Claim this ready task and do it."""

    task_id: str


@dataclass(frozen=True, slots=True)
class Decompose:
    """Claim this task, split it into `parts` subtasks, post them; the task waits on them."""

    task_id: str
    parts: int


@dataclass(frozen=True, slots=True)
class Delegate:
    """Hand these tickets (task id, report's agent id) down the org chart; costs coordination.

    The assignments are the policy's proposal; a planner resolves it: in the simulator a timed
    stand-in that accepts it, live one metered LLM call that may accept it, name another report
    (checked against capabilities), split the ticket, hire (when `may_hire`) or escalate."""

    assignments: tuple[tuple[str, str], ...]
    may_hire: bool = False
    """The hive has hires left and people have not rejected one for these tickets."""


@dataclass(frozen=True, slots=True)
class Escalate:
    """Pass this ticket up: to `to` (the nearest live manager), or to people (a strategy
    approval) when `to` is None. `give_up`: it was escalated too often and ends cancelled."""

    task_id: str
    to: str | None
    give_up: bool = False


@dataclass(frozen=True, slots=True)
class AwaitApproval:
    """This ticket waits on a person's decision (approval `approval_id`): leave it be."""

    task_id: str
    approval_id: str


@dataclass(frozen=True, slots=True)
class Idle:
    """Nothing to do now. Look again at `retry_at` if set; otherwise sleep until woken."""

    retry_at: float | None = None


Decision = Take | Decompose | Delegate | Escalate | AwaitApproval | Idle


class Policy(Protocol):
    """Who acts next. The engine's run loop (simulated, live or distributed) is:

    1. `add_agent` for each agent, `post` the tasks; wake every agent.
    2. For a woken idle agent: `choose(agent, now, rng)`.
       Take → `claim`, do the work, then `on_task_finished(task, agent, success)`.
       Decompose → `claim`, plan the parts, then `decompose(task, agent, children, ...)`.
       Delegate → a planner resolves the proposal (spending the coordination), then
       `on_delegated(agent, assignments)`. Escalate → the ticket goes up the chain (or to
       people); AwaitApproval → the ticket waits on a person (company mode only).
       Idle(retry_at) → sleep until woken, or until `retry_at`.
    3. After every call, `drain_wakes()` names the agents to wake (a task became ready for them,
       a ticket was assigned to them); nothing else wakes an agent except its own `retry_at`.
    4. A holder that quits or whose lease expired: `on_released`; an agent found dead:
       `on_agent_lost`; a task cancelled from outside: `cancel`. The run ends when
       `board.finished`.
    """

    mode: Mode
    board: Board

    def add_agent(self, agent: AgentLike, now: float) -> None: ...
    def post(self, tasks: Iterable[TaskLike], now: float) -> None: ...
    def post_integration(self, task: TaskLike, owner: str, now: float) -> None: ...
    def choose(self, agent_id: str, now: float, rng: RandomLike) -> Decision: ...
    def claim(self, task_id: str, agent_id: str, now: float) -> BoardTask: ...
    def on_task_finished(self, task_id: str, agent_id: str, success: bool, now: float) -> None: ...
    def on_released(self, task_id: str, agent_id: str, now: float, *, counts: bool) -> None: ...
    def on_delegated(
        self, agent_id: str, assignments: Sequence[tuple[str, str]], now: float
    ) -> None: ...
    def decompose(
        self,
        task_id: str,
        agent_id: str,
        children: Sequence[TaskLike],
        now: float,
        remaining_effort: float,
    ) -> None: ...
    def cancel(self, task_id: str, now: float) -> None: ...
    def on_agent_lost(self, agent_id: str, now: float) -> None: ...
    def quit_after(self, task: BoardTask, rng: RandomLike) -> float | None: ...
    def drain_wakes(self) -> list[str]: ...


class RandomLike(Protocol):
    """The part of `random.Random` policies use (seeded by the engine: same seed, same run)."""

    def random(self) -> float: ...
    def expovariate(self, lambd: float, /) -> float: ...
    def randrange(self, start: int, stop: int | None = ..., step: int = ..., /) -> int: ...


class BasePolicy:
    """Board, agent registry and wake list shared by all policies; subclasses react to tasks
    becoming ready (`_on_ready`) and to agents leaving (`_on_lost`)."""

    mode: Mode

    def __init__(self, *, max_attempts: int = 5) -> None:
        self.board = Board(max_attempts=max_attempts)
        self.agent_ids: list[str] = []
        self.alive: dict[str, bool] = {}
        self._wakes: list[str] = []

    # -- engine-facing ---------------------------------------------------------------------
    def add_agent(self, agent: AgentLike, now: float) -> None:
        if agent.id in self.alive:
            from ruflo.errors import PolicyError

            raise PolicyError(f"agent {agent.id!r} was added twice; agent ids must be unique")
        self.agent_ids.append(agent.id)
        self.alive[agent.id] = True

    def post(self, tasks: Iterable[TaskLike], now: float) -> None:
        posted = self.board.post_many(tasks, now)
        self._on_posted(posted, now)
        self._absorb(now)

    def post_integration(self, task: TaskLike, owner: str, now: float) -> None:
        """An integration task for `owner`'s conflicting merge (the simulator's conflict rule,
        engine/conflicts.py): on the board like any task; a company hands it to the owner's
        manager."""
        self.post([task], now)

    def claim(self, task_id: str, agent_id: str, now: float) -> BoardTask:
        return self.board.claim(task_id, agent_id, now)

    def on_task_finished(self, task_id: str, agent_id: str, success: bool, now: float) -> None:
        self.board.finish(task_id, agent_id, success, now)
        self._absorb(now)

    def on_released(self, task_id: str, agent_id: str, now: float, *, counts: bool) -> None:
        self.board.release(task_id, agent_id, now, counts=counts)
        self._absorb(now)

    def on_delegated(
        self, agent_id: str, assignments: Sequence[tuple[str, str]], now: float
    ) -> None:
        from ruflo.errors import PolicyError

        raise PolicyError(f"{self.mode.value} mode does not delegate")

    def decompose(
        self,
        task_id: str,
        agent_id: str,
        children: Sequence[TaskLike],
        now: float,
        remaining_effort: float,
    ) -> None:
        self.board.decompose(task_id, agent_id, children, now, remaining_effort)
        self._absorb(now)

    def cancel(self, task_id: str, now: float) -> None:
        """A task was cancelled outside the policy (by a person, or because the store says so):
        end it on the board and let its dependents and waiting agents follow."""
        self.board.cancel(task_id, now)
        self._absorb(now)

    def on_agent_lost(self, agent_id: str, now: float) -> None:
        if not self.alive.get(agent_id, False):
            return
        self.alive[agent_id] = False
        self._on_lost(agent_id, now)
        self._absorb(now)

    def quit_after(self, task: BoardTask, rng: RandomLike) -> float | None:
        return None

    def drain_wakes(self) -> list[str]:
        wakes, self._wakes = self._wakes, []
        return wakes

    # -- what a policy learns (swarm) ------------------------------------------------------
    abstain_counts = True
    """Whether giving a task back unattempted uses up one of its attempts."""

    def on_abstain(self, agent_id: str, task_id: str) -> None:
        """An agent looked at a task and would not do it (its LLM said so in a live run)."""

    def thresholds(self, agent_id: str) -> dict[str, float]:
        """What the policy learned about the agent (per skill); empty when it learns nothing."""
        return {}

    def restore_thresholds(self, agent_id: str, thresholds: dict[str, float]) -> None:
        """Take back what an earlier run learned about the agent (skills it knows only)."""

    def alike(self, task_id: str, most: int) -> list[str]:
        """Ready tasks the policy would choose as readily as `task_id` (itself first), at most
        `most`: what an agent may take instead when another process takes that one first."""
        return [task_id]

    def best_ready(self, agent_id: str) -> str | None:
        """The ready task the agent is best suited for, whatever a draw would say: what an agent
        claiming from outside takes at its idle floor (engine/stored_policy.py). None when no
        ready task is for it (assigned work: its own pile, which `choose` hands it anyway)."""
        return None

    # -- put back from storage -------------------------------------------------------------
    @property
    def take_reason(self) -> str:
        """Why the policy hands an agent a task, for someone asking from outside (REST, MCP)."""
        return f"it is this agent's turn ({self.mode.value})"

    joins_in_place = False
    """Whether an agent added to a running board leaves it as a board rebuilt with that agent
    would be. Not for assigned work: it is dealt among the members, so a join deals it again."""

    def became_ready(self, task_id: str, at: float, *, boosted: bool) -> None:
        """Tell the policy when a ready task of a board put back from storage became ready, and
        whether a dependency's completion or a reopening marked it then (the swarm anchors its
        stimulus there, so waiting counts); the others keep no such state."""

    # -- subclass hooks --------------------------------------------------------------------
    def _absorb(self, now: float) -> None:
        board = self.board
        while board.newly_ready:
            for task in board.drain_ready():
                if task.ready:
                    self._on_ready(task, now)
        if board.newly_terminal:
            for task in board.drain_terminal():
                self._on_terminal(task, now)

    def _on_terminal(self, task: BoardTask, now: float) -> None:
        """A task ended (done, failed for good, or cancelled because a dependency failed)."""

    def choose(self, agent_id: str, now: float, rng: RandomLike) -> Decision:
        raise NotImplementedError

    def _on_posted(self, tasks: list[BoardTask], now: float) -> None:
        """New tasks are on the board (ready ones reach `_on_ready` right after)."""

    def _on_ready(self, task: BoardTask, now: float) -> None:
        raise NotImplementedError

    def _on_lost(self, agent_id: str, now: float) -> None:
        raise NotImplementedError


class AssignedWork:
    """Per-agent queues of ready tasks assigned to that agent (company, round robin, solo).

    A task sits in its assignee's heap only while ready; stale entries (reassigned, claimed) are
    skipped on pop, so reassignment is O(1)."""

    def __init__(self) -> None:
        self.ready: dict[str, list[tuple[int, int, BoardTask]]] = {}
        self.owned: dict[str, list[BoardTask]] = {}
        """Every task ever assigned to an agent (for handing its work on when it is lost)."""

    def assign(self, task: BoardTask, agent_id: str, *, queue_if_ready: bool = True) -> bool:
        """Assign; returns True when the task was queued ready (the assignee should be woken)."""
        task.assignee = agent_id
        self.owned.setdefault(agent_id, []).append(task)
        if queue_if_ready and task.ready:
            self.push_ready(task)
            return True
        return False

    def push_ready(self, task: BoardTask) -> None:
        assert task.assignee is not None
        heapq.heappush(self.ready.setdefault(task.assignee, []), (-task.priority, task.seq, task))

    def pop_ready(self, agent_id: str) -> BoardTask | None:
        heap = self.ready.get(agent_id)
        while heap:
            _, _, task = heap[0]
            if task.ready and task.assignee == agent_id:
                heapq.heappop(heap)
                return task
            heapq.heappop(heap)
        return None

    def take_back(self, agent_id: str) -> list[BoardTask]:
        """Unassign and return the unfinished tasks of `agent_id`, in the order they came."""
        unique = {t.id: t for t in self.owned.pop(agent_id, [])}
        tasks = [t for t in unique.values() if t.assignee == agent_id and not t.state.terminal]
        self.ready.pop(agent_id, None)
        for task in tasks:
            task.assignee = None
        return tasks
