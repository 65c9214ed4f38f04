"""What one run measured, computed from its events, its ledger and its tasks only — a live hive's
as stored, or a simulated run's mapped to the same shape (`simulated_record`). Depends on the
model and the simulator's result types; no I/O.

Definitions (reference/allocation.md; the simulator uses the same ones):
- makespan: from `engine_started` to the last task ending (done, failed, cancelled).
- an attempt is a claim and how it ended: done, failed, released (quit, abstained, paused,
  attempt failed), or expired (its holder died and the lease ran out). A claim that ended by
  splitting its task into subtasks (`split`) or handing it to a report (`delegated`, company
  mode) is coordination: it is on the timeline but is no attempt at the work itself.
- duplicate work: work attempts beyond the first on a task, and the tokens of work attempts
  that did not end with their task done (work spent twice).
- task switch: an agent claims another task while its last attempt ended unfinished (thrash).
- released claims: claims given back before done (quit, abstained, paused) or expired; a failed
  attempt is counted apart.
- unclaimed-task age: time from a task becoming ready (posted with its dependencies done, a
  dependency done, reopened) to its claim.
- integration (git isolation, `integration_figures`): merge conflicts (integration tasks posted
  for a merge that conflicted), merges undone because a check failed on the result, integration
  tasks posted, the tokens and cost of the ledger entries of those tasks, and rework: work
  attempts beyond the first per task plus the undone merges.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ruflo.engine.simulate import COORDINATION
from ruflo.event_kinds import EventKind
from ruflo.model import CostKind, Event, LedgerEntry, Task, TaskState

ENDINGS: dict[str, str] = {
    EventKind.TASK_DONE: "done", EventKind.TASK_FAILED: "failed",
    EventKind.TASK_RELEASED: "released", EventKind.LEASE_EXPIRED: "expired",
    EventKind.TASK_CANCELLED: "cancelled"}
FAILED_RETRY = "attempt failed"
"""Reason prefix of the engine's release after a failed attempt that will be retried."""
DELEGATED = "delegated"
"""Reason of the company engine's release when a manager hands the ticket to a report."""
COORDINATING = frozenset({"split", "delegated"})
"""Outcomes of claims that organised the work rather than did it."""


@dataclass(frozen=True, slots=True)
class Attempt:
    """One claim of a task by an agent, and how it ended."""

    agent: str
    task: str
    start: float
    end: float | None
    """Seconds since the run began; None when the run stopped with the claim still held."""
    outcome: str
    """done | failed | released | expired | cancelled | split | delegated | open"""


@dataclass(slots=True)
class RunMetrics:
    """Every figure the report shows for one run."""

    success: bool
    success_basis: str
    """What decided `success`: the verify command, or every task done (simulated)."""
    tasks: int
    done: int
    failed: int
    cancelled: int
    makespan: float | None
    llm_calls: int
    tokens: int
    work_tokens: int
    coordination_tokens: int
    cost: float | None
    """USD of the calls whose cost is known; None when no call's cost was known."""
    work_cost: float | None
    coordination_cost: float | None
    unknown_cost_calls: int
    tokens_per_success: float | None
    """Tokens of the run when it succeeded; None when it did not (no success to divide by)."""
    calls_per_task: float
    attempts: int
    duplicate_attempts: int
    duplicate_tokens: int
    done_twice: int
    """Tasks finished more than once (must stay 0: a board finishes a task once)."""
    task_switches: int
    released_claims: int
    failed_attempts: int
    unclaimed_age_mean: float | None
    unclaimed_age_max: float | None
    killed_agents: int = 0
    orphaned_tasks: int = 0
    """Tasks the killed agents held when they died."""
    recovered_tasks: int = 0
    """Of those, the ones later done by another agent."""
    merges: int = 0
    """Task commits merged into the integration branch (git isolation; 0 in a shared folder)."""
    merge_conflicts: int = 0
    undone_merges: int = 0
    """Merges undone because a check failed on the merged result."""
    integration_tasks: int = 0
    integration_tokens: int = 0
    integration_cost: float | None = None
    rework: int = 0
    """Work attempts beyond the first per task, plus undone merges."""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def attempts(events: Sequence[Event]) -> list[Attempt]:
    """Every claim in the run and how it ended, from the events."""
    start = run_start(events)
    open_claims: dict[str, tuple[str, float]] = {}
    found: list[Attempt] = []
    for event in events:
        task = event.task_id
        if task is None:
            continue
        at = (event.ts - start).total_seconds()
        if event.kind == EventKind.TASK_CLAIMED and event.agent_id is not None:
            open_claims[task] = (event.agent_id, at)
        elif event.kind in ENDINGS and task in open_claims:
            agent, began = open_claims.pop(task)
            outcome = ENDINGS[event.kind]
            reason = str(event.data.get("reason", ""))
            if outcome == "released" and reason.startswith(FAILED_RETRY):
                outcome = "failed"
            elif outcome == "released" and reason == DELEGATED:
                outcome = "delegated"
            found.append(Attempt(agent, task, began, at, outcome))
        elif event.kind == EventKind.TASK_UPDATED and task in open_claims and \
                event.data.get("fields", {}).get("state") == "blocked":
            agent, began = open_claims.pop(task)  # split into subtasks: the claim ends here
            found.append(Attempt(agent, task, began, at, "split"))
    found += [Attempt(agent, task, began, None, "open")
              for task, (agent, began) in open_claims.items()]
    return found


