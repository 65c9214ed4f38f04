"""Hiring in live company mode: a manager whose reports lack a ticket's skills asks for a new
report through a `hire` approval; approved, the agent joins under it and does the ticket;
rejected, the manager decides without one and is not offered hiring for that ticket again; the
run's hires are bounded; a decision taken while no engine ran is carried out at the next start."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from ruflo.engine.approvals import AUTO_POLICY, decide
from ruflo.engine.company import company_report
from ruflo.gateway.client import GatewayClient
from ruflo.gateway.scripted import ScriptedGateway
from ruflo.model import ApprovalKind, ApprovalStatus, HiveStatus, TaskState
from ruflo.store.sql import SqlStore
from waiting import stays, until

from .conftest import KEY, at_rest, engine, make_company, plan_rule, ruflo, work_rules

OBJECTIVE = "Ship the greeter"
VERIFY = "grep -q 'fn main' greeter.rs"
RUSTACEAN = {"name": "rustacean", "title": "Rust engineer", "capabilities": "writes rust",
             "skills": ["rust"]}


def hiring_script(server: ScriptedGateway, *, after_rejection: str | None = None) -> None:
    """The ceo hands the objective to eng-lead, whose reports only write python: eng-lead asks
    to hire a rust engineer, who writes greeter.rs. `after_rejection` is what eng-lead does
    when it plans the ticket again ("self": it writes the file itself)."""
    server.add_rules(
        plan_rule("ceo", OBJECTIVE, action="assign", report="eng-lead", note="a rust greeter"),
        plan_rule("eng-lead", OBJECTIVE, action="hire", hire=RUSTACEAN,
                  reason="nobody here writes rust", times=1),
        *work_rules("rustacean", OBJECTIVE, "greeter.rs", "fn main() {}"))
    if after_rejection is not None:
        server.add_rules(plan_rule("eng-lead", OBJECTIVE, action=after_rejection),
                         *work_rules("eng-lead", OBJECTIVE, "greeter.rs", "fn main() {}"))


def plan_requests(server: ScriptedGateway, manager: str) -> list[dict[str, Any]]:
    return [r for r in server.requests
            if r["messages"][0]["content"].startswith(f"You are {manager},") and r["tools"]
            and r["tools"][0]["function"]["name"] == "plan"]


def offers_hire(request: dict[str, Any]) -> bool:
    action = request["tools"][0]["function"]["parameters"]["properties"]["action"]
    return "hire" in action["enum"] and "- hire:" in request["messages"][0]["content"]


async def test_an_approved_hire_joins_under_its_manager_and_does_the_ticket(
        any_store: SqlStore, gateway_server: ScriptedGateway, tmp_path: Path) -> None:
    store = any_store
    client = GatewayClient(gateway_server.base_url, KEY, store=store)
    hiring_script(gateway_server)
    hive = make_company(store, tmp_path, objective=OBJECTIVE, config={"verify": VERIFY})
    lead = f"{hive.id}-eng-lead"
    try:
        running = asyncio.create_task(engine(store, hive.id, client).run())
        await until(lambda: store.list_approvals(hive_id=hive.id))
        [approval] = store.list_approvals(hive_id=hive.id)
        assert approval.kind is ApprovalKind.HIRE
        assert approval.status is ApprovalStatus.PENDING
        assert approval.agent_id == lead
        assert "eng-lead asks to hire rustacean (Rust engineer; skills: rust)" in approval.subject
        assert "nobody here writes rust" in approval.subject
        [objective] = store.list_tasks(hive.id)
        await until(lambda: store.get_task(objective.id).state is TaskState.BLOCKED)
        assert store.get_task(objective.id).blocked_on == \
            f"approval {approval.id}: hire rustacean"
        assert [a.name for a in store.list_agents(hive.id)].count("rustacean") == 0
        await until(lambda: at_rest(store, hive.id), what="an agent still works")
        calls = gateway_server.chat_count
        await stays(lambda: gateway_server.chat_count == calls,
                    what="somebody worked while the hire waits")
        assert not running.done(), "a pending approval keeps the hive running"

        decide(store, approval.id, ApprovalStatus.APPROVED, decided_by="person:test")
        final = await asyncio.wait_for(running, 60)
    finally:
        await client.aclose()

    assert final.status is HiveStatus.DONE, final.pause_reason
    [hired] = [a for a in store.list_agents(hive.id) if a.name == "rustacean"]
    assert hired.reports_to == lead
    assert hired.skills == ("rust",)
    assert hired.title == "Rust engineer"
    assert (Path(hive.workspace) / "greeter.rs").read_text() == "fn main() {}"
    [requested] = store.events(hive.id, kinds=["hire_requested"])
    assert requested.agent_id == lead
    assert requested.data["approval_id"] == approval.id
    [joined] = store.events(hive.id, kinds=["agent_hired"])
    assert joined.agent_id == hired.id
    assert joined.data["reports_to"] == lead
    handed = [e for e in store.events(hive.id, kinds=["ticket_delegated"])
              if e.data["owner"] == hired.id]
    assert [(e.agent_id, e.data["chosen_by"]) for e in handed] == [(lead, "hire")]
    done_by = {e.task_id: e.agent_id for e in store.events(hive.id, kinds=["task_done"])}
    assert done_by == {objective.id: hired.id}
    report = company_report(store, hive.id)
    assert report["hires"] == 1
    assert [(a["kind"], a["status"]) for a in report["approvals"]] == [("hire", "approved")]


async def test_a_rejected_hire_goes_back_to_the_manager_who_decides_without_one(
        store: SqlStore, client: GatewayClient, gateway_server: ScriptedGateway,
        tmp_path: Path) -> None:
    hiring_script(gateway_server, after_rejection="self")
    hive = make_company(store, tmp_path, objective=OBJECTIVE,
                        config={"verify": VERIFY, "approvals": {"hire": "reject"}})
    lead = f"{hive.id}-eng-lead"

    final = await asyncio.wait_for(engine(store, hive.id, client).run(), 60)

    assert final.status is HiveStatus.DONE, final.pause_reason
    [approval] = store.list_approvals(hive_id=hive.id)
    assert (approval.kind, approval.status, approval.decided_by) == \
        (ApprovalKind.HIRE, ApprovalStatus.REJECTED, AUTO_POLICY)
    assert "rustacean" not in [a.name for a in store.list_agents(hive.id)]
    assert not store.events(hive.id, kinds=["agent_hired"])
    [objective] = store.list_tasks(hive.id)
    assert f"Hiring for this ticket was rejected by {AUTO_POLICY}" in objective.description
    unblocked = [e.data["how"] for e in store.events(hive.id, kinds=["ticket_unblocked"])]
    assert "hire rejected" in unblocked
    done_by = {e.task_id: e.agent_id for e in store.events(hive.id, kinds=["task_done"])}
    assert done_by == {objective.id: lead}
    first, again = plan_requests(gateway_server, "eng-lead")
    assert offers_hire(first)
    assert not offers_hire(again), "hiring is not offered again for a rejected ticket"
    assert "Hiring for this ticket was rejected" in again["messages"][1]["content"]


async def test_hires_are_bounded_by_max_hires(
        store: SqlStore, client: GatewayClient, gateway_server: ScriptedGateway,
        tmp_path: Path) -> None:
    """With no hires left, hiring is not offered, and a manager asking anyway is told so."""
    hiring_script(gateway_server, after_rejection="self")
    hive = make_company(store, tmp_path, objective=OBJECTIVE,
                        config={"verify": VERIFY, "max_hires": 0})

    final = await asyncio.wait_for(engine(store, hive.id, client).run(), 60)

    assert final.status is HiveStatus.DONE, final.pause_reason
    assert not store.list_approvals(hive_id=hive.id)
    [refused] = store.events(hive.id, kinds=["plan_refused"])
    assert refused.data["error"].startswith("hiring is not open for this ticket")
    assert not any(offers_hire(r) for r in plan_requests(gateway_server, "eng-lead"))
    assert "rustacean" not in [a.name for a in store.list_agents(hive.id)]


async def test_a_hire_approved_while_no_engine_ran_is_carried_out_at_the_next_start(
        store: SqlStore, client: GatewayClient, gateway_server: ScriptedGateway,
        tmp_path: Path) -> None:
    hiring_script(gateway_server)
    hive = make_company(store, tmp_path, objective=OBJECTIVE, config={"verify": VERIFY})
    first = engine(store, hive.id, client)
    running = asyncio.create_task(first.run())
    await until(lambda: store.list_approvals(hive_id=hive.id))
    [approval] = store.list_approvals(hive_id=hive.id)
    first.stop()
    await asyncio.wait_for(running, 30)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENAI_", "LITELLM_", "RUFLO_", "DATABASE_"))}
    env.update(RUFLO_DATA_DIR=str(tmp_path / "data"), XDG_CONFIG_HOME=str(tmp_path / "cfg"))
    approved = await ruflo(env, "approval", "approve", approval.id[:12], "--by", "alice")
    assert approved.returncode == 0, approved.stderr

    final = await asyncio.wait_for(engine(store, hive.id, client).run(), 60)

    assert final.status is HiveStatus.DONE, final.pause_reason
    hired = [a for a in store.list_agents(hive.id) if a.name == "rustacean"]
    assert len(hired) == 1
    assert len(store.events(hive.id, kinds=["agent_hired"])) == 1
    [objective] = store.list_tasks(hive.id)
    done_by = {e.task_id: e.agent_id for e in store.events(hive.id, kinds=["task_done"])}
    assert done_by == {objective.id: hired[0].id}
    assert store.get_approval(approval.id).decided_by == "alice"


async def test_a_hire_named_like_someone_in_the_org_gets_a_name_of_its_own(
        store: SqlStore, client: GatewayClient, gateway_server: ScriptedGateway,
        tmp_path: Path) -> None:
    gateway_server.add_rules(
        plan_rule("ceo", OBJECTIVE, action="assign", report="eng-lead"),
        plan_rule("eng-lead", OBJECTIVE, action="hire", reason="nobody here writes rust",
                  hire={**RUSTACEAN, "name": "dev-1"}))
    hive = make_company(store, tmp_path, objective=OBJECTIVE, config={"verify": VERIFY})
    first = engine(store, hive.id, client)
    running = asyncio.create_task(first.run())
    await until(lambda: store.list_approvals(hive_id=hive.id))
    first.stop()
    await asyncio.wait_for(running, 30)
    [approval] = store.list_approvals(hive_id=hive.id)
    assert approval.data["hire"]["name"] == "dev-1 (2)"
    assert "asks to hire dev-1 (2)" in approval.subject
    [requested] = store.events(hive.id, kinds=["hire_requested"])
    assert requested.data["name"] == "dev-1 (2)"
