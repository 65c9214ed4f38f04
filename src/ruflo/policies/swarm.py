"""The swarm policy: response thresholds on a stigmergic board (reference/allocation.md).

Pure: no I/O, no clock (every call carries `now`), randomness only from the rng it is given.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ruflo.errors import PolicyError
from ruflo.model import Mode, TaskState
from ruflo.policies.base import (
    AgentLike,
    BasePolicy,
    Decision,
    Decompose,
    Idle,
    RandomLike,
    Take,
)
from ruflo.policies.board import BoardTask

ANY_SKILL = "*"
OPEN = TaskState.OPEN
"""Queue key of tasks that name no skill: anyone may do them."""


@dataclass(frozen=True, slots=True)
class SwarmParams:
    """The knobs of the threshold model. Time is in effort units (a task of effort 1 done by a
    matching agent takes 1 unit)."""

    s0: float = 2.0
    """Stimulus of a task the moment it becomes ready (times its priority weight)."""
    growth: float = 2.0
    """δ: stimulus gained per unit of waiting, times the priority weight."""
    evaporation: float = 0.05
    """ρ: fraction of stimulus lost per unit of time; the stimulus tends to growth/ρ."""
    boost: float = 4.0
    """Deposit on a task when its dependencies complete (or it reopens)."""
    s_min: float = 0.1
    s_max: float = 60.0
    theta_min: float = 0.5
    theta_max: float = 30.0
    theta_skilled: float = 1.0
    """Starting threshold for a skill the agent declares (or any skill, for a generalist)."""
    theta_unskilled: float = 12.0
    """Starting threshold for a skill the agent does not declare."""
    theta_noise: float = 0.1
    """Relative noise on starting thresholds, against oscillation of identical agents."""
    learn: float = 0.5
    """ξ: threshold drop per unit of time spent doing a skill."""
    forget: float = 0.05
    """φ: threshold rise per unit of time not doing a skill."""
    abstain_penalty: float = 0.5
    """Threshold rise on the skill of a task the agent looked at and declined."""
    relook: float = 0.2
    """Base delay before an agent that declined everything looks again (doubles per decline)."""
    relook_max_doublings: int = 4
    watch_limit: int = 8
    """Skill queues an agent looks at per decision (its lowest thresholds) plus one to explore."""
    wake_fanout: int = 2
    """Waiting agents woken per newly ready task (lowest threshold first)."""
    min_bout: float = 1.0
    """Time an agent stays on a task before it may quit it."""
    quit_rate: float = 0.0
    """p: chance per unit of time (after the minimum bout) that an agent quits its task."""
    max_attempts: int = 5
    """Lost attempts (failures, quits) after which a task fails for good."""
    decompose_above: float | None = None
    """Tasks with more effort than this are split into parts of about this size (None: never)."""
    decompose_max_parts: int = 8
    decompose_max_depth: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.s_min <= self.s_max:
            raise PolicyError("swarm: need 0 <= s_min <= s_max")
        if not 0 < self.theta_min <= self.theta_max:
            raise PolicyError("swarm: need 0 < theta_min <= theta_max")
        if self.max_attempts < 1:
            raise PolicyError("swarm: max_attempts must be at least 1")
        if self.decompose_above is not None and self.decompose_above <= 0:
            raise PolicyError("swarm: decompose_above must be positive")


class SwarmAgent:
    """An agent as the swarm sees it: its thresholds and whether it sleeps in the waiting pools."""

    __slots__ = ("alive", "declines", "id", "learned_at", "skills", "theta", "wait_token", "waiting")

    def __init__(self, agent_id: str, skills: frozenset[str], now: float) -> None:
        self.id = agent_id
        self.skills = skills
        self.theta: dict[str, float] = {}
        self.learned_at = now
        self.waiting = False
        self.wait_token = 0
        self.declines = 0
        self.alive = True


class SkillQueue:
    """Ready tasks of one skill: FIFO per priority level, highest priority first. Tasks become
    ready in time order, so each FIFO is also oldest-first, i.e. highest stimulus first."""

    __slots__ = ("levels", "priorities")

    def __init__(self) -> None:
        self.levels: dict[int, deque[BoardTask]] = {}
        self.priorities: list[int] = []
        """Priority levels present, highest first."""

    def push(self, task: BoardTask) -> None:
        level = self.levels.get(task.priority)
        if level is None:
            level = self.levels[task.priority] = deque()
            self.priorities.append(task.priority)
            self.priorities.sort(reverse=True)
        level.append(task)

    def head(self) -> BoardTask | None:
        """The first task still ready, dropping stale entries (claimed or ended elsewhere)."""
        for priority in self.priorities:
            level = self.levels[priority]
            while level:
                task = level[0]
                if task.holder is None and task.waiting == 0 and task.state is OPEN:
                    return task
                level.popleft()
        return None


class SwarmPolicy(BasePolicy):
    """Response thresholds on a stigmergic board.

    Run loop (one idle agent's decision, `choose`):
    1. Forget: thresholds of skills not done rise by φ per unit of time since the last update.
    2. Look at the head of the ready queue of each watched skill (its lowest thresholds, plus one
       other at random to explore): an index lookup, never a scan of the board.
    3. For each candidate, lowest own threshold first, take it up with probability s²/(s²+θ²),
       where s is the task's stimulus now and θ the agent's mean threshold over its skills.
       A large task (effort above `decompose_above`) is decomposed instead of done whole.
    4. Declined everything: abstain (raise θ for the best candidate's skills) and look again a
       little later (`Idle(retry_at)`). Nothing ready at all: sleep in the waiting pools of the
       watched skills until a task of one of them becomes ready.

    Stimulus is lazy: s(t) = s∞ + (s_a − s∞)·e^(−ρ(t−t_a)) with s∞ = δ·w/ρ, clipped to
    [s_min, s_max], anchored (s_a, t_a) when the task becomes ready (s0·w, plus a boost when
    dependencies just completed or it reopened). So there is no per-tick work over all tasks and
    `tick` does not exist: every method takes `now`.

    Learning on finish: the skills done lose ξ per unit of time worked, the others gain φ; all
    clipped to [θmin, θmax].
    """

    mode = Mode.SWARM
    joins_in_place = True

    def __init__(self, params: SwarmParams | None = None, *, seed: int = 0) -> None:
        self.params = params or SwarmParams()
        super().__init__(max_attempts=self.params.max_attempts)
        self._init_rng = random.Random(seed)
        self.agents: dict[str, SwarmAgent] = {}
        self.queues: dict[str, SkillQueue] = {}
        self.skill_keys: list[str] = []
        """Every skill queue key ever seen, in order of first appearance."""
        self._pools: dict[str, list[tuple[float, int, int, SwarmAgent]]] = {}
        self._global_waiting: deque[tuple[int, SwarmAgent]] = deque()
        self._pool_entries = 0
        self._waiting_count = 0
        self._push_seq = 0
        self.decisions = 0

    # -- agents ----------------------------------------------------------------------------
    def add_agent(self, agent: AgentLike, now: float) -> None:
        super().add_agent(agent, now)
        state = SwarmAgent(agent.id, frozenset(agent.skills), now)
        for key in self.skill_keys:
            state.theta[key] = self._initial_theta(state, key)
        self.agents[agent.id] = state

    def _initial_theta(self, agent: SwarmAgent, key: str) -> float:
        p = self.params
        skilled = key == ANY_SKILL or not agent.skills or key in agent.skills
        base = p.theta_skilled if skilled else p.theta_unskilled
        noisy = base * (1.0 + p.theta_noise * (2.0 * self._init_rng.random() - 1.0))
        return min(p.theta_max, max(p.theta_min, noisy))

    def _add_skill(self, key: str) -> SkillQueue:
        queue = self.queues[key] = SkillQueue()
        self.skill_keys.append(key)
        for agent in self.agents.values():
            agent.theta[key] = self._initial_theta(agent, key)
        return queue

    abstain_counts = False
    """Declining is how the swarm sorts work (it raises the decliner's threshold instead)."""

    def thresholds(self, agent_id: str) -> dict[str, float]:
        """The agent's current thresholds per skill (a copy; empty for an unknown agent)."""
        agent = self.agents.get(agent_id)
        return dict(agent.theta) if agent is not None else {}

    def restore_thresholds(self, agent_id: str, thresholds: dict[str, float]) -> None:
        agent = self.agents.get(agent_id)
        if agent is None:
            return
        for skill, value in thresholds.items():
            if skill in agent.theta:
                agent.theta[skill] = value

    def alike(self, task_id: str, most: int) -> list[str]:
        """The first ready tasks of the chosen task's queue with the same skills and priority
        (the same threshold and nearly the same stimulus: they became ready in that order),
        looking at most 4×`most` deep."""
        chosen = self.board.tasks[task_id]
        queue = self.queues.get(chosen.skills[0] if chosen.skills else ANY_SKILL)
        level = queue.levels.get(chosen.priority) if queue is not None else None
        if not level:
            return [task_id]
        picks: list[str] = []
        for looked, task in enumerate(level):
            if looked >= 4 * most or len(picks) >= most:
                break
            if task.ready and task.skills == chosen.skills:
                picks.append(task.id)
        return picks or [task_id]

    # -- stimulus --------------------------------------------------------------------------
    def stimulus(self, task: BoardTask, now: float) -> float:
        p = self.params
        weight = task.priority if task.priority > 1 else 1
        drive = p.growth * weight
        elapsed = now - task.stimulus_at
        if p.evaporation > 0:
            steady = drive / p.evaporation
            value = steady + (task.stimulus_base - steady) * math.exp(-p.evaporation * elapsed)
        else:
            value = task.stimulus_base + drive * elapsed
        if value > p.s_max:
            return p.s_max
        return value if value > p.s_min else p.s_min

    def _anchor(self, task: BoardTask, at: float, *, boosted: bool) -> None:
        """Anchor the task's stimulus at the moment it became ready: s0·w, plus the boost."""
        p = self.params
        weight = task.priority if task.priority > 1 else 1
        task.stimulus_base = min(p.s_max, p.s0 * weight + (p.boost if boosted else 0.0))
        task.stimulus_at = at

    @property
    def take_reason(self) -> str:
        return "the swarm's response-threshold draw took it up"

    def became_ready(self, task_id: str, at: float, *, boosted: bool) -> None:
        self._anchor(self.board.tasks[task_id], at, boosted=boosted)

    def _on_ready(self, task: BoardTask, now: float) -> None:
        # Boosted when dependencies just completed, or it reopened after a lost attempt.
        self._anchor(task, now, boosted=now > task.posted_at)
        keys = task.skills or (ANY_SKILL,)
        for key in keys:
            queue = self.queues.get(key)
            if queue is None:
                queue = self._add_skill(key)
            queue.push(task)
        self._wake_for(keys)

    # -- waiting pools ---------------------------------------------------------------------
    def _wait(self, agent: SwarmAgent, watched: Sequence[str]) -> None:
        agent.waiting = True
        agent.wait_token += 1
        self._waiting_count += 1
        token = agent.wait_token
        for key in watched:
            self._push_seq += 1
            heapq.heappush(
                self._pools.setdefault(key, []), (agent.theta[key], self._push_seq, token, agent)
            )
        self._pool_entries += len(watched)
        self._global_waiting.append((token, agent))
        if self._pool_entries > 8 * (self._waiting_count + 64):
            self._compact_pools()

    def _compact_pools(self) -> None:
        for key, pool in self._pools.items():
            self._pools[key] = [e for e in pool if e[3].waiting and e[3].wait_token == e[2]]
            heapq.heapify(self._pools[key])
        self._pool_entries = sum(len(pool) for pool in self._pools.values())
        self._global_waiting = deque(
            e for e in self._global_waiting if e[1].waiting and e[1].wait_token == e[0]
        )

    def _wake(self, agent: SwarmAgent) -> None:
        agent.waiting = False
        self._waiting_count -= 1
        self._wakes.append(agent.id)

    def _wake_for(self, keys: Sequence[str]) -> None:
        if not self._waiting_count:
            return
        woken = 0
        fanout = self.params.wake_fanout
        for key in keys:
            pool = self._pools.get(key)
            while pool and woken < fanout:
                _, _, token, agent = heapq.heappop(pool)
                self._pool_entries -= 1
                if agent.waiting and agent.wait_token == token and agent.alive:
                    self._wake(agent)
                    woken += 1
        # Nobody watching this skill is idle: wake someone else, whose threshold decides.
        if woken:
            return
        waiting = self._global_waiting
        while woken < fanout and waiting:
            token, agent = waiting.popleft()
            if agent.waiting and agent.wait_token == token and agent.alive:
                self._wake(agent)
                woken += 1

    # -- deciding --------------------------------------------------------------------------
    def _learn(self, agent: SwarmAgent, now: float, done: Iterable[str]) -> None:
        elapsed = now - agent.learned_at
        if elapsed <= 0:
            return
        agent.learned_at = now
        p = self.params
        done_set = set(done)
        theta = agent.theta
        rise = p.forget * elapsed
        drop = p.learn * elapsed
        lo, hi = p.theta_min, p.theta_max
        for key, value in theta.items():
            value = value - drop if key in done_set else value + rise
            theta[key] = lo if value < lo else hi if value > hi else value

    def _watched(self, agent: SwarmAgent, rng: RandomLike) -> list[str]:
        keys = self.skill_keys
        limit = self.params.watch_limit
        theta = agent.theta
        if len(keys) <= 1:
            return keys
        if len(keys) <= limit:
            return sorted(keys, key=theta.__getitem__)
        watched = heapq.nsmallest(limit, keys, key=theta.__getitem__)
        extra = keys[rng.randrange(len(keys))]
        if extra not in watched:
            watched.append(extra)
        return watched

    def theta_for(self, agent: SwarmAgent, task: BoardTask) -> float:
        skills = task.skills
        theta = agent.theta
        if not skills:
            return theta[ANY_SKILL]
        if len(skills) == 1:
            return theta[skills[0]]
        return sum(theta[k] for k in skills) / len(skills)

    def choose(self, agent_id: str, now: float, rng: RandomLike) -> Decision:
        self.decisions += 1
        agent = self.agents.get(agent_id)
        if agent is None or not agent.alive:
            raise PolicyError(f"agent {agent_id!r} is not an active member of this swarm")
        if agent.waiting:  # woken by its own timer while in the pools
            agent.waiting = False
            self._waiting_count -= 1
        self._learn(agent, now, ())
        watched = self._watched(agent, rng)
        # Own preference first (lowest threshold), each candidate drawn as it comes: most
        # decisions stop at the first queue. The stimulus closed form is inlined (hot path).
        p = self.params
        rho = p.evaporation
        s_min, s_max = p.s_min, p.s_max
        theta = agent.theta
        queues = self.queues
        declined: list[BoardTask] = []
        for key in watched:
            queue = queues.get(key)
            if queue is None:
                continue
            task = queue.head()
            if task is None:
                continue
            drive = p.growth * (task.priority if task.priority > 1 else 1)
            if rho > 0:
                steady = drive / rho
                s = steady + (task.stimulus_base - steady) * math.exp(rho * (task.stimulus_at - now))
            else:
                s = task.stimulus_base + drive * (now - task.stimulus_at)
            s = s_max if s > s_max else s_min if s < s_min else s
            skills = task.skills
            th = theta[skills[0]] if len(skills) == 1 else self.theta_for(agent, task)
            s2 = s * s
            if rng.random() * (s2 + th * th) < s2:
                agent.declines = 0
                return self._take(task)
            declined.append(task)
        if not declined:
            self._wait(agent, watched)
            return Idle(None)
        self._abstain(agent, declined)
        doublings = min(agent.declines, p.relook_max_doublings)
        delay = p.relook * (1 << doublings) * (0.5 + rng.random())
        return Idle(now + delay)

    def best_ready(self, agent_id: str) -> str | None:
        """The head of every skill queue, lowest own threshold first, then highest stimulus
        (priority, then the oldest): a look at the whole board's demand, not only the watched
        skills. Not part of `choose`; the live engine never calls it."""
        agent = self.agents.get(agent_id)
        if agent is None or not agent.alive:
            return None
        best: tuple[float, int, int] | None = None
        chosen: BoardTask | None = None
        for key in self.skill_keys:
            task = self.queues[key].head()
            if task is None:
                continue
            rank = (self.theta_for(agent, task), -task.priority, task.seq)
            if best is None or rank < best:
                best, chosen = rank, task
        return None if chosen is None else chosen.id

    def _take(self, task: BoardTask) -> Decision:
        p = self.params
        if (
            p.decompose_above is not None
            and task.effort > p.decompose_above
            and task.depth < p.decompose_max_depth
        ):
            parts = min(p.decompose_max_parts, math.ceil(task.effort / p.decompose_above))
            if parts > 1:
                return Decompose(task.id, parts)
        return Take(task.id)

    def _abstain(self, agent: SwarmAgent, tasks: Sequence[BoardTask]) -> None:
        """Declining raises the agent's threshold for what it declined."""
        agent.declines += 1
        p = self.params
        for key in {k for task in tasks for k in task.skills or (ANY_SKILL,)}:
            agent.theta[key] = min(p.theta_max, agent.theta[key] + p.abstain_penalty)

    def on_abstain(self, agent_id: str, task_id: str) -> None:
        """An agent looked at a task and would not do it (e.g. its LLM said so in live runs)."""
        self._abstain(self.agents[agent_id], [self.board.get(task_id)])

    # -- outcomes --------------------------------------------------------------------------
    def on_task_finished(self, task_id: str, agent_id: str, success: bool, now: float) -> None:
        task = self.board.get(task_id)
        agent = self.agents[agent_id]
        self._learn(agent, now, (task.skills or (ANY_SKILL,)) if success else ())
        super().on_task_finished(task_id, agent_id, success, now)

    def on_released(self, task_id: str, agent_id: str, now: float, *, counts: bool) -> None:
        agent = self.agents.get(agent_id)
        if agent is not None and agent.alive:
            self._learn(agent, now, ())
        super().on_released(task_id, agent_id, now, counts=counts)

    def _on_lost(self, agent_id: str, now: float) -> None:
        agent = self.agents[agent_id]
        agent.alive = False
        if agent.waiting:
            agent.waiting = False
            self._waiting_count -= 1

    def quit_after(self, task: BoardTask, rng: RandomLike) -> float | None:
        """When (time after the claim) the holder will quit, if it does: never before the
        minimum bout, then at rate p (Bonabeau's spontaneous quitting)."""
        p = self.params
        if p.quit_rate <= 0:
            return None
        return p.min_bout + rng.expovariate(p.quit_rate)
