"""Who did what in one run: per agent, the kinds of task it took, how its attempts ended, what
its model calls cost (from the ledger) and, in a swarm, the response thresholds it learned.
Computed from the run's events, ledger, tasks and agents only — a live hive's as stored, or a
simulated run's as `metrics.simulated_record` maps it. Depends on the model and metrics; no I/O.

Definitions:
- a task's kind is its skills joined with "+" (`python`, `docs`, `python+docs`), or "any" when
  it names none;
- taken: per kind, the tasks the agent claimed to work on (each task once, however many times);
- attempts: its work claims (`metrics.attempts`, coordinating claims — a split or a delegation —
  counted apart as `coordination`); done, failed, released (given back, or its lease expired)
  and open (held when the run stopped) are how they ended;
- calls, tokens, cost: the ledger entries charged to the agent (cost None when none is known);
- mean_time: the mean length of its work attempts that ended (seconds, or the simulator's
  effort units);
- thresholds: the agent's response thresholds per skill at the end (swarm: learned and stored on
  the agent; other modes and simulated runs: None).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ruflo.compare.metrics import COORDINATING, attempts
from ruflo.model import Agent, Event, LedgerEntry, Task

ANY_KIND = "any"


def task_kind(skills: Iterable[str]) -> str:
    """The kind of a task, by the skills it needs."""
    return "+".join(skills) or ANY_KIND


def agent_figures(events: Sequence[Event], ledger: Sequence[LedgerEntry],
                  tasks: Sequence[Task], agents: Sequence[Agent], *,
                  thresholds: bool = False) -> list[dict[str, Any]]:
    """One row per agent of the run (in the order given; an agent that appears in the events or
    ledger but not in `agents` gets a row too), with the figures defined above. `thresholds`:
    report each agent's stored thresholds (a swarm's)."""
    kinds = {t.id: task_kind(t.skills) for t in tasks}
    claims = attempts(sorted(events, key=lambda e: e.seq))
    known = {a.id: a for a in agents}
    order = [a.id for a in agents]
    for agent_id in [c.agent for c in claims] + [e.agent_id for e in ledger if e.agent_id]:
        if agent_id not in known and agent_id not in order:
            order.append(agent_id)

    rows = []
    for agent_id in order:
        agent = known.get(agent_id)
        mine = [c for c in claims if c.agent == agent_id]
        work = [c for c in mine if c.outcome not in COORDINATING]
        taken: dict[str, int] = {}
        done_kinds: dict[str, int] = {}
        for task_id in dict.fromkeys(c.task for c in work):
            kind = kinds.get(task_id, ANY_KIND)
            taken[kind] = taken.get(kind, 0) + 1
        for claim in work:
            if claim.outcome == "done":
                kind = kinds.get(claim.task, ANY_KIND)
                done_kinds[kind] = done_kinds.get(kind, 0) + 1
        ended = [c.end - c.start for c in work if c.end is not None]
        spent = [e for e in ledger if e.agent_id == agent_id]
        known_cost = [e.cost for e in spent if e.cost is not None]

        def count(*outcomes: str, among: Sequence[Any] = work) -> int:
            return sum(1 for c in among if c.outcome in outcomes)

        rows.append({
            "agent": agent_id,
            "name": agent.name if agent is not None else agent_id,
            "adapter": agent.adapter.value if agent is not None else None,
            "model": agent.model if agent is not None else None,
            "role": agent.role if agent is not None else None,
            "skills": list(agent.skills) if agent is not None else [],
            "taken": taken, "done_by_kind": done_kinds,
            "attempts": len(work), "done": count("done"), "failed": count("failed"),
            "released": count("released", "expired"), "open": count("open"),
            "coordination": len(mine) - len(work),
            "calls": len(spent), "tokens": sum(e.total_tokens for e in spent),
            "cost": math.fsum(known_cost) if known_cost else None,
            "mean_time": math.fsum(ended) / len(ended) if ended else None,
            "thresholds": dict(agent.thresholds) if thresholds and agent is not None else None,
        })
    return rows


def kinds_text(counts: Mapping[str, int]) -> str:
    """`python 2, docs 1`, or `–` for none."""
    return ", ".join(f"{kind} {n}" for kind, n in counts.items()) or "–"


def thresholds_text(thresholds: Mapping[str, float] | None) -> str:
    """`python 0.42, docs 1.3`, or `–` when none were stored."""
    if not thresholds:
        return "–"
    return ", ".join(f"{skill} {value:.3g}" for skill, value in sorted(thresholds.items()))
