"""The simulator: determinism, the lower bound, metrics, deaths and arrivals."""

from __future__ import annotations

import pytest

from ruflo.engine.shapes import shape_agents, shape_tasks
from ruflo.engine.simulate import KillPlan, SimParams, lower_bound, simulate
from ruflo.errors import PolicyError
from ruflo.model import Agent
from ruflo.policies import TaskSpec


@pytest.mark.parametrize("mode", ["swarm", "company", "round_robin", "solo"])
def test_same_seed_same_result(mode: str) -> None:
    tasks = shape_tasks("mixed", 300, seed=2)
    agents = shape_agents("mixed", 12)

    def run(seed: int) -> dict[str, object]:
        data = simulate(tasks, agents, mode, seed=seed, kill=KillPlan(0.3, 20.0)).to_dict(
            with_timeline=True
        )
        data.pop("wall_seconds")
        for timing in ("decisions_per_second", "decisions_per_cpu_second", "cpu_seconds"):
            data.pop(timing)
        return data

    first = run(7)
    assert first == run(7)
    assert first != run(8)


def test_lower_bound_is_the_larger_of_critical_path_and_work_per_agent() -> None:
    tasks = [TaskSpec("a", effort=2), TaskSpec("b", effort=3, depends_on=("a",)), TaskSpec("c")]
    assert lower_bound(tasks, 1) == (5.0, 6.0, 6.0)
    assert lower_bound(tasks, 4) == (5.0, 6.0, 5.0)
    with pytest.raises(PolicyError, match="cycle"):
        lower_bound([TaskSpec("a", depends_on=("b",)), TaskSpec("b", depends_on=("a",))], 1)


def test_solo_runs_everything_back_to_back_and_swarm_spreads_it() -> None:
    tasks = shape_tasks("wide", 200, seed=1)
    agents = shape_agents("wide", 10)
    quiet = SimParams(noise=0.0, failure_rate=0.0)
    solo = simulate(tasks, agents, "solo", params=quiet)
    assert solo.makespan == pytest.approx(solo.total_work)
    assert {e.agent for e in solo.timeline or []} == {"a0"}
    swarm = simulate(tasks, agents, "swarm", params=quiet)
    assert swarm.ratio < 1.2
    assert swarm.makespan >= swarm.lower_bound - 1e-9
    assert swarm.coordination_tokens == 0
    assert swarm.work_tokens > 0
    assert 0.8 < swarm.utilisation <= 1.0


def test_round_robin_ignores_skills_and_pays_for_the_mismatch() -> None:
    tasks = [TaskSpec(f"t{i}", ("docs",), 1, 1.0) for i in range(40)]
    agents = [Agent(id="writer", hive_id="h", name="writer", skills=("docs",)),
              Agent(id="coder", hive_id="h", name="coder", skills=("python",))]
    quiet = SimParams(noise=0.0, failure_rate=0.0, mismatch_factor=3.0)
    rr = simulate(tasks, agents, "round_robin", params=quiet)
    assert {e.agent for e in rr.timeline or [] if e.outcome == "done"} == {"writer", "coder"}
    assert rr.makespan == pytest.approx(60.0)  # 20 tasks at 3x on the coder


def test_killing_agents_mid_run_still_completes_every_task() -> None:
    tasks = shape_tasks("mixed", 2000, seed=4)
    agents = shape_agents("mixed", 40)
    base = simulate(tasks, agents, "swarm", seed=4)
    hit = simulate(tasks, agents, "swarm", seed=4, kill=KillPlan(0.3, base.makespan / 2))
    assert hit.killed == 12
    assert hit.all_done
    assert hit.recovered == hit.orphaned > 0
    assert hit.makespan > base.makespan


def test_thrash_is_counted_when_agents_quit() -> None:
    from ruflo.policies import SwarmParams

    tasks = shape_tasks("wide", 200, seed=1)
    agents = shape_agents("wide", 8)
    calm = simulate(tasks, agents, "swarm", seed=1)
    jumpy = simulate(tasks, agents, "swarm", seed=1,
                     swarm=SwarmParams(quit_rate=0.2, min_bout=1.0, max_attempts=50))
    assert calm.released_claims == 0
    assert calm.task_switches <= calm.failed_attempts
    assert jumpy.released_claims > 20
    assert jumpy.task_switches > 0
    assert jumpy.duplicate_work > calm.duplicate_work
    assert jumpy.all_done


def test_arrivals_post_tasks_later_and_raise_the_bound() -> None:
    tasks = [TaskSpec("a"), TaskSpec("b", depends_on=("a",))]
    agents = shape_agents("wide", 2)
    result = simulate(tasks, agents, "swarm", arrivals={"a": 0.0, "b": 10.0}, record=True)
    assert result.all_done
    assert min(e.start for e in result.timeline or [] if e.task == "b") >= 10.0
    assert result.lower_bound >= 11.0
    with pytest.raises(PolicyError, match="before its dependency"):
        simulate(tasks, agents, "swarm", arrivals={"a": 5.0, "b": 1.0})


def test_a_run_with_every_agent_dying_but_one_still_finishes() -> None:
    tasks = shape_tasks("deep", 120, seed=1)
    agents = shape_agents("wide", 10)
    result = simulate(tasks, agents, "swarm", kill=KillPlan(0.95, 5.0))
    assert result.killed == 9
    assert result.all_done
    assert not result.stalled


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(PolicyError, match="at least one agent"):
        simulate([TaskSpec("a")], [], "swarm")
    with pytest.raises(PolicyError, match="unknown mode"):
        simulate([TaskSpec("a")], shape_agents("wide", 1), "anarchy")
    with pytest.raises(PolicyError, match="between 0 and 1"):
        KillPlan(1.5, 1.0)
    with pytest.raises(PolicyError, match="unknown agents"):
        simulate([TaskSpec("a")], shape_agents("wide", 2), kill=KillPlan(0, 1.0, ("zed",)))