def run_start(events: Sequence[Event]) -> datetime:
    for event in events:
        if event.kind == EventKind.ENGINE_STARTED:
            return event.ts
    return events[0].ts if events else datetime.fromtimestamp(0, UTC)


def run_metrics(events: Sequence[Event], ledger: Sequence[LedgerEntry],
                tasks: Sequence[Task]) -> RunMetrics:
    """The figures of one run. `events` in sequence order; `tasks` as they ended."""
    events = sorted(events, key=lambda e: e.seq)
    start = run_start(events)
    claims = attempts(events)

    # Makespan: the last task ending after the start.
    ends = [e.ts for e in events
            if e.kind in (EventKind.TASK_DONE, EventKind.TASK_FAILED, EventKind.TASK_CANCELLED)]
    makespan = (max(ends) - start).total_seconds() if ends else None

    # Success: the verify command's verdict, else every top-level task done.
    verdicts = [e for e in events if e.kind == EventKind.COMPARE_VERIFIED]
    roots = [t for t in tasks if t.parent_id is None]
    if verdicts:
        success, basis = bool(verdicts[-1].data.get("passed")), "verify command"
    else:
        success = bool(roots) and all(t.state is TaskState.DONE for t in roots)
        basis = "every task done"

    # Tokens and cost, split by what the call was for.
    work = [e for e in ledger if e.kind is not CostKind.COORDINATION]
    coordination = [e for e in ledger if e.kind is CostKind.COORDINATION]
    tokens = sum(e.total_tokens for e in ledger)

    def cost(entries: Iterable[LedgerEntry]) -> float | None:
        known = [e.cost for e in entries if e.cost is not None]
        return math.fsum(known) if known else None

    # Duplicate work: extra attempts, and the tokens of attempts that did not finish their task.
    work_claims = [a for a in claims if a.outcome not in COORDINATING]
    first_claims = {a.task for a in work_claims}
    by_holder: dict[tuple[str, str], list[Attempt]] = {}
    for attempt in sorted(claims, key=lambda a: a.start):
        by_holder.setdefault((attempt.task, attempt.agent), []).append(attempt)
    wasted = 0
    for entry in ledger:
        if entry.task_id is None or entry.agent_id is None:
            continue
        at = (entry.ts - start).total_seconds()
        mine = [a for a in by_holder.get((entry.task_id, entry.agent_id), ()) if a.start <= at]
        if mine and mine[-1].outcome not in ("done", *COORDINATING):
            wasted += entry.total_tokens
    finishes: dict[str, int] = {}
    for event in events:
        if event.kind == EventKind.TASK_DONE and event.task_id is not None:
            finishes[event.task_id] = finishes.get(event.task_id, 0) + 1

    # Thrash: switches while the last attempt was unfinished; claims given back.
    unfinished: dict[str, str] = {}
    switches = 0
    for attempt in sorted(claims, key=lambda a: a.start):
        left = unfinished.pop(attempt.agent, None)
        if left is not None and left != attempt.task:
            switches += 1
        if attempt.outcome in ("failed", "released", "expired"):
            unfinished[attempt.agent] = attempt.task
    released = sum(1 for a in claims if a.outcome in ("released", "expired"))
    failed_attempts = sum(1 for a in claims if a.outcome == "failed")

    ages = unclaimed_ages(events)

    # Killing agents: what they held, and whether someone else finished it.
    killed = [e for e in events if e.kind == EventKind.COMPARE_AGENT_KILLED]
    orphaned: set[str] = set()
    for kill in killed:
        at = (kill.ts - start).total_seconds()
        orphaned |= {a.task for a in claims if a.agent == kill.agent_id and a.start <= at
                     and (a.end is None or a.end >= at) and a.outcome != "done"}
    done_by = {e.task_id: e.agent_id for e in events if e.kind == EventKind.TASK_DONE}
    dead = {e.agent_id for e in killed}
    recovered = sum(1 for t in orphaned if t in done_by and done_by[t] not in dead)

    states = [t.state for t in tasks]
    success_tokens = float(tokens) if success else None
    integration = integration_figures(events, ledger, claims)
    return RunMetrics(
        success=success, success_basis=basis, tasks=len(tasks),
        done=states.count(TaskState.DONE), failed=states.count(TaskState.FAILED),
        cancelled=states.count(TaskState.CANCELLED), makespan=makespan,
        llm_calls=len(ledger), tokens=tokens,
        work_tokens=sum(e.total_tokens for e in work),
        coordination_tokens=sum(e.total_tokens for e in coordination),
        cost=cost(ledger), work_cost=cost(work), coordination_cost=cost(coordination),
        unknown_cost_calls=sum(1 for e in ledger if e.cost is None),
        tokens_per_success=success_tokens,
        calls_per_task=len(ledger) / len(tasks) if tasks else 0.0,
        attempts=len(claims), duplicate_attempts=len(work_claims) - len(first_claims),
        duplicate_tokens=wasted, done_twice=sum(1 for n in finishes.values() if n > 1),
        task_switches=switches, released_claims=released, failed_attempts=failed_attempts,
        unclaimed_age_mean=math.fsum(ages) / len(ages) if ages else None,
        unclaimed_age_max=max(ages) if ages else None,
        killed_agents=len(dead), orphaned_tasks=len(orphaned), recovered_tasks=recovered,
        **integration)


