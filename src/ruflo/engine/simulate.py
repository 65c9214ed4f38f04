"""The simulator: a policy over a virtual clock with simulated work, failures, tokens and agent
deaths. Event-driven (a heap of timed events, no fixed steps). Depends on ruflo.policies and the
model only; no I/O.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ruflo.engine.clock import VirtualClock
from ruflo.engine.conflicts import ConflictRule, Conflicts, Integration
from ruflo.engine.dispatch import carry_out
from ruflo.errors import PolicyError
from ruflo.model import Agent, Mode
from ruflo.policies import (
    AwaitApproval,
    BasePolicy,
    CompanyParams,
    Decision,
    Decompose,
    Delegate,
    Escalate,
    Idle,
    OrgChart,
    SwarmParams,
    SwarmPolicy,
    Take,
    TaskLike,
    TaskSpec,
    make_policy,
)
from ruflo.policies.board import BoardTask, lower_bound

# Event kinds, ordered so that at equal times a finish is handled before a wake.
_DONE, _QUIT, _DELEGATED, _DECOMPOSED, _KILL, _EXPIRE, _POST, _WAKE = range(8)

COORDINATION = "(coordination)"
"""Timeline name of a manager's delegation work, which belongs to no task."""

@dataclass(frozen=True, slots=True)
class SimParams:
    """How simulated work behaves and what coordination costs. Time is in effort units."""

    mismatch_factor: float = 1.5
    """Duration multiplier for an agent lacking all of a task's skills (pro rata for some)."""
    noise: float = 0.1
    """σ of the log-normal noise on durations (mean 1)."""
    failure_rate: float = 0.02
    """Chance that an attempt fails (the task reopens; it fails for good after max attempts)."""
    tokens_per_effort: int = 2000
    """Work tokens per effort unit."""
    lease_ttl: float = 2.0
    """A claim's lease; renewed every ttl/3 while its holder lives."""
    delegation_tokens: int = 1200
    """Coordination tokens of one delegation decision (a manager's planning call)..."""
    delegation_tokens_per_ticket: int = 150
    """...plus this per ticket handed down."""
    delegation_time: float = 0.05
    delegation_time_per_ticket: float = 0.01
    decompose_tokens: int = 2000
    decompose_time: float = 0.2
    integrate_fraction: float = 0.1
    """Share of a decomposed task's effort left for integrating its parts."""

    def __post_init__(self) -> None:
        if not 0 <= self.failure_rate < 1:
            raise PolicyError("simulation: failure_rate must be in [0, 1)")
        if self.lease_ttl <= 0 or self.mismatch_factor < 1 or self.noise < 0:
            raise PolicyError("simulation: need lease_ttl > 0, mismatch_factor >= 1, noise >= 0")


@dataclass(frozen=True, slots=True)
class KillPlan:
    """Kill a fraction of the live agents (chosen by the seeded rng), or the named agents, at a
    virtual time."""

    fraction: float
    at: float
    agents: tuple[str, ...] = ()
    """Kill exactly these agents instead of a random fraction."""

    def __post_init__(self) -> None:
        if not self.agents and not 0 < self.fraction < 1:
            raise PolicyError(f"kill fraction must be between 0 and 1 (got {self.fraction})")
        if self.at < 0:
            raise PolicyError(f"kill time must be >= 0 (got {self.at})")


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One stretch of an agent's time: working a task, delegating or decomposing."""

    agent: str
    task: str
    start: float
    end: float
    """When the agent stopped (finished, failed, quit, died)."""
    released: float
    """When its claim on the task ended (later than `end` when it died: the lease ran out)."""
    outcome: str
    """done | failed | quit | died | delegated | decomposed"""


