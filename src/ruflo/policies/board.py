"""The board every policy decides over: tasks, their dependencies, claims and readiness, in memory.

Pure (no I/O, no clock of its own: every call is given `now`). The simulator owns one; the live
engine mirrors the store into one. Its checks make double claims and double completions impossible.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Protocol

from ruflo.errors import Conflict, PolicyError
from ruflo.model import TaskState, find_cycle

__all__ = ["Board", "BoardTask", "TaskLike", "find_cycle"]

OPEN = TaskState.OPEN
CLAIMED = TaskState.CLAIMED
DONE = TaskState.DONE
FAILED = TaskState.FAILED
CANCELLED = TaskState.CANCELLED


class TaskLike(Protocol):
    """What a policy needs to know about a task: `ruflo.model.Task` and `TaskSpec` both fit."""

    @property
    def id(self) -> str: ...
    @property
    def skills(self) -> tuple[str, ...]: ...
    @property
    def priority(self) -> int: ...
    @property
    def effort(self) -> float: ...
    @property
    def depends_on(self) -> tuple[str, ...]: ...


class BoardTask:
    """One task on the board. Slotted: a simulated board holds a million of these."""

    __slots__ = (
        "assignee",
        "claimed_at",
        "dependents",
        "depth",
        "effort",
        "finished_at",
        "holder",
        "id",
        "lost",
        "parent",
        "posted_at",
        "priority",
        "ready_at",
        "seq",
        "skills",
        "state",
        "stimulus_at",
        "stimulus_base",
        "waiting",
    )

    def __init__(
        self,
        task_id: str,
        skills: tuple[str, ...],
        priority: int,
        effort: float,
        seq: int,
        now: float,
        parent: str | None,
    ) -> None:
        self.id = task_id
        self.skills = skills
        self.priority = priority
        self.effort = effort
        self.seq = seq
        self.parent = parent
        self.state = OPEN
        self.holder: str | None = None
        """Agent holding the claim right now."""
        self.assignee: str | None = None
        """Agent the task is assigned to (company, round robin, solo); None on a swarm board."""
        self.waiting = 0
        """Dependencies not yet done; the task is ready when this is 0 and it is open."""
        self.dependents: list[BoardTask] | None = None
        self.lost = 0
        """Attempts that ended without success (failure, release, lease expiry of a live agent)."""
        self.depth = 0
        self.posted_at = now
        self.ready_at: float | None = None
        self.claimed_at: float | None = None
        self.finished_at: float | None = None
        self.stimulus_base = 0.0
        """Swarm stimulus at `stimulus_at`; later values follow from the closed form in swarm.py."""
        self.stimulus_at = now

    @property
    def ready(self) -> bool:
        return self.state is OPEN and self.waiting == 0 and self.holder is None

    def __repr__(self) -> str:
        return f"BoardTask({self.id!r}, {self.state.value}, holder={self.holder!r})"


class Board:
    """Tasks with dependencies and claims. Every change that makes a task ready is queued in
    `newly_ready` (drained by the policy); every task that ends is counted in `terminal`."""

    def __init__(self, max_attempts: int = 5) -> None:
        self.tasks: dict[str, BoardTask] = {}
        self.max_attempts = max_attempts
        """Lost attempts after which a task fails for good (against endless thrash)."""
        self.newly_ready: list[BoardTask] = []
        self.newly_terminal: list[BoardTask] = []
        self.terminal = 0
        self.done = 0
        self._seq = 0

    def __len__(self) -> int:
        return len(self.tasks)

    def get(self, task_id: str) -> BoardTask:
        try:
            return self.tasks[task_id]
        except KeyError:
            raise PolicyError(f"no task {task_id!r} on the board") from None

    @property
    def finished(self) -> bool:
        return self.terminal == len(self.tasks)

    def post_many(self, specs: Iterable[TaskLike], now: float) -> list[BoardTask]:
        """Post a batch whose dependencies may point forward inside the batch."""
        specs = list(specs)
        posted: list[BoardTask] = []
        for spec in specs:
            posted.append(self._add(spec.id, spec.skills, spec.priority, spec.effort, now, None))
        for spec, task in zip(specs, posted, strict=True):
            self._link(task, spec.depends_on, now)
        return posted

    def post(
        self,
        task_id: str,
        skills: Sequence[str],
        priority: int,
        effort: float,
        depends_on: Sequence[str],
        now: float,
        parent: str | None = None,
    ) -> BoardTask:
        task = self._add(task_id, tuple(skills), priority, effort, now, parent)
        self._link(task, depends_on, now)
        return task

    def _add(
        self,
        task_id: str,
        skills: tuple[str, ...],
        priority: int,
        effort: float,
        now: float,
        parent: str | None,
    ) -> BoardTask:
        if task_id in self.tasks:
            raise PolicyError(f"task id {task_id!r} is already on the board; ids must be unique")
        if effort < 0:
            raise PolicyError(f"task {task_id!r} has negative effort {effort}")
        self._seq += 1
        task = BoardTask(task_id, skills, priority, effort, self._seq, now, parent)
        self.tasks[task_id] = task
        return task

    def _link(self, task: BoardTask, depends_on: Sequence[str], now: float) -> None:
        failed_dependency = False
        for dep_id in depends_on:
            dep = self.tasks.get(dep_id)
            if dep is None:
                del self.tasks[task.id]
                raise PolicyError(f"task {task.id!r} depends on unknown task {dep_id!r}")
            if dep.state is DONE:
                continue
            if dep.state is FAILED or dep.state is CANCELLED:
                failed_dependency = True
                continue
            if dep.dependents is None:
                dep.dependents = []
            dep.dependents.append(task)
            task.waiting += 1
        if failed_dependency:
            self._end(task, CANCELLED, now)
        elif task.waiting == 0:
            self._make_ready(task, now)

    def _make_ready(self, task: BoardTask, now: float) -> None:
        task.ready_at = now
        self.newly_ready.append(task)

    def _end(self, task: BoardTask, state: TaskState, now: float) -> None:
        task.state = state
        task.holder = None
        task.finished_at = now
        self.terminal += 1
        if state is DONE:
            self.done += 1
        self.newly_terminal.append(task)
        dependents = task.dependents
        task.dependents = None
        if not dependents:
            return
        if state is DONE:
            for child in dependents:
                child.waiting -= 1
                if child.waiting == 0 and child.state is OPEN:
                    self._make_ready(child, now)
        else:
            for child in dependents:
                if not child.state.terminal:
                    if child.holder is not None:
                        # A dependency failed under a running task (decomposition): it fails too.
                        child.holder = None
                    self._end(child, CANCELLED, now)

    def claim(self, task_id: str, agent_id: str, now: float) -> BoardTask:
        """Give `agent_id` the claim on a ready task; a second claim is a Conflict, never a tie."""
        task = self.get(task_id)
        if task.state is not OPEN or task.holder is not None:
            raise Conflict(f"task {task_id!r} is {task.state.value}, held by {task.holder!r}")
        if task.waiting:
            raise Conflict(f"task {task_id!r} still waits on {task.waiting} dependencies")
        task.state = CLAIMED
        task.holder = agent_id
        task.claimed_at = now
        return task

    def _check_holder(self, task: BoardTask, agent_id: str) -> None:
        if task.state is not CLAIMED or task.holder != agent_id:
            raise Conflict(
                f"agent {agent_id!r} does not hold task {task.id!r} "
                f"(it is {task.state.value}, held by {task.holder!r})"
            )

    def finish(self, task_id: str, agent_id: str, success: bool, now: float) -> BoardTask:
        """End the holder's attempt: done, or back to open (failed for good past max_attempts)."""
        task = self.get(task_id)
        self._check_holder(task, agent_id)
        if success:
            self._end(task, DONE, now)
        else:
            self._lose(task, now, counts=True)
        return task

    def release(self, task_id: str, agent_id: str, now: float, *, counts: bool = True) -> BoardTask:
        """The holder lets go (quit, or its lease expired): the task reopens. `counts=False` for a
        death, which is not the task's fault and does not use up an attempt."""
        task = self.get(task_id)
        self._check_holder(task, agent_id)
        self._lose(task, now, counts=counts)
        return task

    def _lose(self, task: BoardTask, now: float, *, counts: bool) -> None:
        task.holder = None
        if counts:
            task.lost += 1
        if task.lost >= self.max_attempts:
            self._end(task, FAILED, now)
            return
        task.state = OPEN
        if task.waiting == 0:
            self._make_ready(task, now)

    def cancel(self, task_id: str, now: float) -> BoardTask:
        task = self.get(task_id)
        if not task.state.terminal:
            self._end(task, CANCELLED, now)
        return task

    def decompose(
        self,
        task_id: str,
        agent_id: str,
        children: Sequence[TaskLike],
        now: float,
        remaining_effort: float,
    ) -> list[BoardTask]:
        """The holder splits its task: children are posted, the parent waits on them and reopens
        (with `remaining_effort`, the integration work) when they are all done."""
        task = self.get(task_id)
        self._check_holder(task, agent_id)
        if not children:
            raise PolicyError(f"decomposing task {task_id!r} needs at least one subtask")
        posted = []
        for spec in children:
            child = self.post(spec.id, spec.skills, spec.priority, spec.effort, spec.depends_on,
                              now, parent=task.id)
            child.depth = task.depth + 1
            posted.append(child)
        task.holder = None
        task.state = OPEN
        task.effort = remaining_effort
        for child in posted:
            if child.state.terminal:
                continue
            if child.dependents is None:
                child.dependents = []
            child.dependents.append(task)
            task.waiting += 1
        if task.waiting == 0:
            self._make_ready(task, now)
        return posted

    def drain_ready(self) -> list[BoardTask]:
        ready, self.newly_ready = self.newly_ready, []
        return ready

    def drain_terminal(self) -> list[BoardTask]:
        ended, self.newly_terminal = self.newly_terminal, []
        return ended

    def cancel_unfinished(self, now: float) -> int:
        """End everything still open (no agent is left to do it); returns how many."""
        count = 0
        for task in self.tasks.values():
            if not task.state.terminal:
                self._end(task, CANCELLED, now)
                count += 1
        return count


