"""Property-based tests over random boards, through the simulator and every policy: no task done
twice, one holder per claim, dependencies respected, every task terminal, killed agents' work
recovered."""

from __future__ import annotations

import itertools
from collections import defaultdict

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ruflo.engine.simulate import COORDINATION, KillPlan, SimParams, SimResult, simulate
from ruflo.model import Agent
from ruflo.policies import SwarmParams, TaskSpec

SKILLS = ("python", "docs", "ops")


@st.composite
def boards(draw: st.DrawFn) -> tuple[list[TaskSpec], list[Agent]]:
    n = draw(st.integers(1, 30))
    tasks = []
    for i in range(n):
        deps = draw(st.sets(st.integers(0, i - 1), max_size=3)) if i else set()
        tasks.append(
            TaskSpec(
                f"t{i}",
                tuple(draw(st.sets(st.sampled_from(SKILLS), max_size=2))),
                draw(st.integers(0, 3)),
                draw(st.floats(0.1, 5.0)),
                tuple(f"t{d}" for d in sorted(deps)),
            )
        )
    agents = [
        Agent(id=f"a{i}", hive_id="h", name=f"a{i}",
              skills=tuple(draw(st.sets(st.sampled_from(SKILLS), max_size=2))))
        for i in range(draw(st.integers(1, 8)))
    ]
    return tasks, agents


def check_invariants(tasks: list[TaskSpec], result: SimResult) -> None:
    # Decomposition may add subtasks to the board; every task on it ends terminal.
    assert result.done + result.failed + result.cancelled == result.tasks >= len(tasks)
    assert result.timeline is not None
    claims = defaultdict(list)
    done_at: dict[str, float] = {}
    per_agent = defaultdict(list)
    for entry in result.timeline:
        per_agent[entry.agent].append((entry.start, entry.end))
        if entry.outcome == "delegated":
            continue
        claims[entry.task].append((entry.start, entry.released))
        if entry.outcome == "done":
            assert entry.task not in done_at, f"{entry.task} completed twice"
            done_at[entry.task] = entry.end
    assert len(done_at) == result.done
    for task_id, spans in claims.items():
        spans.sort()
        for (_, released), (start, _) in itertools.pairwise(spans):
            assert start >= released - 1e-9, f"two holders of {task_id}"
    for spans in per_agent.values():
        spans.sort()
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start >= end - 1e-9, "an agent did two things at once"
    by_id = {t.id: t for t in tasks}
    for task_id in done_at:
        if task_id not in by_id:
            continue
        first_start = min(start for start, _ in claims[task_id])
        for dep in by_id[task_id].depends_on:
            assert dep in done_at, f"{task_id} done although {dep} was not"
            assert done_at[dep] <= first_start + 1e-9, f"{task_id} started before {dep} ended"


MODES = st.sampled_from(["swarm", "company", "round_robin", "solo"])


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    board=boards(),
    mode=MODES,
    seed=st.integers(0, 2**16),
    failure_rate=st.sampled_from([0.0, 0.1, 0.4]),
    quit_rate=st.sampled_from([0.0, 0.5]),
)
def test_random_boards_keep_the_invariants(
    board: tuple[list[TaskSpec], list[Agent]],
    mode: str,
    seed: int,
    failure_rate: float,
    quit_rate: float,
) -> None:
    tasks, agents = board
    result = simulate(
        tasks, agents, mode, seed=seed, record=True,
        params=SimParams(failure_rate=failure_rate),
        swarm=SwarmParams(quit_rate=quit_rate, decompose_above=4.0 if seed % 2 else None),
    )
    check_invariants(tasks, result)
    assert not result.stalled
    if failure_rate == 0 and quit_rate == 0:
        assert result.all_done


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    board=boards(),
    mode=MODES,
    seed=st.integers(0, 2**16),
    fraction=st.sampled_from([0.2, 0.5, 0.8]),
    at=st.floats(0.0, 15.0),
)
def test_killed_agents_tasks_are_recovered(
    board: tuple[list[TaskSpec], list[Agent]], mode: str, seed: int, fraction: float, at: float
) -> None:
    tasks, agents = board
    result = simulate(tasks, agents, mode, seed=seed, record=True,
                      params=SimParams(failure_rate=0.0), kill=KillPlan(fraction, at))
    check_invariants(tasks, result)
    assert result.all_done, result
    assert result.recovered == result.orphaned
    assert result.timeline is not None
    # A manager killed while delegating dies on coordination, not on a task: nothing to redo.
    died = {e.task for e in result.timeline if e.outcome == "died" and e.task != COORDINATION}
    redone = {e.task for e in result.timeline if e.outcome == "done"}
    assert died <= redone
