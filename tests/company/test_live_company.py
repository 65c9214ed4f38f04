"""Live company mode against the real SQLite store and a ScriptedGateway over real HTTP: a
three-level org takes an objective to verified completion through a delegation chain, with
coordination metered apart from work, and every wake-up caused by an event."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from ruflo.engine.board_engine import LiveParams
from ruflo.engine.clock import ManualClock
from ruflo.engine.company import company_report
from ruflo.gateway.client import GatewayClient
from ruflo.gateway.scripted import ScriptedGateway
from ruflo.model import CostKind, HiveStatus, TaskState
from ruflo.store.sql import SqlStore
from waiting import until

from .conftest import (
    KEY,
    PLAN_USAGE,
    VERIFY_ALL,
    WORK_USAGE,
    company_script,
    engine,
    make_company,
)

SHORT_LEASE = LiveParams(lease_seconds=2.0, time_unit=0.05, poll_seconds=0.2)
"""For the test that kills an agent: its claim expires as the test moves the clock."""
WAKE_REASONS = {"engine started", "assigned", "escalated", "children completed",
                "blocker resolved", "approval decided", "hive resumed", "agent resumed",
                "lease expired"}


async def test_a_three_level_org_takes_the_objective_to_verified_completion(
        any_store: SqlStore, gateway_server: ScriptedGateway, tmp_path: Path) -> None:
    store = any_store
    client = GatewayClient(gateway_server.base_url, KEY, store=store)
    try:
        await run_three_levels(store, client, gateway_server, tmp_path)
    finally:
        await client.aclose()


async def run_three_levels(store: SqlStore, client: GatewayClient,
                           gateway_server: ScriptedGateway, tmp_path: Path) -> None:
    company_script(gateway_server)
    hive = make_company(store, tmp_path, config={"verify": VERIFY_ALL})

    final = await asyncio.wait_for(engine(store, hive.id, client).run(), 60)

    assert final.status is HiveStatus.DONE, final.pause_reason
    tasks = {t.title: t for t in store.list_tasks(hive.id)}
    assert set(tasks) == {"Ship the greeter", "Build the code", "Write the docs", "Write a.py",
                          "Write b.py", "Write guide.md", "Write faq.md"}
    assert {t.state for t in tasks.values()} == {TaskState.DONE}
    assert tasks["Ship the greeter"].verify == VERIFY_ALL, "the objective's check is the root's"
    checked = [t for t in tasks.values() if t.verify]
    assert len(checked) == 5
    assert all(t.verified for t in checked), "every verify command passed"
    for name in ("a", "b", "guide", "faq"):
        suffix = "py" if len(name) == 1 else "md"
        assert (tmp_path / "workspace" / f"{name}.{suffix}").read_text() == name

    # The delegation chain, from the events: ceo → leads → engineers.
    agents = {a.id: a.name for a in store.list_agents(hive.id)}
    delegated = {e.task_id: (agents[e.agent_id], e.data["owner_name"], e.data["parent"])
                 for e in store.events(hive.id, kinds=["ticket_delegated"])
                 if e.agent_id is not None}
    by_title = {t.id: t.title for t in tasks.values()}
    chain = {by_title[task]: (frm, to, by_title.get(parent)) for task, (frm, to, parent)
             in delegated.items()}
    assert chain == {
        "Build the code": ("ceo", "eng-lead", "Ship the greeter"),
        "Write the docs": ("ceo", "docs-lead", "Ship the greeter"),
        "Write a.py": ("eng-lead", "dev-1", "Build the code"),
        "Write b.py": ("eng-lead", "dev-2", "Build the code"),
        "Write guide.md": ("docs-lead", "writer-1", "Write the docs"),
        "Write faq.md": ("docs-lead", "writer-2", "Write the docs"),
    }
    assert tasks["Write a.py"].depth == 2
    assert tasks["Build the code"].depth == 1
    done_by = {by_title[e.task_id]: agents[e.agent_id]
               for e in store.events(hive.id, kinds=["task_done"])}
    assert done_by["Write a.py"] == "dev-1"
    assert done_by["Write faq.md"] == "writer-2"
    assert done_by["Build the code"] == "eng-lead", "the parent's owner integrates and closes"
    assert done_by["Ship the greeter"] == "ceo"
    last = {(e.kind, by_title.get(e.task_id or "")): e.seq for e in store.events(hive.id)}
    assert last[("task_done", "Write a.py")] < last[("children_completed", "Build the code")]
    assert last[("task_done", "Write b.py")] < last[("children_completed", "Build the code")] \
        < last[("task_claimed", "Build the code")] < last[("task_done", "Build the code")], \
        "the lead is woken to integrate only when both children are done"

    # Coordination is metered apart from work: three planning calls, eleven work calls.
    coordination = store.spend(hive_id=hive.id, kind=CostKind.COORDINATION)
    work = store.spend(hive_id=hive.id, kind=CostKind.WORK)
    plan_tokens = PLAN_USAGE["prompt_tokens"] + PLAN_USAGE["completion_tokens"]
    work_tokens = WORK_USAGE["prompt_tokens"] + WORK_USAGE["completion_tokens"]
    assert (coordination.calls, coordination.tokens) == (3, 3 * plan_tokens)
    assert (work.calls, work.tokens) == (4 * 2 + 3, 11 * work_tokens)
    report = company_report(store, hive.id)
    assert report["coordination"]["tokens"] == 3 * plan_tokens
    assert report["work"]["tokens"] == 11 * work_tokens
    assert report["delegations"] == 6
    assert report["corrected_delegations"] == 0
    assert gateway_server.chat_count == 14

    # Nothing woke on a timer: every wake-up names the event that caused it.
    reasons = Counter(e.data["reason"] for e in store.events(hive.id, kinds=["agent_woken"]))
    assert set(reasons) <= WAKE_REASONS, reasons
    assert reasons["children completed"] == 3


def titles(store: SqlStore, hive_id: str) -> dict[str, str]:
    return {t.id: t.title for t in store.list_tasks(hive_id)}


def names(store: SqlStore, hive_id: str) -> dict[str, str]:
    return {a.id: a.name for a in store.list_agents(hive_id)}


async def test_a_blocked_ticket_names_what_it_waits_on_and_escalates_to_the_manager(
        store: SqlStore, client: GatewayClient, gateway_server: ScriptedGateway,
        tmp_path: Path) -> None:
    from .conftest import plan_rule, work_rules

    gateway_server.add_rules(
        {"name": "dev-1-blocked", "match": {"system": "^You are dev-1,",
                                            "last_user": "^Task: Write a.py"},
         "reply": {"tool_calls": [{"name": "escalate", "arguments": {
             "reason": "waiting on the API spec for a.py"}}]}},
        # The lead re-assigns it, naming dev-1 again: the capability check corrects that.
        plan_rule("eng-lead", "Write a.py", action="assign", report="dev-1",
                  note="the spec is in the README"),
        *work_rules("dev-2", "Write a.py", "a.py", "a"))
    company_script(gateway_server)
    hive = make_company(store, tmp_path, config={"verify": VERIFY_ALL})

    final = await asyncio.wait_for(engine(store, hive.id, client).run(), 60)

    assert final.status is HiveStatus.DONE, final.pause_reason
    title, agent = titles(store, hive.id), names(store, hive.id)
    escalated = store.events(hive.id, kinds=["ticket_escalated"])
    assert [(title[e.task_id], agent[e.agent_id], e.data["owner_name"], e.data["blocked_on"])
            for e in escalated] == [("Write a.py", "dev-1", "eng-lead",
                                     "waiting on the API spec for a.py")]
    blocked = [e for e in store.events(hive.id, kinds=["task_updated"])
               if e.task_id == escalated[0].task_id and e.data["fields"].get("state") == "blocked"]
    assert blocked
    assert blocked[0].data["fields"]["blocked_on"] == "waiting on the API spec for a.py"
    woken = [e for e in store.events(hive.id, kinds=["agent_woken"])
             if e.data["reason"] == "escalated"]
    assert [(agent[e.agent_id], title[e.task_id]) for e in woken] == [("eng-lead", "Write a.py")]
    reassigned = [e for e in store.events(hive.id, kinds=["ticket_delegated"])
                  if title[e.task_id] == "Write a.py"][-1]
    assert reassigned.data["owner_name"] == "dev-2"
    assert reassigned.data["chosen_by"] == "capability check"
    assert "escalated this ticket already" in reassigned.data["correction"]
    done_by = {title[e.task_id]: agent[e.agent_id]
               for e in store.events(hive.id, kinds=["task_done"])}
    assert done_by["Write a.py"] == "dev-2"
    task = next(t for t in store.list_tasks(hive.id) if t.title == "Write a.py")
    assert "the spec is in the README" in task.description
    assert task.blocked_on is None


async def test_a_killed_manager_s_ticket_is_recovered_by_lease_and_redelegated_by_the_root(
        store: SqlStore, client: GatewayClient, gateway_server: ScriptedGateway,
        tmp_path: Path) -> None:
    company_script(gateway_server, eng_lead_delay=5.0)  # its first planning call hangs
    hive = make_company(store, tmp_path, config={"verify": VERIFY_ALL})
    clock = ManualClock()
    run = engine(store, hive.id, client, SHORT_LEASE, clock)
    running = asyncio.create_task(run.run())
    lead = f"{hive.id}-eng-lead"
    await until(lambda: any(r["rule"] == "plan-eng-lead-Build the code"
                            for r in gateway_server.requests),
                what="eng-lead's planning call never reached the gateway")
    run.kill_agent(lead)

    # Time moves only here: the others' renewals keep their leases, the dead lead's runs out.
    await until(running.done, meanwhile=lambda: clock.advance(0.05))
    final = running.result()

    assert final.status is HiveStatus.DONE, final.pause_reason
    title, agent = titles(store, hive.id), names(store, hive.id)
    expired = store.events(hive.id, kinds=["lease_expired"])
    assert [(title[e.task_id], agent[e.agent_id]) for e in expired] == \
        [("Build the code", "eng-lead")]
    assert [agent[e.agent_id] for e in store.events(hive.id, kinds=["agent_lost"])] == \
        ["eng-lead"]
    reassigned = store.events(hive.id, kinds=["ticket_reassigned"])
    assert [(title[e.task_id], e.data["owner_name"]) for e in reassigned] == \
        [("Build the code", "ceo")]
    # The root adopted the lost lead's engineers and delegated to them directly.
    chain = {title[e.task_id]: (agent[e.agent_id], e.data["owner_name"])
             for e in store.events(hive.id, kinds=["ticket_delegated"])}
    assert chain["Write a.py"] == ("ceo", "dev-1")
    assert chain["Write b.py"] == ("ceo", "dev-2")
    finished = Counter(title[e.task_id] for e in store.events(hive.id, kinds=["task_done"]))
    assert set(finished.values()) == {1}
    assert len(finished) == 7
    assert not any(e.agent_id == lead for e in store.events(hive.id, kinds=["task_done"]))


async def test_a_root_escalation_goes_to_people_and_their_approval_wakes_the_root(
        store: SqlStore, client: GatewayClient, gateway_server: ScriptedGateway,
        tmp_path: Path) -> None:
    from ruflo.engine.approvals import decide
    from ruflo.model import ApprovalKind, ApprovalStatus

    from .conftest import plan_rule

    gateway_server.add_rules(
        plan_rule("docs-lead", "Write the docs", action="escalate", times=1,
                  reason="no style guide for the docs"),
        plan_rule("ceo", "Write the docs", action="escalate", times=1,
                  reason="the board must choose a style guide"),
        plan_rule("ceo", "Write the docs", action="assign", report="docs-lead",
                  note="use the plain style"))
    company_script(gateway_server)
    hive = make_company(store, tmp_path, config={"verify": VERIFY_ALL})
    running = asyncio.create_task(engine(store, hive.id, client).run())
    await until(lambda: store.list_approvals(hive_id=hive.id), what="no approval was opened")
    [approval] = store.list_approvals(hive_id=hive.id)
    assert approval.kind is ApprovalKind.STRATEGY
    assert "the board must choose a style guide" in approval.subject
    docs = next(t for t in store.list_tasks(hive.id) if t.title == "Write the docs")
    docs = await until(lambda: (task := store.get_task(docs.id)).state is TaskState.BLOCKED
                       and task, what="the docs ticket never waited on the approval")
    assert docs.blocked_on is not None
    assert approval.id in docs.blocked_on

    decide(store, approval.id, ApprovalStatus.APPROVED, decided_by="person:board")
    final = await asyncio.wait_for(running, 60)

    assert final.status is HiveStatus.DONE, final.pause_reason
    agent = names(store, hive.id)
    path = [(agent[e.agent_id], e.data["owner_name"])
            for e in store.events(hive.id, kinds=["ticket_escalated"])]
    assert path == [("docs-lead", "ceo")]
    woken = [e for e in store.events(hive.id, kinds=["agent_woken"])
             if e.data["reason"] == "approval decided"]
    assert [(agent[e.agent_id], e.task_id) for e in woken] == [("ceo", docs.id)]
    assert store.get_task(docs.id).state is TaskState.DONE


async def test_a_strategy_decided_while_no_engine_ran_is_carried_out_at_the_next_start(
        store: SqlStore, client: GatewayClient, gateway_server: ScriptedGateway,
        tmp_path: Path) -> None:
    from ruflo.engine.approvals import decide
    from ruflo.model import ApprovalKind, ApprovalStatus

    from .conftest import plan_rule

    gateway_server.add_rules(
        plan_rule("ceo", "Ship the greeter", action="escalate", times=1,
                  reason="the board must choose the greeting"))
    company_script(gateway_server)
    hive = make_company(store, tmp_path, config={"verify": VERIFY_ALL})
    first = engine(store, hive.id, client)
    running = asyncio.create_task(first.run())
    await until(lambda: store.list_approvals(hive_id=hive.id))
    [approval] = store.list_approvals(hive_id=hive.id)
    assert approval.kind is ApprovalKind.STRATEGY
    first.stop()
    await asyncio.wait_for(running, 30)
    decide(store, approval.id, ApprovalStatus.APPROVED, decided_by="person:board")

    final = await asyncio.wait_for(engine(store, hive.id, client).run(), 60)

    assert final.status is HiveStatus.DONE, final.pause_reason
    unblocked = [e.data for e in store.events(hive.id, kinds=["ticket_unblocked"])]
    assert {"approval_id": approval.id, "by": "person:board"} in unblocked
    assert all(t.state is TaskState.DONE for t in store.list_tasks(hive.id))
