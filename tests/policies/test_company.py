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


# -- the company rules the simulator and the live engine both ask ---------------------------------

def test_the_acting_root_and_who_takes_over_follow_the_org_chart() -> None:
    from ruflo.policies import acting_root, nearest_live_manager, working_owner

    org = OrgChart(three_level_org())
    everyone = lambda _agent: True  # noqa: E731
    assert acting_root(org, everyone) == "ceo"
    assert nearest_live_manager(org, "py1", everyone) == "cto"
    assert working_owner(org, "py1", everyone) == "py1"

    without_cto = lambda agent: agent != "cto"  # noqa: E731
    assert nearest_live_manager(org, "py1", without_cto) == "ceo"
    assert working_owner(org, "cto", without_cto) == "ceo"

    without_ceo = lambda agent: agent != "ceo"  # noqa: E731
    assert acting_root(org, without_ceo) == "cpo", "the highest live agent, then by id"
    assert nearest_live_manager(org, "cto", without_ceo) == "cpo"
    assert nearest_live_manager(org, "cpo", without_ceo) is None, "it acts as root itself"
    assert acting_root(org, lambda _agent: False) is None


def test_load_counts_a_ticket_for_its_owner_and_every_manager_above() -> None:
    from ruflo.policies import part_load

    org = OrgChart(three_level_org())
    load = part_load(org, [("py1", 2.0), ("writer", 1.0), ("cto", 0.5)])
    assert load["py1"] == 2.0
    assert load["cto"] == 2.5
    assert load["cpo"] == 1.0
    assert load["ceo"] == 3.5
    assert load["py2"] == 0.0


def test_a_ticket_is_delegated_waits_or_is_done_as_the_rules_say() -> None:
    from ruflo.policies import AwaitApproval, TicketView

    policy = CompanyPolicy(OrgChart(three_level_org()))
    alive = lambda _agent: True  # noqa: E731
    python = TicketView("t", ("python",))
    assert policy.decide_ticket("ceo", python, alive, {}) == Delegate((("t", "cto"),))
    assert policy.decide_ticket("cto", python, alive, {"py1": 1.0}) == Delegate((("t", "py2"),))
    assert policy.decide_ticket("py1", python, alive, {}) == Take("t"), "no reports: do it"
    deep = TicketView("t", ("python",), depth=policy.params.max_depth)
    assert policy.decide_ticket("cto", deep, alive, {}) == Take("t")
    split = TicketView("t", ("python",), split=True)
    assert policy.decide_ticket("cto", split, alive, {}) == Take("t"), "it integrates"
    escalated = TicketView("t", ("python",), depth=9, escalated=True, escalated_by="py1")
    assert policy.decide_ticket("cto", escalated, alive, {}) == Delegate((("t", "py2"),)), \
        "a manager decides about an escalated ticket at any depth, not handing it back"
    waiting = TicketView("t", ("python",), approval="a1")
    assert policy.decide_ticket("ceo", waiting, alive, {}) == AwaitApproval("t", "a1")

    def may_hire(view: TicketView, used: int | None) -> bool:
        decision = policy.decide_ticket("ceo", view, alive, {}, hires_used=used)
        assert isinstance(decision, Delegate)
        return decision.may_hire

    assert may_hire(python, 0)
    assert not may_hire(python, policy.params.max_hires), "the hive's hires are used up"
    assert not may_hire(TicketView("t", ("python",), hire_rejected=True), 0)
    assert not may_hire(python, None), "the simulator does not hire"


def test_escalation_goes_up_to_people_from_the_top_and_gives_up_at_the_cap() -> None:
    from ruflo.policies import Escalate, TicketView

    policy = CompanyPolicy(OrgChart(three_level_org()))
    alive = lambda agent: agent != "cto"  # noqa: E731
    assert policy.escalation("py1", TicketView("t"), alive) == Escalate("t", "ceo")
    assert policy.escalation("ceo", TicketView("t"), alive) == Escalate("t", None)
    worn = TicketView("t", escalations=policy.params.max_attempts)
    assert policy.escalation("py1", worn, alive) == Escalate("t", None, give_up=True)