def lower_bound(tasks: Sequence[TaskLike], agents: int) -> tuple[float, float, float]:
    """(critical path, total work, LB) over task efforts. Raises PolicyError on a cycle."""
    effort = {t.id: t.effort for t in tasks}
    total = math.fsum(effort.values())
    indegree = dict.fromkeys(effort, 0)
    children: dict[str, list[str]] = {}
    for task in tasks:
        for dep in task.depends_on:
            if dep not in effort:
                raise PolicyError(f"task {task.id!r} depends on unknown task {dep!r}")
            indegree[task.id] += 1
            children.setdefault(dep, []).append(task.id)
    finish = {}
    stack = [tid for tid, n in indegree.items() if n == 0]
    start = dict.fromkeys(effort, 0.0)
    while stack:
        tid = stack.pop()
        end = start[tid] + effort[tid]
        finish[tid] = end
        for child in children.get(tid, ()):
            if end > start[child]:
                start[child] = end
            indegree[child] -= 1
            if indegree[child] == 0:
                stack.append(child)
    if len(finish) != len(effort):
        cycle = find_cycle({t.id: list(t.depends_on) for t in tasks}) or []
        raise PolicyError("the tasks' dependencies form a cycle: " + " → ".join(cycle))
    critical = max(finish.values(), default=0.0)
    return critical, total, max(critical, total / max(agents, 1))