@dataclass(slots=True)
class SimResult:
    """What a simulated run measured."""

    mode: str
    seed: int
    agents: int
    tasks: int
    done: int
    failed: int
    cancelled: int
    makespan: float
    critical_path: float
    total_work: float
    lower_bound: float
    """LB = max(critical path, total work / agents): no schedule finishes sooner."""
    ratio: float
    """makespan / LB."""
    utilisation: float
    """Agent time spent working or coordinating, over agents × makespan."""
    task_switches: int
    released_claims: int
    failed_attempts: int
    unclaimed_age_mean: float
    unclaimed_age_max: float
    duplicate_work: float
    """Effort units spent on attempts that did not finish their task."""
    work_tokens: int
    coordination_tokens: int
    decisions: int
    delegations: int
    escalations: int
    decompositions: int
    killed: int
    orphaned: int
    """Tasks held by agents when they were killed."""
    recovered: int
    """Of those, the ones later done by others."""
    stalled: bool
    """True when the run stopped with work left and nobody able to do it."""
    wall_seconds: float
    cpu_seconds: float
    """Processor time of the run (what it costs, whatever else the machine is doing)."""
    timeline: list[TimelineEntry] | None = None
    done_by: dict[str, dict[str, int]] | None = None
    """Agent → skill → tasks of that skill it finished (kept for up to `detail_limit` agents)."""
    thresholds: dict[str, dict[str, float]] | None = None
    """Swarm only: each agent's final threshold per skill."""
    merge_conflicts: int = 0
    """Conflicts the conflict rule drew (engine/conflicts.py), each one integration task."""
    integrations: list[Integration] | None = None
    """Each conflict and its integration task (kept with the timeline)."""

    @property
    def decisions_per_second(self) -> float:
        """Decisions per second of wall time, the whole simulation included."""
        return self.decisions / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def decisions_per_cpu_second(self) -> float:
        return self.decisions / self.cpu_seconds if self.cpu_seconds > 0 else 0.0

    @property
    def all_done(self) -> bool:
        return self.done == self.tasks

    def to_dict(self, *, with_timeline: bool = False) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["decisions_per_second"] = self.decisions_per_second
        data["decisions_per_cpu_second"] = self.decisions_per_cpu_second
        data["timeline"] = (
            [dataclasses.asdict(e) for e in self.timeline]
            if with_timeline and self.timeline is not None
            else None
        )
        return data


class _SimAgent:
    __slots__ = (
        "alive",
        "busy",
        "busy_time",
        "claim_start",
        "done_by_skill",
        "id",
        "skills",
        "started",
        "success",
        "task",
        "token",
        "unfinished",
        "wake_token",
        "work_time",
    )

    def __init__(self, agent_id: str, skills: frozenset[str]) -> None:
        self.id = agent_id
        self.skills = skills
        self.alive = True
        self.busy = False
        self.token = 0
        """Bumped whenever the agent's activity ends, so stale finish events are ignored."""
        self.wake_token = 0
        self.task: BoardTask | None = None
        self.started = 0.0
        self.claim_start = 0.0
        self.success = True
        self.busy_time = 0.0
        self.work_time = 0.0
        self.unfinished: str | None = None
        self.done_by_skill: dict[str, int] | None = None


def company_agents(agents: Sequence[Agent], span: int = 8) -> list[Agent]:
    """Agents as an org: kept as they are when any has `reports_to`, else a generated org."""
    if any(a.reports_to for a in agents):
        return list(agents)
    managers = dict(OrgChart.generated(agents, span))
    roles = {a: ("root" if m is None else "manager") for a, m in managers.items()}
    for boss in set(managers.values()):
        if boss is not None and roles.get(boss) != "root":
            roles[boss] = "manager"
    result = []
    for agent in agents:
        has_reports = any(m == agent.id for m in managers.values())
        role = roles[agent.id] if has_reports or managers[agent.id] is None else "engineer"
        result.append(dataclasses.replace(agent, reports_to=managers[agent.id], role=role))
    return result


