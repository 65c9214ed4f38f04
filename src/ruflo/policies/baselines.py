"""Baselines to compare the swarm against: solo (one agent does everything in dependency order)
and round robin (tasks dealt out in turn, skills ignored). Pure: no I/O.
"""

from __future__ import annotations

from ruflo.errors import PolicyError
from ruflo.model import Mode
from ruflo.policies.base import (
    AgentLike,
    AssignedWork,
    BasePolicy,
    Decision,
    Idle,
    RandomLike,
    Take,
)
from ruflo.policies.board import BoardTask


class AssignedPolicy(BasePolicy):
    """Shared run loop of the assignment policies: an agent takes its own highest-priority ready
    task, oldest first; with none it sleeps until one of its tasks becomes ready."""

    def __init__(self, *, max_attempts: int = 5) -> None:
        super().__init__(max_attempts=max_attempts)
        self.work = AssignedWork()
        self.decisions = 0
        self._live: list[str] | None = None

    def add_agent(self, agent: AgentLike, now: float) -> None:
        super().add_agent(agent, now)
        self._live = None

    def choose(self, agent_id: str, now: float, rng: RandomLike) -> Decision:
        self.decisions += 1
        if not self.alive.get(agent_id, False):
            raise PolicyError(f"agent {agent_id!r} is not an active member of this hive")
        task = self.work.pop_ready(agent_id)
        return Take(task.id) if task is not None else Idle(None)

    def live_agents(self) -> list[str]:
        if self._live is None:
            self._live = [a for a in self.agent_ids if self.alive[a]]
        return self._live

    def on_agent_lost(self, agent_id: str, now: float) -> None:
        self._live = None
        super().on_agent_lost(agent_id, now)

    def _assign(self, task: BoardTask, agent_id: str, *, queue_if_ready: bool = True) -> None:
        if self.work.assign(task, agent_id, queue_if_ready=queue_if_ready):
            self._wakes.append(agent_id)

    def _on_posted(self, tasks: list[BoardTask], now: float) -> None:
        for task in tasks:
            if not task.state.terminal:
                # Ready ones are queued by _on_ready, which follows.
                self._assign(task, self._pick(task), queue_if_ready=False)

    def _on_ready(self, task: BoardTask, now: float) -> None:
        if task.assignee is None:
            self._assign(task, self._pick(task))
        else:
            self.work.push_ready(task)
            self._wakes.append(task.assignee)

    def _pick(self, task: BoardTask) -> str:
        raise NotImplementedError


class SoloPolicy(AssignedPolicy):
    """One agent does every task, in dependency order (highest priority, then oldest, first).
    If it is lost, the next live agent inherits the whole board."""

    mode = Mode.SOLO

    def _pick(self, task: BoardTask) -> str:
        live = self.live_agents()
        if not live:
            raise PolicyError("solo mode has no live agent to do the work")
        return live[0]

    def _on_lost(self, agent_id: str, now: float) -> None:
        inherited = self.work.take_back(agent_id)
        if not self.live_agents():
            return
        for task in inherited:
            self._assign(task, self._pick(task))


class RoundRobinPolicy(AssignedPolicy):
    """Tasks are dealt to the agents in turn as they are posted, skills ignored; each agent works
    its own pile. A lost agent's pile is dealt out again to the live ones."""

    mode = Mode.ROUND_ROBIN

    def __init__(self, *, max_attempts: int = 5) -> None:
        super().__init__(max_attempts=max_attempts)
        self._turn = 0

    def _pick(self, task: BoardTask) -> str:
        live = self.live_agents()
        if not live:
            raise PolicyError("round robin has no live agent to give the task to")
        agent_id = live[self._turn % len(live)]
        self._turn += 1
        return agent_id

    def _on_lost(self, agent_id: str, now: float) -> None:
        orphans = self.work.take_back(agent_id)
        if not self.live_agents():
            return
        for task in orphans:
            self._assign(task, self._pick(task))
