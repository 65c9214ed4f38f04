"""Generated workload shapes for the simulator and benchmarks: wide parallel, deep chains and
mixed skills, N tasks each, seeded. Depends on the model and ruflo.policies only.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from ruflo.errors import PolicyError
from ruflo.model import Agent
from ruflo.policies import TaskSpec

SHAPES = ("wide", "deep", "mixed")
MIXED_SKILLS = ("python", "frontend", "docs", "ops", "tests")
CHAIN_LENGTH = 40


def shape_tasks(shape: str, n: int, seed: int = 0) -> list[TaskSpec]:
    """N tasks of a shape:

    - wide: independent tasks, one skill ("code"), effort 1–5.
    - deep: chains of CHAIN_LENGTH tasks, each waiting on the one before, effort 1–5.
    - mixed: five skills with uneven demand, effort 1–8, priority 1–3; a fifth of the tasks
      wait on one or two earlier tasks.
    """
    if n < 1:
        raise PolicyError(f"a shape needs at least one task (got {n})")
    rng = random.Random(f"{shape}:{seed}")
    uniform = rng.uniform
    if shape == "wide":
        skills = ("code",)
        return [TaskSpec(f"t{i}", skills, 1, round(uniform(1, 5), 3)) for i in range(n)]
    if shape == "deep":
        skills = ("code",)
        tasks = []
        for i in range(n):
            chain: tuple[str, ...] = (f"t{i - 1}",) if i % CHAIN_LENGTH else ()
            tasks.append(TaskSpec(f"t{i}", skills, 1, round(uniform(1, 5), 3), chain))
        return tasks
    if shape == "mixed":
        weights = (0.35, 0.25, 0.15, 0.15, 0.10)
        singles = [(s,) for s in MIXED_SKILLS]
        tasks = []
        for i in range(n):
            skill = rng.choices(singles, weights)[0]
            deps: tuple[str, ...] = ()
            if i > 10 and rng.random() < 0.2:
                count = 1 if rng.random() < 0.7 else 2
                deps = tuple(sorted({f"t{rng.randrange(max(0, i - 200), i)}" for _ in range(count)}))
            tasks.append(
                TaskSpec(f"t{i}", skill, rng.choice((1, 1, 2, 3)), round(uniform(1, 8), 3), deps)
            )
        return tasks
    raise PolicyError(f"unknown shape {shape!r}; choose one of {', '.join(SHAPES)}")


def shape_agents(shape: str, n: int, hive_id: str = "sim") -> list[Agent]:
    """N agents suited to a shape: generalists for wide and deep; for mixed, specialists whose
    skills are dealt in proportion to the demand, every fifth agent declaring two skills."""
    if n < 1:
        raise PolicyError(f"a hive needs at least one agent (got {n})")
    if shape == "mixed":
        return mixed_agents(n, MIXED_SKILLS, (0.35, 0.25, 0.15, 0.15, 0.10), hive_id)
    return [Agent(id=f"a{i}", hive_id=hive_id, name=f"a{i}") for i in range(n)]


def mixed_agents(
    n: int, skills: Sequence[str], weights: Sequence[float] | None = None, hive_id: str = "sim"
) -> list[Agent]:
    """N agents with skills dealt in proportion to `weights` (largest remainder), deterministic."""
    if not skills:
        return [Agent(id=f"a{i}", hive_id=hive_id, name=f"a{i}") for i in range(n)]
    weights = list(weights) if weights is not None else [1.0] * len(skills)
    total = sum(weights)
    quotas = [n * w / total for w in weights]
    counts = [int(q) for q in quotas]
    by_remainder = sorted(range(len(skills)), key=lambda k: quotas[k] - counts[k], reverse=True)
    for k in by_remainder[: n - sum(counts)]:
        counts[k] += 1
    dealt: list[str] = [skill for skill, c in zip(skills, counts, strict=True) for _ in range(c)]
    agents = []
    for i, skill in enumerate(dealt):
        own = (skill,) if i % 5 != 4 else (skill, skills[(skills.index(skill) + 1) % len(skills)])
        agents.append(Agent(id=f"a{i}", hive_id=hive_id, name=f"a{i}", skills=own))
    return agents
