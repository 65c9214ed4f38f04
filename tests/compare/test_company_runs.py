"""The compare runner's company parts without a gateway: the generated org and the workload's own,
the objective ticket the root plans, and how a company run's claims are measured (planning and
hand-overs are coordination, not duplicate work or thrash)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from ruflo.compare.metrics import run_metrics, timeline
from ruflo.compare.runs import company_figures, live_agents, objective_ticket
from ruflo.compare.workloads import builtin_path
from ruflo.model import CostKind, Event, LedgerEntry, Mode, Task, TaskState
from ruflo.policies.company import OrgChart
from ruflo.workload import load_workload, parse_workload

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def test_a_company_without_an_org_gets_a_root_a_lead_and_the_swarm_s_engineers() -> None:
    workload = load_workload(builtin_path("feature"))
    swarm = live_agents(workload, 4, "h1234567890", Mode.SWARM)
    company = live_agents(workload, 4, "h1234567890", Mode.COMPANY)

    assert [a.name for a in swarm] == ["python-1", "python-2", "tests-1", "docs-1"]
    assert all(a.reports_to is None for a in swarm)
    assert [a.name for a in company] == ["ceo", "lead", *(a.name for a in swarm)]
    assert [a.skills for a in company[2:]] == [a.skills for a in swarm]
    org = OrgChart(company)
    assert org.agents[org.root].name == "ceo"
    lead = company[1]
    assert lead.reports_to == org.root
    assert org.reports[lead.id] == [a.id for a in company[2:]]
    assert {a.role for a in company[2:]} == {"engineer"}
    assert all(a.id.startswith("h1234567.") and a.hive_id == "h1234567890" for a in company)
    assert "python" in company[2].capabilities


def test_a_workload_s_own_org_is_kept_and_agents_without_one_go_under_a_generated_lead() -> None:
    with_org = parse_workload(
        "name: w\nobjective: o\ntasks: [{id: t}]\nagents:\n  - {name: boss}\n"
        "  - {name: dev, reports_to: boss, skills: [python]}\n")
    crew = live_agents(with_org, 9, "abcdefgh00", Mode.COMPANY)
    assert [(a.name, a.reports_to) for a in crew] == [("boss", None),
                                                     ("dev", "abcdefgh.boss")]

    # Agents named like the generated managers: the managers take free names.
    flat = parse_workload("name: w\nobjective: o\ntasks: [{id: t}]\nagents:\n"
                          "  - {name: ceo}\n  - {name: lead}\n")
    crew = live_agents(flat, 9, "abcdefgh00", Mode.COMPANY)
    assert [a.name for a in crew] == ["ceo-2", "lead-2", "ceo", "lead"]
    OrgChart(crew)


def test_the_objective_ticket_carries_the_workload_s_breakdown_and_verify() -> None:
    workload = load_workload(builtin_path("ticket"))
    ticket = objective_ticket(workload, "abcdefgh00", "abcdefgh.ceo")
    assert ticket.id == "abcdefgh.objective"
    assert ticket.title.startswith("Add a --shout flag to the greet command line")
    assert ticket.verify == workload.verify
    assert ticket.assignee == "abcdefgh.ceo"
    assert ticket.skills == ("python", "docs")
    assert ticket.effort == 3
    assert "- Add the --shout flag [python]: In greet.py" in ticket.description
    assert "- Document the --shout flag [docs] (after: Add the --shout flag)" in \
        ticket.description


def _event(seq: int, at: float, event_kind: str, task: str | None = None,
           agent: str | None = None, **data: object) -> Event:
    return Event(seq=seq, hive_id="h", kind=event_kind, ts=T0 + timedelta(seconds=at),
                 agent_id=agent, task_id=task, data=dict(data))


def test_planning_and_hand_overs_are_coordination_not_duplicate_work_or_thrash() -> None:
    events = [
        _event(1, 0, "task_posted", "o", depends_on=[]),
        _event(2, 0, "engine_started"),
        _event(3, 1, "task_claimed", "o", "ceo"),
        _event(4, 2, "ticket_planned", "o", "ceo", tokens=90),
        _event(5, 2, "task_posted", "o.1", "ceo", depends_on=[]),
        _event(6, 2, "task_updated", "o", fields={"state": "blocked"}),
        _event(7, 2, "ticket_blocked", "o", "ceo"),
        _event(8, 2, "ticket_delegated", "o.1", "ceo", owner_name="lead",
               chosen_by="llm"),
        _event(9, 3, "task_claimed", "o.1", "lead"),
        _event(10, 4, "task_released", "o.1", "lead", reason="delegated"),
        _event(11, 4, "ticket_delegated", "o.1", "lead", owner_name="dev",
               chosen_by="capability check"),
        _event(12, 5, "task_claimed", "o.1", "dev"),
        _event(13, 6, "task_released", "o.1", "dev", reason="blocked: no spec"),
        _event(14, 6, "ticket_escalated", "o.1", "dev"),
        _event(15, 7, "task_claimed", "o.1", "dev"),
        _event(16, 9, "task_done", "o.1", "dev"),
        _event(17, 9, "task_updated", "o", fields={"state": "open"}),
        _event(18, 10, "task_claimed", "o", "ceo"),
        _event(19, 11, "task_done", "o", "ceo"),
        _event(20, 12, "approval_requested", approval_id="p1", kind="strategy", subject="s"),
        _event(21, 12, "approval_decided", approval_id="p1", status="rejected",
               decided_by="auto-policy (hive config approvals)"),
    ]
    ledger = [
        LedgerEntry(1, T0 + timedelta(seconds=1.5), "m", 80, 10, 0.01, "gateway",
                    kind=CostKind.COORDINATION, agent_id="ceo", task_id="o"),
        LedgerEntry(2, T0 + timedelta(seconds=3.5), "m", 40, 10, 0.01, "gateway",
                    kind=CostKind.COORDINATION, agent_id="lead", task_id="o.1"),
        LedgerEntry(3, T0 + timedelta(seconds=5.5), "m", 100, 0, 0.02, "gateway",
                    agent_id="dev", task_id="o.1"),
        LedgerEntry(4, T0 + timedelta(seconds=8), "m", 100, 20, 0.02, "gateway",
                    agent_id="dev", task_id="o.1"),
        LedgerEntry(5, T0 + timedelta(seconds=10.5), "m", 30, 0, 0.01, "gateway",
                    agent_id="ceo", task_id="o"),
    ]
    tasks = [Task(id="o", hive_id="h", title="o", state=TaskState.DONE),
             Task(id="o.1", hive_id="h", title="o.1", parent_id="o", state=TaskState.DONE)]
    m = run_metrics(events, ledger, tasks)
    assert (m.coordination_tokens, m.work_tokens) == (140, 250)
    assert m.attempts == 5
    # Only the engineer's blocked try is work done again; planning and the hand-over are not.
    assert m.duplicate_attempts == 1
    assert m.duplicate_tokens == 100
    assert m.released_claims == 1
    assert m.task_switches == 0
    assert [b["outcome"] for b in timeline(events)] == ["split", "delegated", "released",
                                                        "done", "done"]
    figures = company_figures(events)
    assert (figures["plans"], figures["delegations"], figures["corrected_delegations"],
            figures["escalations"]) == (1, 2, 1, 1)
    assert figures["approvals"] == [{"id": "p1", "kind": "strategy", "subject": "s",
                                     "status": "rejected",
                                     "decided_by": "auto-policy (hive config approvals)"}]


def test_the_built_in_scripts_plan_every_task_of_their_workload() -> None:
    """Each built-in workload's company plan names exactly its tasks, in order, with their
    skills, dependencies and verify commands (so a scripted company does the same work)."""
    import yaml

    for name in ("ticket", "bug", "feature"):
        workload = load_workload(builtin_path(name))
        script = yaml.safe_load((Path(builtin_path(name)).parent / "gateway.yaml").read_text())
        [plan] = [r for r in script["rules"] if r["name"] == f"{name}-company-plan"]
        tickets = plan["reply"]["tool_calls"][0]["arguments"]["tickets"]
        assert [t["title"] for t in tickets] == [t.title for t in workload.tasks]
        for ticket, task in zip(tickets, workload.tasks, strict=True):
            assert tuple(ticket["skills"]) == task.skills
            assert ticket["verify"] == task.verify
            assert ticket["description"] == task.description
            after = [workload.tasks[i].id for i in ticket.get("depends_on", [])]
            assert [d.split(".")[-1] for d in task.depends_on] == after
