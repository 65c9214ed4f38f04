"""The simulator's merge-conflict rule, so simulated runs show what integration costs. Depends on
the policies' task types only; no I/O.

The rule (docs/compare.md, "Conflicts in the simulator"):
- each task has a set of files: the workload's `files:`, or drawn (`draw_files`: a shape's
  tasks each touch `per_task` files of a pool);
- when an attempt finishes successfully its task is merged at that moment; it conflicts, with
  probability `probability` each, with every task that shares a file with it and was merged
  after this attempt started (their work ran concurrently: this attempt's base did not have
  theirs). With probability 1 the conflicts are exactly those concurrent sharing pairs;
- each conflict costs one integration task (effort `integration_effort`, the task's skills,
  its priority + 1, no files of its own, so integrations do not conflict again), posted when the
  merge happens: in swarm mode on the board, in company mode to the task owner's nearest
  working manager, who decides it like any ticket (`post_integration` of the policy). Its work
  is charged like any work (time × tokens per effort unit). The task's own change counts as
  merged (the integration task carries it in).
The draws come from their own stream (seeded by the run's seed), so the rest of a run — work
times, failures, the policy's choices — is the same whatever the rule draws.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from ruflo.errors import PolicyError
from ruflo.policies import BasePolicy, TaskSpec
from ruflo.policies.board import BoardTask

__all__ = ["ConflictRule", "Conflicts", "Integration", "draw_files"]

INTEGRATE = "~integrate-"
"""Integration task ids are `<task>~integrate-<n>`."""


@dataclass(frozen=True, slots=True)
class ConflictRule:
    """Which files each task touches, and what a conflict costs."""

    files: Mapping[str, Sequence[str]] = field(default_factory=dict)
    """Task id → the files it touches (a task not named touches none)."""
    probability: float = 0.3
    """Chance that two concurrent tasks sharing a file conflict."""
    integration_effort: float = 0.5
    """Work units of the integration task a conflict costs."""

    def __post_init__(self) -> None:
        if not 0 <= self.probability <= 1:
            raise PolicyError(f"conflict probability must be in [0, 1] (got {self.probability}); "
                              "nothing was run")
        if self.integration_effort <= 0:
            raise PolicyError("integration effort must be > 0 "
                              f"(got {self.integration_effort}); nothing was run")


class Integration(NamedTuple):
    """One simulated conflict and the integration task it cost."""

    at: float
    task: str
    """The task whose merge conflicted."""
    partner: str
    """The task merged meanwhile that it conflicted with."""
    integration_task: str
    files: tuple[str, ...]
    agent: str
    """Who finished the task (its owner)."""


def draw_files(task_ids: Sequence[str], pool: int, per_task: int = 2,
               seed: int = 0) -> dict[str, tuple[str, ...]]:
    """`per_task` distinct files of `pool` (`file-0` …) for each task, drawn with the seed."""
    if pool < 1 or per_task < 1:
        raise PolicyError(f"files: need a pool of at least 1 and 1 per task (got {pool}, "
                          f"{per_task})")
    rng = random.Random(f"files-{seed}")
    take = min(per_task, pool)
    return {t: tuple(f"file-{n}" for n in sorted(rng.sample(range(pool), take)))
            for t in task_ids}


class Conflicts:
    """A run's merges per file and the conflicts the rule drew."""

    def __init__(self, rule: ConflictRule, seed: int, record: bool) -> None:
        self.rule = rule
        self.files = {t: tuple(dict.fromkeys(fs)) for t, fs in rule.files.items() if fs}
        self.rng = random.Random(f"conflicts-{seed}")
        self.merged: dict[str, tuple[list[float], list[str]]] = {}
        """File → the merge times and the tasks merged, in merge order."""
        self.count = 0
        self.log: list[Integration] | None = [] if record else None

    def on_merged(self, policy: BasePolicy, task: BoardTask, agent: str, started: float,
                  now: float) -> int:
        """`task` (its attempt began at `started`) merges now: draw its conflicts and post an
        integration task for each. Returns how many."""
        mine = self.files.get(task.id)
        if not mine:
            return 0
        shared: dict[str, list[str]] | None = None
        merged = self.merged
        for name in mine:
            merges = merged.get(name)
            if merges is None:
                merged[name] = ([now], [task.id])
                continue
            times, ids = merges
            first = bisect.bisect_right(times, started)
            if first < len(ids):
                for other in ids[first:]:
                    if other != task.id:
                        if shared is None:
                            shared = {}
                        shared.setdefault(other, []).append(name)
            times.append(now)
            ids.append(task.id)
        if shared is None:
            return 0
        found = 0
        for partner, names in shared.items():
            if self.rng.random() >= self.rule.probability:
                continue
            self.count += 1
            found += 1
            spec = TaskSpec(f"{task.id}{INTEGRATE}{self.count}", task.skills, task.priority + 1,
                            self.rule.integration_effort, ())
            policy.post_integration(spec, agent, now)
            if self.log is not None:
                self.log.append(Integration(now, task.id, partner, spec.id, tuple(names), agent))
        return found
