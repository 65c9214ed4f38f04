"""A hive's policy put back from the stored board: what the live engine loads when it starts, and
what decides a claim made from outside (REST, MCP) between calls. Depends on the core model,
ruflo.policies and the Store protocol.

An agent that works over REST or MCP comes and goes between calls, so no engine holds a policy
for it: the board (unfinished tasks, claims, when each task became ready) and the agents' stored
thresholds are enough to put the policy back in the state a live engine would hold, and the
decision's randomness is seeded from the hive's event count, so the same history decides the same.
`StoredPolicies` keeps one rebuilt policy per hive and brings it up to date from the event log,
so a claim on a board of 40,000 tasks does not read the board again; a rebuild reads only the
unfinished tasks and the finished ones they depend on, and only the columns decisions use.
"""

from __future__ import annotations

import math
import random
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from ruflo.errors import Conflict, PolicyError
from ruflo.event_kinds import EventKind
from ruflo.model import Agent, Hive, Mode, TaskOutline, TaskState, utcnow
from ruflo.policies import (
    BasePolicy,
    Decompose,
    Delegate,
    Idle,
    Take,
    TaskLike,
    TaskSpec,
    make_policy,
)

if TYPE_CHECKING:
    from ruflo.store.base import Store

__all__ = [
    "IDLE_FLOOR",
    "LONGEST_WAIT_SECONDS",
    "Choice",
    "StoredPolicies",
    "choose",
    "decision_rng",
    "hive_seed",
    "load_board",
    "policy_time",
    "rebuild",
    "restore_thresholds",
    "thresholds_of",
    "time_unit",
]

TIME_UNIT_SECONDS = 10.0
"""Wall seconds per policy time unit, as in the live engine: how fast stimulus grows."""

LONGEST_WAIT_SECONDS = 30.0
"""The longest `retry_after_seconds` an answer names. A client that waits longer than the server
keeps its idle connection open (ruflo.server.listening.KEEP_ALIVE_SECONDS) finds it closed; one
that asks again before its retry time gets the same decline with the time left, not a decision."""

IDLE_FLOOR = 3.0
"""Policy time units (30 s at the default unit) an agent claiming from outside may pass over
ready work, declining it or not seeing it among the skills it watches, before it takes the ready
task it is best suited for. Without this floor its thresholds only rise while it waits (each
decline raises them; only work done lowers them), so a declining agent could leave ready tasks
open for minutes while it polls."""


@dataclass(frozen=True, slots=True)
class Choice:
    """The policy's answer for one agent: a task to claim, or why not and when to ask again."""

    task_id: str | None
    reason: str
    retry_after_seconds: float | None = None


# -- time and seed ---------------------------------------------------------------------------------
def policy_time(hive: Hive, at: datetime) -> float:
    """Policy time of a wall instant: time units since the hive was created."""
    return (at - hive.created_at).total_seconds() / time_unit(hive)


def time_unit(hive: Hive) -> float:
    value = hive.config.get("time_unit")
    return float(value) if isinstance(value, int | float) and value > 0 else TIME_UNIT_SECONDS


def hive_seed(hive: Hive) -> int:
    value = hive.config.get("seed", 0)
    return value if isinstance(value, int) else 0


def decision_rng(hive: Hive, agent: Agent, last_seq: int) -> random.Random:
    """Same hive seed, agent and history: same draw (string seeds hash stably)."""
    return random.Random(f"{hive_seed(hive)}:{agent.name}:{last_seq}")


# -- the board -------------------------------------------------------------------------------------
class OnBoard(TaskLike, Protocol):
    """What `load_board` reads of a task: a stored Task or a TaskOutline (a policy's TaskLike,
    with where it stands on the stored board)."""

    @property
    def state(self) -> TaskState: ...
    @property
    def parent_id(self) -> str | None: ...
    @property
    def assignee(self) -> str | None: ...