def simulate(
    tasks: Sequence[TaskLike],
    agents: Sequence[Agent],
    mode: Mode | str = Mode.SWARM,
    *,
    seed: int = 0,
    params: SimParams | None = None,
    swarm: SwarmParams | None = None,
    company: CompanyParams | None = None,
    kill: KillPlan | None = None,
    record: bool | None = None,
    arrivals: Mapping[str, float] | None = None,
    detail_limit: int = 2000,
    on_progress: Callable[[int, int], None] | None = None,
    on_decision: Callable[[str, Decision], None] | None = None,
    conflicts: ConflictRule | None = None,
) -> SimResult:
    """Run `tasks` with `agents` under `mode` on a virtual clock; the same seed gives the same run.

    `arrivals` posts some tasks later (task id → virtual time; a task may not arrive before its
    dependencies); the others are on the board at time 0. `record` keeps the timeline of who worked on what (default: only for boards of at most
    20,000 tasks, so memory stays bounded at scale). `on_progress(finished, total)` is called
    now and then; `on_decision(agent id, decision)` for every decision the policy makes;
    `conflicts`: the merge-conflict rule (engine/conflicts.py; None: no conflicts)."""
    try:
        mode = Mode(mode)
    except ValueError:
        choices = ", ".join(m.value for m in Mode)
        raise PolicyError(f"unknown mode {mode!r}; choose one of {choices}") from None
    params = params or SimParams()
    if not agents:
        raise PolicyError("a simulation needs at least one agent")
    if mode is Mode.COMPANY:
        agents = company_agents(agents)
    critical, total, bound = lower_bound(tasks, len(agents))
    batches: dict[float, list[TaskLike]] = {}
    if arrivals:
        for task in tasks:
            when = arrivals.get(task.id, 0.0)
            if when < 0:
                raise PolicyError(f"task {task.id!r} arrives at a negative time {when}")
            for dep in task.depends_on:
                if arrivals.get(dep, 0.0) > when:
                    raise PolicyError(f"task {task.id!r} arrives before its dependency {dep!r}")
            batches.setdefault(when, []).append(task)
            # No schedule can finish a task before it arrives.
            bound = max(bound, when + task.effort)
    else:
        batches[0.0] = list(tasks)
    if record is None:
        record = len(tasks) <= 20_000
    rng = random.Random(seed)
    clock = VirtualClock()
    policy: BasePolicy = make_policy(mode, agents, seed=seed, swarm=swarm, company=company)
    run = _Run(policy, agents, params, rng, seed, clock, record, len(agents) <= detail_limit)
    run.on_decision = on_decision
    run.conflicts = Conflicts(conflicts, seed, record) if conflicts and conflicts.files else None
    started = time.perf_counter()
    cpu_started = time.process_time()
    for agent in agents:
        policy.add_agent(agent, 0.0)
    policy.post(batches.pop(0.0, []), 0.0)
    for when, batch in sorted(batches.items()):
        run.push(when, _POST, None, 0, batch)
        run.pending_posts += 1
    run.total = len(tasks)
    run.start(kill, on_progress)
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    return run.result(mode, seed, len(tasks), critical, total, bound, wall, cpu)


