"""Org chart files for company mode: a valid one loads; a cycle, an unknown manager, two roots,
a duplicate name or a typo'd approval policy are refused with a message naming the problem, and
the engine refuses a stored hive whose agents do not form a tree, changing nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ruflo.engine.company import CompanyEngine, parse_plan_answer
from ruflo.errors import PolicyError
from ruflo.model import Agent, Hive, HiveStatus, Mode
from ruflo.policies.company import OrgChart, auto_decision, review_delegate
from ruflo.store.sql import SqlStore
from ruflo.workload import load_org, parse_org

GOOD = """
name: acme
budget: {max_tokens: 50000}
approvals: {budget_override: approve, hire: ask}
max_depth: 3
max_hires: 4
agents:
  - {name: ceo, role: ceo, capabilities: plans the work}
  - {name: lead, reports_to: ceo, capabilities: python backend}
  - {name: dev, reports_to: lead, skills: python, budget: {max_tokens: 1000}}
"""


def test_a_valid_org_file_loads_with_budget_policy_and_depth(tmp_path: Path) -> None:
    path = tmp_path / "org.yaml"
    path.write_text(GOOD)
    org = load_org(path)
    assert [a.name for a in org.agents] == ["ceo", "lead", "dev"]
    assert org.agents[2].reports_to == "lead"
    assert org.agents[2].budget.max_tokens == 1000
    assert org.budget.max_tokens == 50000
    assert org.max_depth == 3
    assert org.max_hires == 4
    assert org.approvals == {"budget_override": "approve", "hire": "ask"}
    assert parse_org("agents: [{name: ceo}]").max_hires == 2  # the default


@pytest.mark.parametrize(("agents", "message"), [
    ("[{name: a, reports_to: c}, {name: b, reports_to: a}, {name: c, reports_to: b}]",
     "reporting cycle: a → c → b → a"),
    ("[{name: ceo}, {name: dev, reports_to: boss}]",
     "agent 'dev' reports to 'boss', who is not in the org"),
    ("[{name: ceo}, {name: cto}, {name: dev, reports_to: ceo}]",
     "2 roots ('ceo', 'cto')"),
    ("[{name: ceo}, {name: ceo, reports_to: ceo}]", "duplicate name 'ceo'"),
    ("[{name: ceo, reports_to: ceo}]", "reports to itself"),
    ("[]", "agents"),
])
def test_invalid_org_charts_are_refused_with_the_problem(agents: str, message: str) -> None:
    with pytest.raises(PolicyError) as refused:
        parse_org(f"agents: {agents}\n", source=Path("org.yaml"))
    assert message in str(refused.value)
    assert str(refused.value).startswith("org.yaml")


def test_a_typo_in_the_auto_approval_policy_is_refused() -> None:
    with pytest.raises(PolicyError, match="approvals"):
        parse_org("approvals: {budget_override: yes-please}\nagents: [{name: ceo}]\n")
    with pytest.raises(PolicyError, match="approve, reject or ask"):
        auto_decision({"approvals": {"budget_override": "always"}}, "budget_override")
    assert auto_decision({}, "budget_override") is None
    assert auto_decision({"approvals": {"strategy": "reject"}}, "strategy") == "reject"
    assert auto_decision({"approvals": {"strategy": "reject"}}, "hire") is None


async def test_the_engine_refuses_a_stored_hive_whose_org_has_a_cycle(
        store: SqlStore, tmp_path: Path) -> None:
    hive = Hive(id="bad", name="bad", mode=Mode.COMPANY, objective="x",
                workspace=str(tmp_path / "ws"))
    store.create_hive(hive, agents=[
        Agent(id="a", hive_id="bad", name="a", reports_to="b"),
        Agent(id="b", hive_id="bad", name="b", reports_to="a")])
    with pytest.raises(PolicyError, match="reporting cycle"):
        await CompanyEngine(store, "bad").run()
    assert store.get_hive("bad").status is HiveStatus.RUNNING
    assert not store.list_tasks("bad"), "nothing was posted"


def member(name: str, boss: str | None, *skills: str) -> Agent:
    return Agent(id=name, hive_id="h", name=name, reports_to=boss, skills=skills)


def test_a_manager_s_choice_is_checked_against_the_org_and_capabilities() -> None:
    org = OrgChart([member("ceo", None), member("lead", "ceo"), member("py", "lead", "python"),
                    member("doc", "lead", "docs"), member("far", "ceo", "python")])
    assert review_delegate(org, "lead", "py", ["python"], {}) == ("py", None)
    assert review_delegate(org, "lead", "PY", ["python"], {}) == ("py", None)
    chosen, why = review_delegate(org, "lead", "doc", ["python"], {})
    assert chosen == "py"
    assert why is not None
    assert "declares none" in why
    chosen, why = review_delegate(org, "lead", "far", ["python"], {})
    assert chosen == "py"
    assert why is not None
    assert "not a direct report" in why
    chosen, why = review_delegate(org, "lead", "py", ["python"], {}, exclude="py")
    assert chosen == "doc"
    assert why is not None
    assert "escalated" in why
    chosen, why = review_delegate(org, "lead", "py", ["python"], {},
                                  alive=lambda a: a != "py")
    assert chosen == "doc"
    assert why is not None
    assert review_delegate(org, "py", "x", ["python"], {}) == (None, None)


@pytest.mark.parametrize(("answer", "message"), [
    ("not json", "not JSON"),
    ('{"action": "fire everyone"}', "action"),
    ('{"action": "split", "tickets": []}', "between 1 and 3"),
    ('{"action": "split", "tickets": [{"title": "a"}, {"title": "b"}, {"title": "c"}, '
     '{"title": "d"}]}', "between 1 and 3"),
    ('{"action": "assign"}', "assign needs"),
    ('{"action": "escalate"}', "escalate needs"),
    ('{"action": "split", "tickets": [{"title": "a", "depends_on": [0]}]}', "index 0"),
    ('{"action": "split", "tickets": [{"title": "a", "depends_on": ["zz"]}]}', "'zz'"),
])
def test_unusable_plans_are_refused_with_the_reason(answer: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_plan_answer(answer, max_tickets=3)


HIRE = {"name": "rustacean", "capabilities": "writes rust", "skills": ["rust"]}


@pytest.mark.parametrize(("answer", "may_hire", "message"), [
    ({"action": "hire", "hire": HIRE, "reason": "no rust here"}, False, "hiring is not open"),
    ({"action": "hire", "reason": "no rust here"}, True, "hire needs the hire object"),
    ({"action": "hire", "hire": HIRE}, True, "hire needs the reason"),
    ({"action": "hire", "hire": {**HIRE, "skills": []}, "reason": "r"}, True, "skills"),
    ({"action": "hire", "hire": {**HIRE, "skills": [" "]}, "reason": "r"}, True, "one skill"),
    ({"action": "hire", "hire": {**HIRE, "capabilities": ""}, "reason": "r"}, True,
     "capabilities"),
])
def test_unusable_hires_are_refused_with_the_reason(answer: dict[str, object], may_hire: bool,
                                                    message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_plan_answer(json.dumps(answer), max_tickets=3, may_hire=may_hire)
    plan = parse_plan_answer(json.dumps({"action": "hire", "hire": HIRE, "reason": "no rust"}),
                             max_tickets=3, may_hire=True)
    assert plan.hire is not None
    assert (plan.hire.name, plan.hire.skills) == ("rustacean", ["rust"])


@pytest.mark.parametrize("bound", ["max_hires: -1", "max_hires: 51", "max_hires: many"])
def test_a_bad_hire_bound_is_refused(bound: str) -> None:
    with pytest.raises(PolicyError, match="max_hires"):
        parse_org(f"{bound}\nagents: [{{name: ceo}}]\n", source=Path("org.yaml"))


def test_a_fenced_plan_is_read() -> None:
    plan = parse_plan_answer('```json\n{"action": "split", "tickets": [{"title": "a"}, '
                             '{"title": "b", "depends_on": ["a", 0]}]}\n```', max_tickets=3)
    assert [t.title for t in plan.tickets] == ["a", "b"]