def integration_figures(events: Sequence[Event], ledger: Sequence[LedgerEntry],
                        claims: Sequence[Attempt] | None = None) -> dict[str, Any]:
    """How a run integrated its work, from its events and ledger (git isolation; a simulated
    run's conflicts are mapped to the same events by `simulated_record`):
    - merges: `task_merged` events;
    - merge_conflicts: `integration_posted` events naming conflicting files (a merge that
      could not be joined);
    - undone_merges: `merge_check_failed` events (a merge undone because a check failed on it;
      its integration task is posted too, naming no files);
    - integration_tasks: the integration tasks posted (either cause);
    - integration_tokens / integration_cost: the ledger entries of those tasks (their work and
      any planning call about them; cost None when no entry's cost is known);
    - rework: work attempts beyond the first per task (`attempts`, coordinating claims left
      out) plus undone merges."""
    if claims is None:
        claims = attempts(sorted(events, key=lambda e: e.seq))
    posted = [e for e in events if e.kind == EventKind.INTEGRATION_POSTED]
    ids = {str(e.data["integration_task"]) for e in posted if e.data.get("integration_task")}
    spent = [e for e in ledger if e.task_id in ids]
    known = [e.cost for e in spent if e.cost is not None]
    work = [a for a in claims if a.outcome not in COORDINATING]
    undone = sum(1 for e in events if e.kind == EventKind.MERGE_CHECK_FAILED)
    return {
        "merges": sum(1 for e in events if e.kind == EventKind.TASK_MERGED),
        "merge_conflicts": sum(1 for e in posted if e.data.get("files")),
        "undone_merges": undone, "integration_tasks": len(ids),
        "integration_tokens": sum(e.total_tokens for e in spent),
        "integration_cost": math.fsum(known) if known else None,
        "rework": len(work) - len({a.task for a in work}) + undone}