def load_board(policy: BasePolicy, tasks: Iterable[OnBoard], now: float) -> list[str]:
    """Post the unfinished tasks on the policy's board and hand it the stored claims. Returns the
    tasks a failed, cancelled or unknown dependency dooms: they are on the board, still open, for
    the caller to cancel (the live engine cancels them in the store too).

    A dependency already done is met; a blocked task (split into subtasks) waits on its
    unfinished subtasks. A claim whose holder is not a member, or whose dependencies reopened
    under it, is left to its lease."""
    by_id = {task.id: task for task in tasks}
    unfinished = [t for t in by_id.values() if not t.state.terminal]
    children: dict[str, list[str]] = {}
    for task in unfinished:
        if task.parent_id is not None:
            children.setdefault(task.parent_id, []).append(task.id)
    specs = []
    doomed = []
    shared: dict[tuple[str, ...], tuple[str, ...]] = {}  # one skills tuple per distinct set
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
        skills = shared.setdefault(task.skills, task.skills)
        specs.append(TaskSpec(task.id, skills, task.priority, task.effort, tuple(deps)))
    policy.post(specs, now)
    for task in unfinished:
        if task.state is TaskState.CLAIMED and task.assignee in policy.alive:
            try:
                policy.claim(task.id, task.assignee, now)
            except Conflict:
                continue  # its dependencies reopened under it; the lease settles it
    return doomed


def restore_thresholds(policy: BasePolicy, agents: Iterable[Agent]) -> None:
    """Put the agents' stored (learned) thresholds back into the policy (a swarm's; others
    learn nothing)."""
    for agent in agents:
        policy.restore_thresholds(agent.id, dict(agent.thresholds))


def rebuild(hive: Hive, agents: Sequence[Agent], tasks: Sequence[TaskOutline],
            now: float) -> BasePolicy:
    """The hive's policy holding the unfinished board as it stands, agents' thresholds restored.
    `tasks` are the unfinished tasks and the finished ones they depend on
    (Store.policy_board); other finished tasks change nothing.

    Tasks whose dependency failed or was cancelled can never become ready: they are cancelled on
    the board, with everything that depends on them. Swarm stimulus is anchored at the moment
    each ready task became ready (with the boost for a completed dependency or a reopening), so
    waiting counts."""
    if hive.mode is Mode.COMPANY:
        raise PolicyError("company-mode hives delegate through their org chart, which outside "
                          "agents (REST, MCP) do not take part in; claim a named task, or use "
                          "a swarm, solo or round_robin hive")
    policy = make_policy(hive.mode, agents, seed=hive_seed(hive))
    for agent in agents:
        policy.add_agent(agent, now)
    ordered = sorted(tasks, key=lambda t: t.created_at)
    for task_id in load_board(policy, ordered, now):
        if not policy.board.get(task_id).state.terminal:
            policy.cancel(task_id, now)
    _anchor_ready(policy, hive, {task.id: task for task in tasks})
    restore_thresholds(policy, agents)
    policy.drain_wakes()
    return policy


def _anchor_ready(policy: BasePolicy, hive: Hive, by_id: dict[str, TaskOutline]) -> None:
    """Tell the policy when each ready task became ready: when it was created, or its last
    dependency finished (boosted), or it reopened after an attempt (boosted)."""
    born, unit = hive.created_at, time_unit(hive)  # policy_time's, read once for the board
    for board_task in policy.board.tasks.values():
        task = by_id.get(board_task.id)
        if (task is None or task.state is not TaskState.OPEN or board_task.state is not
                TaskState.OPEN or board_task.waiting or board_task.holder is not None):
            continue
        became_ready, boosted = task.created_at, False  # most of a big board: ready as posted
        if task.depends_on or task.attempts > 0:
            finished = [by_id[d].finished_at for d in task.depends_on
                        if d in by_id and by_id[d].finished_at]
            boosted = bool(finished) or task.attempts > 0
            became_ready = max([task.created_at, *(f for f in finished if f is not None)])
            if task.attempts > 0:
                became_ready = max(became_ready, task.updated_at)
        policy.became_ready(board_task.id, (became_ready - born).total_seconds() / unit,
                            boosted=boosted)


# -- deciding --------------------------------------------------------------------------------------
def choose(policy: BasePolicy, agent: Agent, now: float, rng: random.Random,
           unit: float) -> Choice:
    """Ask the policy once what `agent` should do now."""
    decision = policy.choose(agent.id, now, rng)
    policy.drain_wakes()
    if isinstance(decision, Take | Decompose):
        return Choice(decision.task_id, policy.take_reason)
    if isinstance(decision, Idle):
        if decision.retry_at is not None:
            wait = max(0.0, decision.retry_at - now) * unit
            return Choice(None, "the ready tasks' stimulus was below this agent's thresholds: "
                                "it declined them for now (its thresholds rose)", round(wait, 3))
        return Choice(None, "no ready task for this agent now (open tasks may wait on "
                            "dependencies, or be held by others)")
    if isinstance(decision, Delegate):
        raise PolicyError(f"{policy.mode.value} mode asked to delegate, which outside agents "
                          "do not do")
    raise AssertionError(decision)


