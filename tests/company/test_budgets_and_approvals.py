"""Budgets and approvals in live company mode: an agent's hard stop opens a budget override and
pauses only that agent (nothing is called while it waits); approving resumes it; a hive's hard
stop pauses the hive until `ruflo approval approve` raises the cap; an explicit auto-approval
policy decides alone and says so in the events and the report."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from ruflo.engine.approvals import AUTO_POLICY, decide
from ruflo.engine.company import company_report
from ruflo.gateway.client import GatewayClient
from ruflo.gateway.scripted import ScriptedGateway
from ruflo.model import (
    AgentStatus,
    Approval,
    ApprovalKind,
    ApprovalStatus,
    Budget,
    HiveStatus,
    TaskState,
)
from ruflo.store.sql import SqlStore
from waiting import stays, until

from .conftest import VERIFY_ALL, at_rest, company_script, engine, make_company, ruflo


async def test_an_agent_hard_stop_opens_an_override_and_approval_resumes_it(
        store: SqlStore, client: GatewayClient, gateway_server: ScriptedGateway,
        tmp_path: Path) -> None:
    company_script(gateway_server)
    # dev-1's first call (220 tokens) passes 80% and the cap; its second is refused.
    hive = make_company(store, tmp_path, config={"verify": VERIFY_ALL},
                        agent_budgets={"dev-1": Budget(max_tokens=200)})
    dev1 = f"{hive.id}-dev-1"
    running = asyncio.create_task(engine(store, hive.id, client).run())
    await until(lambda: store.list_approvals(hive_id=hive.id))
    approval = store.list_approvals(hive_id=hive.id)[0]
    assert approval.kind is ApprovalKind.BUDGET_OVERRIDE
    assert approval.status is ApprovalStatus.PENDING
    assert approval.agent_id == dev1
    assert approval.data["proposed"] == {"max_tokens": 400, "max_cost": None}
    await until(lambda: store.get_agent(dev1).status is AgentStatus.PAUSED)
    warned = store.events(hive.id, kinds=["budget_warning"])
    assert [e.agent_id for e in warned] == [dev1]
    assert [e.agent_id for e in store.events(hive.id, kinds=["budget_exceeded"])] == [dev1]
    # The others finish what does not wait on dev-1; then nothing calls the gateway.
    await until(lambda: any(t.title == "Write the docs" and t.state is TaskState.DONE
                            for t in store.list_tasks(hive.id)))
    await until(lambda: at_rest(store, hive.id), what="an agent still works")
    calls = gateway_server.chat_count
    await stays(lambda: gateway_server.chat_count == calls,
                what="somebody was woken while the approval waits")
    assert not running.done()
    a_py = next(t for t in store.list_tasks(hive.id) if t.title == "Write a.py")
    assert a_py.state is TaskState.OPEN, "the ticket waits for dev-1"
    assert a_py.assignee == dev1

    decide(store, approval.id, ApprovalStatus.APPROVED, decided_by="person:test",
           budget=Budget(max_tokens=5000))
    final = await asyncio.wait_for(running, 60)

    assert final.status is HiveStatus.DONE, final.pause_reason
    assert store.get_agent(dev1).budget == Budget(max_tokens=5000)
    woken = [e for e in store.events(hive.id, kinds=["agent_woken"])
             if e.agent_id == dev1 and e.data["reason"] == "approval decided"]
    assert woken, "the decided approval woke the agent concerned"
    done_by = {e.task_id: e.agent_id for e in store.events(hive.id, kinds=["task_done"])}
    assert done_by[a_py.id] == dev1
    applied = store.events(hive.id, kinds=["approval_applied"])
    assert [e.data["budget"] for e in applied] == [{"max_tokens": 5000, "max_cost": None}]


async def test_a_hive_hard_stop_pauses_it_until_the_cli_approves_the_override(
        store: SqlStore, client: GatewayClient, gateway_server: ScriptedGateway,
        tmp_path: Path) -> None:
    company_script(gateway_server)
    hive = make_company(store, tmp_path, config={"verify": VERIFY_ALL},
                        budget=Budget(max_tokens=1500))

    paused = await asyncio.wait_for(engine(store, hive.id, client).run(), 60)

    assert paused.status is HiveStatus.PAUSED
    assert paused.pause_reason == "budget exceeded"
    assert not store.list_tasks(hive.id, states=[TaskState.CLAIMED]), "claims were released"
    [approval] = store.list_approvals(hive_id=hive.id, status=ApprovalStatus.PENDING)
    assert approval.data["scope"] == "hive"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENAI_", "LITELLM_", "RUFLO_", "DATABASE_"))}
    env.update(RUFLO_DATA_DIR=str(tmp_path / "data"), XDG_CONFIG_HOME=str(tmp_path / "cfg"))
    listed = await ruflo(env, "approval", "list")
    assert listed.returncode == 0, listed.stderr
    assert approval.id[:12] in listed.stdout
    assert "budget_override" in listed.stdout
    approved = await ruflo(env, "approval", "approve", approval.id[:10], "--max-tokens",
                           "100000", "--by", "person:lead")
    assert approved.returncode == 0, approved.stderr
    assert store.get_hive(hive.id).status is HiveStatus.RUNNING
    assert store.get_hive(hive.id).budget == Budget(max_tokens=100000)
    again = await ruflo(env, "approval", "reject", approval.id)
    assert again.returncode == 2
    assert "already approved" in again.stderr
    assert "Traceback" not in again.stderr

    final = await asyncio.wait_for(engine(store, hive.id, client).run(), 60)

    assert final.status is HiveStatus.DONE, final.pause_reason
    assert {t.state for t in store.list_tasks(hive.id)} == {TaskState.DONE}


async def test_an_explicit_auto_approval_policy_decides_and_is_recorded(
        store: SqlStore, client: GatewayClient, gateway_server: ScriptedGateway,
        tmp_path: Path) -> None:
    company_script(gateway_server)
    hive = make_company(store, tmp_path, config={
        "verify": VERIFY_ALL, "approvals": {"budget_override": "approve"}},
        agent_budgets={"dev-1": Budget(max_tokens=200)})

    final = await asyncio.wait_for(engine(store, hive.id, client).run(), 60)

    assert final.status is HiveStatus.DONE, final.pause_reason
    approvals = store.list_approvals(hive_id=hive.id)
    assert approvals
    assert all(a.status is ApprovalStatus.APPROVED and a.decided_by == AUTO_POLICY
                             for a in approvals)
    assert len(store.events(hive.id, kinds=["approval_auto_decided"])) == len(approvals)
    report = company_report(store, hive.id)
    assert report["auto_approval_policy"] == {"budget_override": "approve"}
    assert {a["decided_by"] for a in report["approvals"]} == {AUTO_POLICY}


async def test_decisions_recorded_by_the_server_runner_wake_the_engine(
        store: SqlStore, client: GatewayClient, gateway_server: ScriptedGateway,
        tmp_path: Path) -> None:
    from ruflo.server.hive_runner import StoreRunner

    company_script(gateway_server)
    hive = make_company(store, tmp_path, config={"verify": VERIFY_ALL},
                        agent_budgets={"dev-1": Budget(max_tokens=200)})
    running = asyncio.create_task(engine(store, hive.id, client).run())
    runner = StoreRunner(store)  # what the server's approval route calls: the store only
    decided = 0

    def pending() -> list[Approval]:
        return store.list_approvals(hive_id=hive.id, status=ApprovalStatus.PENDING)

    while await until(lambda: running.done() or pending()) is not True:
        for approval in pending():
            await runner.decide_approval(approval.id, ApprovalStatus.APPROVED,
                                         decided_by="person:web")
            decided += 1
        assert decided <= 5, "the proposed overrides should let the agent finish"

    final = await running
    assert final.status is HiveStatus.DONE, final.pause_reason
    # One override (the cap doubled to 400) is enough: the stopped attempt continues from its
    # journal instead of paying its first turns again (before journals it took 400, then 800).
    assert decided == 1, "the attempt should continue from its journal after the override"
    applied = store.events(hive.id, kinds=["approval_applied"])
    assert [e.data["budget"]["max_tokens"] for e in applied] == [400]
    assert store.get_agent(f"{hive.id}-dev-1").budget.max_tokens == 400
    assert store.events(hive.id, kinds=["attempt_resumed"]), "the attempt should have resumed"