def unclaimed_ages(events: Sequence[Event]) -> list[float]:
    """For every claim, how long its task had been ready and unclaimed (seconds)."""
    deps: dict[str, list[str]] = {}
    dependents: dict[str, list[str]] = {}
    done: set[str] = set()
    ready_at: dict[str, datetime] = {}
    blocked: set[str] = set()
    ages: list[float] = []

    def maybe_ready(task: str, at: datetime) -> None:
        if task not in done and task not in blocked and all(d in done for d in deps.get(task, ())):
            ready_at.setdefault(task, at)

    for event in events:
        task, kind = event.task_id, event.kind
        if task is None:
            continue
        if kind == EventKind.TASK_POSTED:
            deps[task] = [str(d) for d in event.data.get("depends_on") or []]
            for dep in deps[task]:
                dependents.setdefault(dep, []).append(task)
            maybe_ready(task, event.ts)
        elif kind == EventKind.TASK_CLAIMED:
            since = ready_at.pop(task, None)
            if since is not None:
                ages.append(max(0.0, (event.ts - since).total_seconds()))
        elif kind == EventKind.TASK_DONE:
            done.add(task)
            ready_at.pop(task, None)
            for child in dependents.get(task, ()):
                maybe_ready(child, event.ts)
        elif kind in (EventKind.TASK_RELEASED, EventKind.LEASE_EXPIRED):
            maybe_ready(task, event.ts)
        elif kind in (EventKind.TASK_FAILED, EventKind.TASK_CANCELLED):
            ready_at.pop(task, None)
        elif kind == EventKind.TASK_UPDATED:
            state = event.data.get("fields", {}).get("state")
            if state == "blocked":
                blocked.add(task)
                ready_at.pop(task, None)
            elif state == "open":
                blocked.discard(task)
                maybe_ready(task, event.ts)
    return ages


def timeline(events: Sequence[Event], limit: int = 5000) -> list[dict[str, Any]]:
    """Who worked on what, when (seconds since the start): one bar per attempt."""
    return [{"agent": a.agent, "task": a.task, "start": a.start, "end": a.end,
             "outcome": a.outcome} for a in attempts(sorted(events, key=lambda e: e.seq))[:limit]]


# -- simulated runs in the same shape ------------------------------------------------------------
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
"""Simulated events are stamped EPOCH + virtual time, one second per effort unit."""