def thresholds_of(policy: BasePolicy, agent_id: str) -> dict[str, float] | None:
    """The agent's thresholds after a decision or a finish, for storing (swarm only)."""
    learned = policy.thresholds(agent_id)
    return {k: round(v, 4) for k, v in learned.items()} if learned else None


def _wait(units: float, unit: float) -> float:
    """Seconds to name in an answer for a wait of `units`, at most LONGEST_WAIT_SECONDS; whole
    milliseconds rounded up, so an agent asking when told is never a moment early."""
    return min(math.ceil(max(0.0, units) * unit * 1000) / 1000, LONGEST_WAIT_SECONDS)


def _at_floor(policy: BasePolicy, agent: Agent, passing: float, unit: float) -> Choice | None:
    """After `passing` policy units of passing over ready work, at least IDLE_FLOOR: the ready
    task the agent is best suited for, with no draw. None before the floor, or with nothing
    ready for it."""
    if passing < IDLE_FLOOR:
        return None
    best = policy.best_ready(agent.id)
    if best is None:
        return None
    return Choice(best, f"it had passed over ready work for {passing * unit:.0f} s (the idle "
                        "floor), so it takes the ready task it is best suited for")


# -- one policy per hive, kept up to date ----------------------------------------------------------
_SKIPPED = frozenset({EventKind.TASK_VERIFIED})
"""Task events that leave the board as it is."""


@dataclass(frozen=True, slots=True)
class _Retry:
    """A declined agent's next decision: not before `at` (policy time); until then, `reason`."""

    at: float
    reason: str
    since: float
    """When the agent began passing over ready work (policy time): its idle floor counts from
    there."""


@dataclass
class _Held:
    policy: BasePolicy
    seq: int
    """The last event the policy has taken in."""
    retries: dict[str, _Retry] = field(default_factory=dict)
    """Agents that declined, by id: when the policy decides for them again."""
    stale: bool = False
    """The board moved in a way not yet seen: rebuild the policy (keeping `retries`)."""


