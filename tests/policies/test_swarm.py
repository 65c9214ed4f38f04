"""The swarm policy: take-up by thresholds, learning, abstaining, waking, decomposition, and the
specialisation that emerges from identical agents."""

from __future__ import annotations

import random

import pytest

from ruflo.engine.simulate import simulate
from ruflo.model import Agent
from ruflo.policies import Decompose, Idle, SwarmParams, SwarmPolicy, Take, TaskSpec


def agent(name: str, *skills: str) -> Agent:
    return Agent(id=name, hive_id="h", name=name, skills=skills)


def test_an_agent_takes_up_the_ready_task_of_its_skill() -> None:
    policy = SwarmPolicy(SwarmParams(theta_noise=0, s0=20.0), seed=1)
    policy.add_agent(agent("py", "python"), 0.0)
    policy.post([TaskSpec("t1", ("python",)), TaskSpec("t2", ("python",), depends_on=("t1",))], 0.0)
    decision = policy.choose("py", 0.0, random.Random(0))
    assert decision == Take("t1")
    policy.claim("t1", "py", 0.0)
    assert policy.choose("py", 0.0, random.Random(0)) == Idle(None)  # t2 is not ready yet
    policy.drain_wakes()
    policy.on_task_finished("t1", "py", True, 1.0)
    assert policy.drain_wakes() == ["py"]  # the dependency finishing wakes the waiting agent
    assert policy.choose("py", 1.0, random.Random(0)) == Take("t2")


def test_stimulus_grows_with_waiting_is_boosted_and_stays_bounded() -> None:
    params = SwarmParams(s0=1.0, growth=1.0, evaporation=0.1, boost=3.0, s_max=8.0)
    policy = SwarmPolicy(params)
    policy.post([TaskSpec("a"), TaskSpec("b", priority=3)], 0.0)
    a, b = policy.board.get("a"), policy.board.get("b")
    assert policy.stimulus(a, 0.0) == pytest.approx(1.0)
    assert policy.stimulus(a, 1.0) < policy.stimulus(a, 2.0) < policy.stimulus(a, 5.0)
    assert policy.stimulus(b, 1.0) > policy.stimulus(a, 1.0)  # priority drives growth
    assert policy.stimulus(a, 1e6) == 8.0  # bounded by s_max
    policy.add_agent(agent("x"), 0.0)
    policy.claim("a", "x", 0.0)
    policy.post([TaskSpec("c", depends_on=("a",))], 0.0)
    policy.on_task_finished("a", "x", True, 2.0)
    c = policy.board.get("c")
    assert policy.stimulus(c, 2.0) == pytest.approx(1.0 + 3.0)  # boosted when its dependency ended


def test_high_thresholds_decline_and_abstaining_raises_them() -> None:
    params = SwarmParams(theta_noise=0, theta_unskilled=30.0, theta_max=30.0, s0=0.5, growth=0.1)
    policy = SwarmPolicy(params)
    policy.add_agent(agent("docs", "docs"), 0.0)
    policy.post([TaskSpec("t", ("python",))], 0.0)
    rng = random.Random(4)
    decision = policy.choose("docs", 0.0, rng)
    assert isinstance(decision, Idle)
    assert decision.retry_at is not None
    assert decision.retry_at > 0
    assert policy.thresholds("docs")["python"] == 30.0  # clipped at theta_max
    policy.add_agent(agent("py", "python"), 0.0)
    before = policy.thresholds("py")["python"]
    policy.on_abstain("py", "t")
    assert policy.thresholds("py")["python"] == before + params.abstain_penalty


def test_doing_lowers_the_threshold_and_not_doing_raises_it() -> None:
    policy = SwarmPolicy(SwarmParams(theta_noise=0, learn=0.5, forget=0.1))
    policy.add_agent(agent("x"), 0.0)
    policy.post([TaskSpec("p", ("python",)), TaskSpec("d", ("docs",))], 0.0)
    theta0 = policy.thresholds("x")
    policy.claim("p", "x", 0.0)
    policy.on_task_finished("p", "x", True, 1.0)
    theta1 = policy.thresholds("x")
    assert theta1["python"] == max(0.5, theta0["python"] - 0.5)
    assert theta1["docs"] == pytest.approx(theta0["docs"] + 0.1)


def test_large_tasks_are_decomposed() -> None:
    policy = SwarmPolicy(SwarmParams(decompose_above=2.0, theta_noise=0, s0=20.0), seed=0)
    policy.add_agent(agent("x"), 0.0)
    policy.post([TaskSpec("big", effort=7.0)], 0.0)
    decision = policy.choose("x", 0.0, random.Random(0))
    assert decision == Decompose("big", 4)
    result = simulate([TaskSpec("big", effort=7.0)], [agent("x"), agent("y")], "swarm", seed=1,
                      swarm=SwarmParams(decompose_above=2.0))
    assert result.all_done
    assert result.decompositions == 1
    assert result.tasks == 5


def test_idle_agents_on_an_empty_board_are_not_woken() -> None:
    policy = SwarmPolicy()
    for i in range(50):
        policy.add_agent(agent(f"a{i}"), 0.0)
    rng = random.Random(0)
    assert all(policy.choose(f"a{i}", 0.0, rng) == Idle(None) for i in range(50))
    assert policy.drain_wakes() == []
    policy.post([TaskSpec("t")], 5.0)
    assert len(policy.drain_wakes()) == policy.params.wake_fanout  # only a few wake for one task


def test_same_seed_same_decisions() -> None:
    def run(seed: int) -> list[object]:
        policy = SwarmPolicy(seed=seed)
        for i in range(5):
            policy.add_agent(agent(f"a{i}", ("x", "y")[i % 2]), 0.0)
        policy.post([TaskSpec(f"t{i}", (("x", "y")[i % 3 % 2],)) for i in range(20)], 0.0)
        rng = random.Random(seed)
        return [policy.choose(f"a{i}", 0.1 * i, rng) for i in range(5)]

    assert run(3) == run(3)


def _specialisation_run(seed: int) -> dict[str, float]:
    """Twelve identical agents, three skills, tasks arriving at 85% of capacity."""
    rng = random.Random(seed)
    skills = ("a", "b", "c")
    tasks = [TaskSpec(f"t{i}", (rng.choice(skills),), 1, rng.uniform(1, 3)) for i in range(900)]
    arrivals = {t.id: i * 2.0 / 12 / 0.85 for i, t in enumerate(tasks)}
    agents = [agent(f"x{i}") for i in range(12)]
    result = simulate(tasks, agents, "swarm", seed=seed, arrivals=arrivals)
    assert result.all_done
    assert result.thresholds is not None
    assert result.done_by is not None
    shares = {}
    for skill in skills:
        by_theta = sorted(agents, key=lambda a: result.thresholds[a.id][skill])  # type: ignore[index]
        spread = [result.thresholds[a.id][skill] for a in by_theta]  # type: ignore[index]
        assert spread[-1] - spread[0] > 5.0, f"thresholds for {skill} did not diverge: {spread}"
        total = sum(d.get(skill, 0) for d in result.done_by.values())
        lowest = sum(result.done_by[a.id].get(skill, 0) for a in by_theta[:6])
        shares[skill] = lowest / total
    return shares


@pytest.mark.parametrize("seed", [3, 11])
def test_specialists_emerge_from_identical_agents(seed: int) -> None:
    shares = _specialisation_run(seed)
    # The half of the agents with the lowest threshold for a skill did most of its tasks.
    assert all(share > 0.6 for share in shares.values()), shares