def simulated_record(result: Any, tasks: Sequence[Any], *, killed: Sequence[str] = (),
                     kill_at: float | None = None, tokens_per_effort: int = 2000,
                     hive_id: str = "sim") -> tuple[list[Event], list[LedgerEntry], list[Task]]:
    """A simulator result (with its timeline) as events, ledger and tasks, so `run_metrics`
    measures it as it measures a live hive. Work tokens are charged per attempt as the simulator
    charges them (time worked × tokens per effort unit, nothing for an attempt cut short by a
    death); its coordination tokens, which it totals only, are one coordination entry at the
    end."""
    if result.timeline is None:
        raise ValueError("the simulation kept no timeline; run it with record=True")
    raw: list[tuple[float, int, str, str | None, str | None, dict[str, Any]]] = []
    order = 0

    def add(at: float, kind: str, agent: str | None, task: str | None,
            data: dict[str, Any] | None = None) -> None:
        nonlocal order
        order += 1
        raw.append((at, order, kind, agent, task, data or {}))

    add(0.0, EventKind.ENGINE_STARTED, None, None)
    known = {t.id: t for t in tasks}
    for task in tasks:
        add(0.0, EventKind.TASK_POSTED, None, task.id, {"depends_on": list(task.depends_on)})
    entries = sorted(result.timeline, key=lambda e: (e.start, e.end))
    last_of: dict[str, Any] = {}
    done_at: dict[str, float] = {}
    for entry in entries:
        if entry.outcome != "delegated" and entry.task != COORDINATION:
            last_of[entry.task] = entry
            if entry.outcome == "done":
                done_at[entry.task] = entry.end
    children: dict[str, list[str]] = {}
    for name in last_of:
        parent, _, tail = name.rpartition(".")
        if parent and tail.isdigit() and (parent in known or parent in last_of):
            children.setdefault(parent, []).append(name)
    if kill_at is not None:
        for agent in killed:
            add(kill_at, EventKind.COMPARE_AGENT_KILLED, agent, None)
    integrations = getattr(result, "integrations", None) or []
    for conflict in integrations:
        # As a live hive records a conflicting merge (agents/isolated.py).
        add(conflict.at, EventKind.TASK_POSTED, conflict.agent, conflict.integration_task,
            {"depends_on": []})
        add(conflict.at, EventKind.INTEGRATION_POSTED, conflict.agent, conflict.task,
            {"integration_task": conflict.integration_task, "files": list(conflict.files),
             "reason": f"simulated conflict with {conflict.partner}"})
    ledger: list[LedgerEntry] = []
    for entry in entries:
        if entry.outcome == "delegated" or entry.task == COORDINATION:
            continue
        add(entry.start, EventKind.TASK_CLAIMED, entry.agent, entry.task)
        outcome = entry.outcome
        if outcome == "done":
            add(entry.end, EventKind.TASK_DONE, entry.agent, entry.task)
        elif outcome in ("failed", "quit"):
            final = entry is last_of[entry.task] and entry.task not in done_at
            if final:
                add(entry.end, EventKind.TASK_FAILED, entry.agent, entry.task)
            else:
                reason = f"{FAILED_RETRY}: simulated" if outcome == "failed" else "bout over"
                add(entry.end, EventKind.TASK_RELEASED, entry.agent, entry.task, {"reason": reason})
        elif outcome == "died":
            add(entry.released, EventKind.LEASE_EXPIRED, entry.agent, entry.task)
        elif outcome == "decomposed":
            add(entry.end, EventKind.TASK_UPDATED, None, entry.task,
                {"fields": {"state": "blocked"}})
            for child in children.get(entry.task, ()):
                add(entry.end, EventKind.TASK_POSTED, entry.agent, child, {"depends_on": []})
            parts = children.get(entry.task, [])
            if parts and all(p in done_at for p in parts):
                add(max(done_at[p] for p in parts), EventKind.TASK_UPDATED, None, entry.task,
                    {"fields": {"state": "open"}})
        if outcome not in ("decomposed", "died"):
            # As the simulator charges: nothing for decomposing (its coordination total has it)
            # nor for an attempt cut short by a death.
            spent = entry.end - entry.start
            ledger.append(_entry(len(ledger) + 1, entry.end, round(spent * tokens_per_effort),
                                 CostKind.WORK, hive_id, entry.agent, entry.task))
    ended = [t for t in (*done_at.values(), *(e.end for e in entries)) if t is not None]
    finish = max(ended, default=0.0)
    final_state: dict[str, TaskState] = {}
    posted = [c.integration_task for c in integrations if c.integration_task not in last_of]
    for name in list(known) + [n for n in last_of if n not in known] + posted:
        if name in done_at:
            final_state[name] = TaskState.DONE
        elif name in last_of and last_of[name].outcome in ("failed", "quit"):
            final_state[name] = TaskState.FAILED
        else:
            final_state[name] = TaskState.CANCELLED
            add(finish, EventKind.TASK_CANCELLED, None, name)
    if result.coordination_tokens:
        ledger.append(_entry(len(ledger) + 1, finish, int(result.coordination_tokens),
                             CostKind.COORDINATION, hive_id, None, None))
    raw.sort(key=lambda r: (r[0], r[1]))
    events = [Event(seq=n + 1, hive_id=hive_id, kind=kind, ts=EPOCH + timedelta(seconds=at),
                    agent_id=agent, task_id=task, data=data)
              for n, (at, _, kind, agent, task, data) in enumerate(raw)]
    parents = {c: p for p, cs in children.items() for c in cs}
    board = [Task(id=name, hive_id=hive_id, title=name, parent_id=parents.get(name),
                  depends_on=tuple(known[name].depends_on) if name in known else (),
                  state=state) for name, state in final_state.items()]
    return events, ledger, board


def _entry(n: int, at: float, tokens: int, kind: CostKind, hive_id: str, agent: str | None,
           task: str | None) -> LedgerEntry:
    return LedgerEntry(id=n, ts=EPOCH + timedelta(seconds=at), model="simulated",
                       prompt_tokens=0, completion_tokens=tokens, cost=None,
                       cost_source="simulated", kind=kind, hive_id=hive_id, agent_id=agent,
                       task_id=task)
