"""Which task an MCP agent takes next: the hive's own policy, rebuilt from the stored board for
each decision. Depends on the core model and ruflo.policies; pure apart from the wall time given.

An MCP client is an agent that comes and goes between calls, so no policy object lives across
calls: the board (unfinished tasks, claims, when each task became ready) and the agents' stored
thresholds are enough to put the policy back in the state a live engine would hold, and the
decision's randomness is seeded from the hive's event count, so the same history decides the same.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from ruflo.errors import Conflict, PolicyError
from ruflo.model import Agent, Hive, Mode, Task, TaskState
from ruflo.policies import (
    BasePolicy,
    Decompose,
    Delegate,
    Idle,
    SwarmPolicy,
    Take,
    TaskSpec,
    make_policy,
)

TIME_UNIT_SECONDS = 10.0
"""Wall seconds per policy time unit, as in the live engine: how fast stimulus grows."""


@dataclass(frozen=True, slots=True)
class Choice:
    """The policy's answer for one agent: a task to claim, or why not and when to ask again."""

    task_id: str | None
    reason: str
    retry_after_seconds: float | None = None


def policy_time(hive: Hive, at: datetime) -> float:
    """Policy time of a wall instant: time units since the hive was created."""
    return (at - hive.created_at).total_seconds() / time_unit(hive)


def time_unit(hive: Hive) -> float:
    value = hive.config.get("time_unit")
    return float(value) if isinstance(value, int | float) and value > 0 else TIME_UNIT_SECONDS


def hive_seed(hive: Hive) -> int:
    value = hive.config.get("seed", 0)
    return value if isinstance(value, int) else 0


def rebuild(hive: Hive, agents: Sequence[Agent], tasks: Sequence[Task], now: float) -> BasePolicy:
    """The hive's policy holding the unfinished board as it stands, agents' thresholds restored.

    Tasks whose dependency failed or was cancelled can never become ready and are left out, with
    everything that depends on them. Swarm stimulus is anchored at the moment each task became
    ready (with the boost for a completed dependency or a reopening), so waiting counts."""
    if hive.mode is Mode.COMPANY:
        raise PolicyError("company-mode hives delegate through their org chart, which MCP "
                          "agents do not take part in; use a swarm, solo or round_robin hive")
    policy = make_policy(hive.mode, agents, seed=hive_seed(hive))
    for agent in agents:
        policy.add_agent(agent, now)
    by_id = {task.id: task for task in tasks}
    unfinished = {t.id: t for t in sorted(tasks, key=lambda t: t.created_at)
                  if not t.state.terminal}
    doomed: set[str] = set()
    changed = True
    while changed:
        changed = False
        for task in unfinished.values():
            if task.id not in doomed and any(
                    dep in doomed or (dep not in unfinished and (
                        dep not in by_id or by_id[dep].state is not TaskState.DONE))
                    for dep in task.depends_on):
                doomed.add(task.id)
                changed = True
    live = {task_id: task for task_id, task in unfinished.items() if task_id not in doomed}
    children: dict[str, list[str]] = {}
    for task in live.values():
        if task.parent_id is not None:
            children.setdefault(task.parent_id, []).append(task.id)
    specs = []
    for task in live.values():
        pending = [dep for dep in task.depends_on if dep in live]
        if task.state is TaskState.BLOCKED:
            pending += children.get(task.id, [])
        specs.append(TaskSpec(task.id, task.skills, task.priority, task.effort, tuple(pending)))
    policy.post(specs, now)
    for task in live.values():
        if task.state is TaskState.CLAIMED and task.assignee in policy.alive:
            try:
                policy.claim(task.id, task.assignee, now)
            except Conflict:
                continue  # its dependencies reopened under it; the lease settles it
    if isinstance(policy, SwarmPolicy):
        _anchor_stimulus(policy, hive, [live[s.id] for s in specs if not s.depends_on], by_id)
        for agent in agents:
            theta = policy.agents[agent.id].theta
            for skill, value in agent.thresholds.items():
                if skill in theta:
                    theta[skill] = value
    policy.drain_wakes()
    return policy


def _anchor_stimulus(policy: SwarmPolicy, hive: Hive, ready: Sequence[Task],
                     by_id: dict[str, Task]) -> None:
    p = policy.params
    for task in ready:
        if task.state is not TaskState.OPEN:
            continue
        finished = [by_id[d].finished_at for d in task.depends_on if by_id[d].finished_at]
        boosted = bool(finished) or task.attempts > 0
        became_ready = max([task.created_at, *(f for f in finished if f is not None)])
        if task.attempts > 0:
            became_ready = max(became_ready, task.updated_at)
        board_task = policy.board.get(task.id)
        weight = task.priority if task.priority > 1 else 1
        board_task.stimulus_base = min(p.s_max, p.s0 * weight + (p.boost if boosted else 0.0))
        board_task.stimulus_at = policy_time(hive, became_ready)


def decision_rng(hive: Hive, agent: Agent, last_seq: int) -> random.Random:
    """Same hive seed, agent and history: same draw (string seeds hash stably)."""
    return random.Random(f"{hive_seed(hive)}:{agent.name}:{last_seq}")


def choose(policy: BasePolicy, agent: Agent, now: float, rng: random.Random,
           unit: float) -> Choice:
    """Ask the policy once what `agent` should do now."""
    decision = policy.choose(agent.id, now, rng)
    policy.drain_wakes()
    if isinstance(decision, Take | Decompose):
        why = ("the swarm's response-threshold draw took it up"
               if isinstance(policy, SwarmPolicy) else f"it is this agent's turn "
                                                       f"({policy.mode.value})")
        return Choice(decision.task_id, why)
    if isinstance(decision, Idle):
        if decision.retry_at is not None:
            wait = max(0.0, decision.retry_at - now) * unit
            return Choice(None, "the ready tasks' stimulus was below this agent's thresholds: "
                                "it declined them for now (its thresholds rose)", round(wait, 3))
        return Choice(None, "no ready task for this agent now (open tasks may wait on "
                            "dependencies, or be held by others)")
    if isinstance(decision, Delegate):
        raise PolicyError(f"{policy.mode.value} mode asked to delegate, which MCP agents "
                          "do not do")
    raise AssertionError(decision)


def thresholds_of(policy: BasePolicy, agent_id: str) -> dict[str, float] | None:
    """The agent's thresholds after a decision or a finish, for storing (swarm only)."""
    if isinstance(policy, SwarmPolicy) and agent_id in policy.agents:
        return {k: round(v, 4) for k, v in policy.thresholds(agent_id).items()}
    return None