class StoredPolicies:
    """The policies of the hives outside agents claim in, one per hive, each rebuilt from the
    store once and then brought up to date from the hive's event log: other agents' claims and
    newly joined swarm agents are applied; anything else that moves the board (a task posted,
    finished, released, expired) rebuilds it. At most `limit` hives are held.

    As in the live engine, an agent that declined is not decided for again before its retry
    time: a claim before then gets the same decline (the seconds left) without asking the
    policy, so polling faster does not raise its thresholds. The retry times live in this
    process's memory only: a restart, a hive dropped from the `limit`, or another server
    process on the same store lets the agent be decided for once more (one more decline at
    most, which sets a new retry time there).

    What an outside agent can rely on: while ready work the policy could hand it is open, an
    answer either gives it a task or says when to ask again (`retry_after_seconds`, at most
    LONGEST_WAIT_SECONDS); no wake-up is promised, as a live engine's waiting pools would give.
    An answer without either means nothing ready is for the agent: the next task posted (or
    finished, or released) is the time to ask. After IDLE_FLOOR of passing over ready work the
    agent takes the ready task it is best suited for (`best_ready`) instead of drawing again."""

    def __init__(self, limit: int = 64, *, catch_up_limit: int = 256,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.limit = limit
        self.catch_up_limit = catch_up_limit
        self.clock = clock
        """Wall time of a decision (tests move it instead of sleeping)."""
        self._held: OrderedDict[tuple[int, str], _Held] = OrderedDict()
        self._lock = threading.Lock()

    def refresh(self, store: Store, hive: Hive) -> None:
        """Bring the hive's policy up to date (rebuilding it if need be) before a claim's
        transaction, so the transaction itself only takes in what happened since: a first claim
        on a board of 40,000 tasks does not hold the store's write lock while it reads them.
        A plain read; the decision inside the transaction checks the event log again."""
        with self._lock:
            self._policy(store, hive, policy_time(hive, self.clock()), store.last_seq(hive.id))

    def decide(self, store: Store, hive: Hive, agent: Agent) -> Choice:
        """The hive's policy's answer for `agent` now; the agent's thresholds after the decision
        are written to its row (swarm). Before a declined agent's retry time, the same decline."""
        with self._lock:
            now = policy_time(hive, self.clock())
            key = (id(store), hive.id)
            retries = self._held[key].retries if key in self._held else {}
            retry = retries.get(agent.id)
            unit = time_unit(hive)
            if retry is not None and now < retry.at:
                return Choice(None, retry.reason, _wait(retry.at - now, unit))
            last = store.last_seq(hive.id)
            policy = self._policy(store, hive, now, last)
            if agent.id not in policy.alive:
                # Registered in this transaction, after the last event read (on Postgres its
                # event has no seq before the commit): take it in as the event log would.
                if policy.joins_in_place:
                    policy.add_agent(agent, now)
                    restore_thresholds(policy, [agent])
                else:
                    policy = self._rebuilt(store, hive, now, last)
            # An agent that asks again near its retry time is still passing over ready work.
            since = now if retry is None or now > retry.at + IDLE_FLOOR else retry.since
            chosen = _at_floor(policy, agent, now - since, unit)
            if chosen is None:
                chosen = choose(policy, agent, now, decision_rng(hive, agent, last), unit)
            retries = self._held[key].retries
            at: float | None = None
            if chosen.retry_after_seconds is not None:
                at = now + chosen.retry_after_seconds / unit
            elif chosen.task_id is None and policy.best_ready(agent.id) is not None:
                # Ready work outside the skills it watches: no wake-up will come, so it asks
                # again when its idle floor lets it take that work.
                at = since + IDLE_FLOOR
                chosen = Choice(None, "no ready task among the skills this agent watches, but "
                                      "other ready tasks wait: ask again then, when it takes "
                                      "one of them unless one of its own is ready first")
            if at is None:
                retries.pop(agent.id, None)
            else:
                retries[agent.id] = _Retry(at, chosen.reason, since)
                chosen = Choice(None, chosen.reason, _wait(at - now, unit))
            thresholds = thresholds_of(policy, agent.id)
            if thresholds is not None and thresholds != agent.thresholds:
                store.update_agent(agent.id, thresholds=thresholds)
            return chosen

    def forget(self, store: Store, hive_id: str) -> None:
        """Drop the held policy: the next decision rebuilds it from the store (agents' retry
        times are kept)."""
        with self._lock:
            held = self._held.get((id(store), hive_id))
            if held is not None:
                held.stale = True

    def _policy(self, store: Store, hive: Hive, now: float, last: int) -> BasePolicy:
        key = (id(store), hive.id)
        held = self._held.get(key)
        if held is not None and (held.stale or (
                held.seq != last and not self._caught_up(store, hive, held, now, last))):
            held = None
        if held is None:
            return self._rebuilt(store, hive, now, last)
        self._held.move_to_end(key)
        return held.policy

    def _rebuilt(self, store: Store, hive: Hive, now: float, last: int) -> BasePolicy:
        key = (id(store), hive.id)
        before = self._held.pop(key, None)  # the old board goes before the new one is read
        retries = {} if before is None else before.retries
        del before
        policy = rebuild(hive, store.list_agents(hive.id), store.policy_board(hive.id), now)
        self._held[key] = _Held(policy, last, retries)
        self._held.move_to_end(key)
        while len(self._held) > self.limit:
            self._held.popitem(last=False)
        return policy

    def _caught_up(self, store: Store, hive: Hive, held: _Held, now: float, last: int) -> bool:
        """Apply the events since the held policy's seq; False when they need a rebuild."""
        if last < held.seq:
            return False
        events = store.events(hive.id, after_seq=held.seq, limit=self.catch_up_limit)
        if len(events) >= self.catch_up_limit:
            return False
        policy = held.policy
        for event in events:
            kind = event.kind
            if kind == EventKind.TASK_CLAIMED and event.task_id and event.agent_id:
                board_task = policy.board.tasks.get(event.task_id)
                if board_task is None or board_task.holder == event.agent_id:
                    continue
                if event.agent_id not in policy.alive:
                    return False
                try:
                    policy.claim(event.task_id, event.agent_id, now)
                except (Conflict, PolicyError):
                    return False
            elif kind == EventKind.AGENT_ADDED and event.agent_id:
                if event.agent_id in policy.alive:
                    continue
                if not policy.joins_in_place:
                    return False  # assigned work is dealt among the members: deal it again
                joined = store.get_agent(event.agent_id)
                policy.add_agent(joined, now)
                restore_thresholds(policy, [joined])
            elif (kind.startswith("task_") and kind not in _SKIPPED) \
                    or kind == EventKind.LEASE_EXPIRED \
                    or (kind.startswith("agent_") and kind != EventKind.AGENT_WOKEN):
                return False
        policy.drain_wakes()
        if events:
            held.seq = events[-1].seq
        return True