class _Run:
    """One simulation's mutable state and its event loop."""

    def __init__(
        self,
        policy: BasePolicy,
        agents: Sequence[Agent],
        params: SimParams,
        rng: random.Random,
        seed: int,
        clock: VirtualClock,
        record: bool,
        detail: bool,
    ) -> None:
        self.policy = policy
        self.on_decision: Callable[[str, Decision], None] | None = None
        self.conflicts: Conflicts | None = None
        self.board = policy.board
        self.params = params
        self.rng = rng
        """The policy's randomness (its choices): the stream a live engine with the same seed
        gives its policy, so both make the same choices."""
        self.work_rng = random.Random(f"work-{seed}")
        """The simulated world's randomness: work times, failures, quits, who is killed."""
        self.clock = clock
        self.agents = {a.id: _SimAgent(a.id, frozenset(a.skills)) for a in agents}
        self.order = [self.agents[a.id] for a in agents]
        if detail:
            for agent in self.order:
                agent.done_by_skill = {}
        self.detail = detail
        self.heap: list[tuple[float, int, int, int, _SimAgent | None, Any]] = []
        self.seq = 0
        self.timeline: list[TimelineEntry] | None = [] if record else None
        self.decisions = 0
        self.task_switches = 0
        self.released = 0
        self.failed_attempts = 0
        self.age_sum = 0.0
        self.age_max = 0.0
        self.claims = 0
        self.duplicate = 0.0
        self.work_tokens = 0.0
        self.coordination_tokens = 0
        self.decompositions = 0
        self.killed: list[_SimAgent] = []
        self.held_by_killed: list[BoardTask] = []
        self.stalled = False
        self.makespan = 0.0
        self.total = 0
        self.pending_posts = 0
        self._noise_mu = -0.5 * params.noise * params.noise

    # -- scheduling ------------------------------------------------------------------------
    def push(self, when: float, kind: int, agent: _SimAgent | None, token: int, payload: Any) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (when, kind, self.seq, token, agent, payload))

    def wake(self, agent: _SimAgent, when: float) -> None:
        agent.wake_token += 1
        self.push(when, _WAKE, agent, agent.wake_token, None)

    def flush_wakes(self, now: float) -> None:
        for agent_id in self.policy.drain_wakes():
            agent = self.agents[agent_id]
            if agent.alive and not agent.busy:
                self.wake(agent, now)

    # -- the loop --------------------------------------------------------------------------
    def start(self, kill: KillPlan | None, on_progress: Callable[[int, int], None] | None) -> None:
        self.policy.drain_wakes()
        for member in self.order:
            self.wake(member, 0.0)
        if kill is not None:
            unknown = [a for a in kill.agents if a not in self.agents]
            if unknown:
                raise PolicyError(f"cannot kill unknown agents: {', '.join(unknown)}")
            self.push(kill.at, _KILL, None, 0, kill)
        board = self.board
        heap = self.heap
        heappop = heapq.heappop
        clock = self.clock
        events = 0
        idle_sweeps = 0
        total = self.total
        while not board.finished or self.pending_posts:
            if not heap:
                # Nothing scheduled yet work is left: wake every idle live agent once; if that
                # changes nothing, nobody can do the rest.
                live = [a for a in self.order if a.alive and not a.busy]
                if not live or idle_sweeps >= 2:
                    self.stalled = True
                    board.cancel_unfinished(clock.now())
                    break
                idle_sweeps += 1
                for sleeper in live:
                    self.wake(sleeper, clock.now())
                continue
            when, kind, _, token, agent, payload = heappop(heap)
            clock.advance_to(when)
            events += 1
            if on_progress is not None and events % 4096 == 0:
                on_progress(board.terminal, total)
            if kind == _WAKE:
                assert agent is not None
                if agent.alive and not agent.busy and token == agent.wake_token:
                    self.decide(agent, when)
                continue
            idle_sweeps = 0
            if kind == _DONE:
                assert agent is not None
                if agent.alive and token == agent.token:
                    self.finish_work(agent, when)
            elif kind == _QUIT:
                assert agent is not None
                if agent.alive and token == agent.token:
                    self.quit_work(agent, when)
            elif kind == _DELEGATED:
                assert agent is not None
                if agent.alive and token == agent.token:
                    self.end_activity(agent, when, payload[0], "delegated")
                    self.policy.on_delegated(agent.id, payload[1], when)
                    self.decide(agent, when)
            elif kind == _DECOMPOSED:
                assert agent is not None
                if agent.alive and token == agent.token:
                    self.finish_decompose(agent, when, payload)
            elif kind == _POST:
                self.pending_posts -= 1
                self.policy.post(payload, when)
            elif kind == _KILL:
                self.kill(payload, when)
            elif kind == _EXPIRE:
                assert agent is not None
                self.expire(agent, payload, when)
            self.flush_wakes(when)
        if on_progress is not None:
            on_progress(board.terminal, total)
        self.makespan = max(
            (t.finished_at for t in board.tasks.values() if t.finished_at is not None),
            default=0.0,
        )

    def decide(self, agent: _SimAgent, now: float) -> None:
        agent.wake_token += 1  # a decision supersedes any pending look-again timer
        self.decisions += 1
        decision = self.policy.choose(agent.id, now, self.rng)
        if self.on_decision is not None:
            self.on_decision(agent.id, decision)
        carry_out(self, (agent, now), decision)
        self.flush_wakes(now)

    # -- carrying out a decision (`carry_out` calls these) ----------------------------------
    def take(self, context: tuple[_SimAgent, float], decision: Take) -> None:
        self.start_work(context[0], decision.task_id, context[1])

    def idle(self, context: tuple[_SimAgent, float], decision: Idle) -> None:
        agent, now = context
        if decision.retry_at is not None:
            self.wake(agent, max(now, decision.retry_at))

    def delegate(self, context: tuple[_SimAgent, float], decision: Delegate) -> None:
        """The planner's timed stand-in: it accepts the policy's proposal, at a cost per
        delegation and per ticket (tokens and the manager's time)."""
        agent, now = context
        p = self.params
        n = len(decision.assignments)
        self.coordination_tokens += p.delegation_tokens + p.delegation_tokens_per_ticket * n
        duration = p.delegation_time + p.delegation_time_per_ticket * n
        label = decision.assignments[0][0] if n == 1 else f"{n} tickets"
        self.begin_activity(agent, now, None)
        self.push(now + duration, _DELEGATED, agent, agent.token, (label, decision.assignments))

    def decompose(self, context: tuple[_SimAgent, float], decision: Decompose) -> None:
        agent, now = context
        task = self.policy.claim(decision.task_id, agent.id, now)
        self.note_claim(agent, task, now)
        self.coordination_tokens += self.params.decompose_tokens
        self.begin_activity(agent, now, task)
        self.push(now + self.params.decompose_time, _DECOMPOSED, agent, agent.token,
                  decision.parts)

    def escalate(self, context: tuple[_SimAgent, float], decision: Escalate) -> None:
        raise PolicyError("the simulated policies escalate a failed ticket themselves "
                          "(on_task_finished); choose() never answers Escalate")

    def await_approval(self, context: tuple[_SimAgent, float], decision: AwaitApproval) -> None:
        raise PolicyError("the simulator has no people to approve: choose() never answers "
                          "AwaitApproval")

    def note_claim(self, agent: _SimAgent, task: BoardTask, now: float) -> None:
        age = now - (task.ready_at if task.ready_at is not None else now)
        self.age_sum += age
        self.claims += 1
        if age > self.age_max:
            self.age_max = age
        if agent.unfinished is not None and agent.unfinished != task.id:
            self.task_switches += 1
        agent.unfinished = None

    def begin_activity(self, agent: _SimAgent, now: float, task: BoardTask | None) -> None:
        agent.busy = True
        agent.token += 1
        agent.started = now
        agent.claim_start = now
        agent.task = task

    def end_activity(self, agent: _SimAgent, now: float, label: str, outcome: str,
                     released: float | None = None) -> float:
        spent = now - agent.started
        agent.busy_time += spent
        agent.busy = False
        agent.token += 1
        agent.task = None
        if self.timeline is not None:
            self.timeline.append(TimelineEntry(agent.id, label, agent.started, now,
                                               now if released is None else released, outcome))
        return spent

    def start_work(self, agent: _SimAgent, task_id: str, now: float) -> None:
        task = self.policy.claim(task_id, agent.id, now)
        self.note_claim(agent, task, now)
        p = self.params
        duration = task.effort
        skills = task.skills
        if skills and agent.skills:
            missing = sum(1 for s in skills if s not in agent.skills)
            if missing:
                duration *= 1.0 + (p.mismatch_factor - 1.0) * missing / len(skills)
        if p.noise > 0:
            duration *= math.exp(self.work_rng.gauss(self._noise_mu, p.noise))
        agent.success = self.work_rng.random() >= p.failure_rate
        self.begin_activity(agent, now, task)
        quit_at = self.policy.quit_after(task, self.work_rng)
        if quit_at is not None and quit_at < duration:
            self.push(now + quit_at, _QUIT, agent, agent.token, None)
        else:
            self.push(now + duration, _DONE, agent, agent.token, None)

    def finish_work(self, agent: _SimAgent, now: float) -> None:
        task = agent.task
        assert task is not None
        success = agent.success
        spent = self.end_activity(agent, now, task.id, "done" if success else "failed")
        agent.work_time += spent
        self.work_tokens += spent * self.params.tokens_per_effort
        if success:
            if agent.done_by_skill is not None:
                for skill in task.skills or ("*",):
                    agent.done_by_skill[skill] = agent.done_by_skill.get(skill, 0) + 1
        else:
            self.failed_attempts += 1
            self.duplicate += spent
            agent.unfinished = task.id
        self.policy.on_task_finished(task.id, agent.id, success, now)
        if success and self.conflicts is not None:
            self.conflicts.on_merged(self.policy, task, agent.id, now - spent, now)
        self.flush_wakes(now)
        self.decide(agent, now)

    def quit_work(self, agent: _SimAgent, now: float) -> None:
        task = agent.task
        assert task is not None
        spent = self.end_activity(agent, now, task.id, "quit")
        agent.work_time += spent
        self.work_tokens += spent * self.params.tokens_per_effort
        self.duplicate += spent
        self.released += 1
        agent.unfinished = task.id
        self.policy.on_released(task.id, agent.id, now, counts=True)
        self.flush_wakes(now)
        self.decide(agent, now)

    def finish_decompose(self, agent: _SimAgent, now: float, parts: int) -> None:
        task = agent.task
        assert task is not None
        self.end_activity(agent, now, task.id, "decomposed")
        size = task.effort / parts
        children = [
            TaskSpec(f"{task.id}.{i + 1}", task.skills, task.priority, size, ())
            for i in range(parts)
        ]
        self.decompositions += 1
        self.policy.decompose(task.id, agent.id, children, now,
                              task.effort * self.params.integrate_fraction)
        self.flush_wakes(now)
        self.decide(agent, now)

    # -- deaths ----------------------------------------------------------------------------
    def kill(self, plan: KillPlan, now: float) -> None:
        live = [a for a in self.order if a.alive]
        if plan.agents:
            victims = [self.agents[a] for a in plan.agents if self.agents[a].alive]
        else:
            count = min(len(live) - 1, round(plan.fraction * len(live)))
            victims = self.work_rng.sample(live, count) if count > 0 else []
        ttl = self.params.lease_ttl
        renew = ttl / 3
        for agent in victims:
            agent.alive = False
            self.killed.append(agent)
            task = agent.task
            if agent.busy:
                if task is not None and task.holder == agent.id:
                    renewed = agent.claim_start + math.floor((now - agent.claim_start) / renew) * renew
                    expiry = renewed + ttl
                    spent = self.end_activity(agent, now, task.id, "died", released=expiry)
                    agent.work_time += spent
                    self.duplicate += spent
                    self.held_by_killed.append(task)
                    self.push(expiry, _EXPIRE, agent, 0, task)
                    continue
                self.end_activity(agent, now, COORDINATION, "died")
            agent.token += 1
            self.push(now + ttl, _EXPIRE, agent, 0, None)

    def expire(self, agent: _SimAgent, task: BoardTask | None, now: float) -> None:
        """The dead agent's lease ran out: its claim reopens and the policy forgets it."""
        if task is not None and task.holder == agent.id:
            self.released += 1
            self.policy.on_released(task.id, agent.id, now, counts=False)
        self.policy.on_agent_lost(agent.id, now)

    # -- results ---------------------------------------------------------------------------
    def result(self, mode: Mode, seed: int, n_tasks: int, critical: float, total: float,
               bound: float, wall: float, cpu: float) -> SimResult:
        board = self.board
        states = {"done": 0, "failed": 0, "cancelled": 0}
        for task in board.tasks.values():
            if task.state.terminal:
                states[task.state.value] += 1
        makespan = self.makespan
        n_agents = len(self.order)
        busy = sum(a.busy_time for a in self.order)
        thresholds = None
        if isinstance(self.policy, SwarmPolicy) and self.detail:
            thresholds = {a: self.policy.thresholds(a) for a in self.agents}
        done_by = (
            {a.id: dict(a.done_by_skill) for a in self.order if a.done_by_skill is not None}
            if self.detail
            else None
        )
        delegations = getattr(self.policy, "delegations", 0)
        escalations = getattr(self.policy, "escalations", 0)
        return SimResult(
            mode=mode.value,
            seed=seed,
            agents=n_agents,
            tasks=len(board),
            done=states["done"],
            failed=states["failed"],
            cancelled=states["cancelled"],
            makespan=makespan,
            critical_path=critical,
            total_work=total,
            lower_bound=bound,
            ratio=makespan / bound if bound > 0 else 0.0,
            utilisation=busy / (n_agents * makespan) if makespan > 0 else 0.0,
            task_switches=self.task_switches,
            released_claims=self.released,
            failed_attempts=self.failed_attempts,
            unclaimed_age_mean=self.age_sum / self.claims if self.claims else 0.0,
            unclaimed_age_max=self.age_max,
            duplicate_work=self.duplicate,
            work_tokens=round(self.work_tokens),
            coordination_tokens=self.coordination_tokens,
            decisions=self.decisions,
            delegations=delegations,
            escalations=escalations,
            decompositions=self.decompositions,
            killed=len(self.killed),
            orphaned=len(self.held_by_killed),
            recovered=sum(1 for t in self.held_by_killed if t.state.value == "done"),
            stalled=self.stalled,
            wall_seconds=wall,
            cpu_seconds=cpu,
            timeline=self.timeline,
            done_by=done_by,
            thresholds=thresholds,
            merge_conflicts=self.conflicts.count if self.conflicts is not None else 0,
            integrations=self.conflicts.log if self.conflicts is not None else None,
        )


__all__ = ["ConflictRule", "KillPlan", "SimParams", "SimResult", "TimelineEntry",
           "company_agents", "lower_bound", "simulate"]
