"""Company mode: org chart validation, the delegation heuristic, escalation and lost managers."""

from __future__ import annotations

import random

import pytest

from ruflo.engine.simulate import KillPlan, SimParams, simulate
from ruflo.errors import PolicyError
from ruflo.model import Agent
from ruflo.policies import (
    CompanyPolicy,
    Delegate,
    Idle,
    OrgChart,
    Take,
    TaskSpec,
    choose_delegate,
)


def member(name: str, boss: str | None, *skills: str, capabilities: str = "") -> Agent:
    return Agent(id=name, hive_id="h", name=name, reports_to=boss, skills=skills,
                 capabilities=capabilities)


def three_level_org() -> list[Agent]:
    return [
        member("ceo", None),
        member("cto", "ceo", capabilities="backend and infrastructure"),
        member("cpo", "ceo", capabilities="product, docs"),
        member("py1", "cto", "python"),
        member("py2", "cto", "python"),
        member("ops", "cto", "ops"),
        member("writer", "cpo", "docs"),
    ]


def test_a_valid_org_chart_knows_root_depths_and_chains() -> None:
    org = OrgChart(three_level_org())
    assert org.root == "ceo"
    assert org.depth["py1"] == 2
    assert org.chain("py1") == ["py1", "cto", "ceo"]
    assert org.subtree_skills["cto"] == {"python", "ops"}


@pytest.mark.parametrize(
    ("agents", "message"),
    [
        ([member("a", "b"), member("b", "a"), member("root", None)], "reporting cycle: a → b → a"),
        ([member("a", None), member("b", "ghost")], "reports to 'ghost', who is not in the org"),
        ([member("a", None), member("b", None)], "2 roots \\('a', 'b'\\)"),
        ([member("a", "a")], "reports to itself"),
        ([member("a", "b"), member("b", "a")], "cycle"),
        ([], "empty"),
    ],
)
def test_invalid_org_charts_are_refused_with_a_clear_message(
    agents: list[Agent], message: str
) -> None:
    with pytest.raises(PolicyError, match=message):
        OrgChart(agents)


def test_delegation_goes_to_the_matching_report_then_the_least_loaded() -> None:
    org = OrgChart(three_level_org())
    assert choose_delegate(org, "ceo", ("python",), {}) == "cto"
    assert choose_delegate(org, "ceo", ("docs",), {}) == "cpo"
    assert choose_delegate(org, "cto", ("python",), {"py1": 3, "py2": 1}) == "py2"
    # capabilities text counts when nobody declares the skill
    assert choose_delegate(org, "ceo", ("product",), {"cto": 0, "cpo": 5}) == "cpo"
    # a lost manager's reports are adopted by their grandmanager
    assert choose_delegate(org, "ceo", ("python",), {}, alive=lambda a: a != "cto") == "py1"
    assert choose_delegate(org, "py1", ("python",), {}) is None


def test_tickets_flow_down_and_failures_escalate_to_the_manager() -> None:
    org_agents = three_level_org()
    policy = CompanyPolicy(OrgChart(org_agents))
    for a in org_agents:
        policy.add_agent(a, 0.0)
    policy.post([TaskSpec("fix", ("python",))], 0.0)
    assert policy.drain_wakes() == ["ceo"]
    rng = random.Random(0)
    assert policy.choose("ceo", 0.0, rng) == Delegate((("fix", "cto"),))
    policy.on_delegated("ceo", [("fix", "cto")], 0.1)
    assert policy.choose("cto", 0.1, rng) == Delegate((("fix", "py1"),))
    policy.on_delegated("cto", [("fix", "py1")], 0.2)
    assert policy.drain_wakes()[-1] == "py1"
    assert policy.choose("py1", 0.2, rng) == Take("fix")
    policy.claim("fix", "py1", 0.2)
    policy.on_task_finished("fix", "py1", False, 1.0)
    assert policy.escalations == 1
    # the manager re-delegates, to another report than the one that failed
    assert policy.choose("cto", 1.0, rng) == Delegate((("fix", "py2"),))
    assert policy.choose("py1", 1.0, rng) == Idle(None)


def test_a_manager_killed_mid_run_loses_no_work() -> None:
    agents = three_level_org() + [member(f"eng{i}", "cto", "python") for i in range(6)]
    tasks = [TaskSpec(f"t{i}", ("python",) if i % 3 else ("docs",), 1, 2.0) for i in range(60)]
    for victims in (("cto",), ("ceo",), ("cto", "py1", "eng0")):
        result = simulate(tasks, agents, "company", seed=1, kill=KillPlan(0, 3.0, victims),
                          params=SimParams(failure_rate=0.1), record=True)
        assert result.all_done, result
        assert result.killed == len(victims)
        assert result.recovered == result.orphaned
        assert result.escalations > 0
        assert result.coordination_tokens > 0
        assert result.delegations >= len(tasks)
        assert result.timeline is not None
        assert not any(e.agent in victims and e.start > 3.0 for e in result.timeline)
