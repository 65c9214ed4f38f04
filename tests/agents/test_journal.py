"""Journaled attempts of the built-in agent, on SQLite and Postgres: an attempt cut short (its
asyncio task cancelled mid-command, as a dying process leaves it: nothing closed) continues from
its journal in a fresh workspace, files replayed, the command reported as interrupted and not run
again; a changed task or another agent starts over; each request of a long attempt starts with
the one before; Anthropic models get cache breakpoints, others none."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from long_attempt import common_prefixes, long_rules, prefix_shares, written_parts
from ruflo.agents.base import Limits, OutcomeKind, RunContext
from ruflo.agents.journal import INTERRUPTED, Journal
from ruflo.agents.loop import LLMExecutor
from ruflo.agents.sandbox import Sandbox, SandboxMode
from ruflo.errors import GatewayBudgetError
from ruflo.event_kinds import EventKind
from ruflo.gateway.client import GatewayClient
from ruflo.gateway.scripted import ScriptedGateway
from ruflo.model import Agent, Hive, JournalEntryKind, Mode, Task
from waiting import wait_until

KEY = "sk-test"
UNCONFINED = Sandbox(SandboxMode.OFF, "the test counts the command's runs outside the workspace")


def hive_with_task(store: Any, workspace: Path, *, description: str = "") -> tuple[Hive, Agent,
                                                                                  Task]:
    hive = Hive(id="hj", name="journal", mode=Mode.SWARM, objective="write the parts",
                workspace=str(workspace))
    agent = Agent(id="hj-a", hive_id=hive.id, name="ada", role="coder", skills=("python",))
    other = Agent(id="hj-b", hive_id=hive.id, name="bob", role="coder", skills=("python",))
    task = Task(id="hj-t", hive_id=hive.id, title="Write the parts", description=description)
    store.create_hive(hive, agents=[agent, other], tasks=[task])
    claimed = store.claim_task(hive.id, agent.id, lease_seconds=300, task_id=task.id)
    assert claimed is not None
    return hive, agent, claimed


def context(store: Any, workspace: Path, client: GatewayClient, model: str = "gpt-4o-mini",
            ) -> RunContext:
    return RunContext(store=store, workspace=workspace, gateway=client, model=model,
                      limits=Limits(max_turns=30), sandbox=UNCONFINED)


@pytest.fixture
def scripted() -> Any:
    server = ScriptedGateway({"rules": []})
    server.start()
    yield server
    server.stop()


async def test_a_cut_attempt_continues_from_its_journal(store: Any, scripted: ScriptedGateway,
                                                        tmp_path: Path) -> None:
    counter, release = tmp_path / "runs", tmp_path / "release"
    scripted.set_rules(long_rules(10, command_turn=6, counter=counter, release=release))
    first_ws, second_ws = tmp_path / "first", tmp_path / "second"
    first_ws.mkdir()
    second_ws.mkdir()
    hive, agent, task = hive_with_task(store, first_ws)
    client = GatewayClient(scripted.base_url, KEY, store=store)
    try:
        work = asyncio.create_task(LLMExecutor().run(task, agent, hive,
                                                     context(store, first_ws, client)))
        await asyncio.to_thread(wait_until, lambda: counter.exists(), within=30,
                                what="the turn-6 command started")
        work.cancel()  # the process "dies": nothing is closed or recorded
        with pytest.raises(asyncio.CancelledError):
            await work
        assert scripted.chat_count == 6
        journal = store.open_journal_of(task.id)
        assert journal is not None
        assert journal.closed_at is None

        # Taken up again, in a fresh folder (as a new git worktree would be).
        outcome = await LLMExecutor().run(task, agent, hive, context(store, second_ws, client))
    finally:
        release.touch()
        await client.aclose()

    assert outcome.kind is OutcomeKind.COMPLETE
    assert outcome.turns == 10
    assert scripted.chat_count == 10, "no turn was asked twice"
    assert counter.read_text() == "ran\n", "the interrupted command was not run again"
    resumed = scripted.requests[6]
    tool_results = [m for m in resumed["messages"] if m["role"] == "tool"]
    assert tool_results[-1]["content"] == INTERRUPTED
    assert len([m for m in resumed["messages"] if m["role"] == "assistant"]) == 6
    for name, text in written_parts(10, command_turn=6).items():
        assert (second_ws / name).read_text() == text, f"{name} replayed"
    events = store.events(hive.id, kinds=[EventKind.ATTEMPT_RESUMED])
    assert [e.data["turn"] for e in events] == [6]
    assert events[0].data["interrupted"] == ["run_command"]
    assert sorted(events[0].data["replayed_files"]) == ["part1.txt", "part4.txt"]
    (journal,) = store.task_journals(task.id)
    assert journal.closed_at is not None
    assert journal.close_reason == "ended: complete"
    assert store.open_journal_of(task.id) is None


async def cut_at_turn_3(store: Any, scripted: ScriptedGateway, client: GatewayClient,
                        hive: Hive, agent: Agent, task: Task, workspace: Path) -> None:
    work = asyncio.create_task(LLMExecutor().run(task, agent, hive,
                                                 context(store, workspace, client)))
    asked = scripted.chat_count + 3
    await asyncio.to_thread(wait_until, lambda: scripted.chat_count == asked, within=30,
                            what="turn 3 asked")
    work.cancel()
    with pytest.raises(asyncio.CancelledError):
        await work


async def test_a_changed_task_or_another_agent_starts_over(store: Any,
                                                           scripted: ScriptedGateway,
                                                           tmp_path: Path) -> None:
    scripted.set_rules(long_rules(4, hold_turn=3))
    workspace = tmp_path / "ws"
    workspace.mkdir()
    hive, agent, task = hive_with_task(store, workspace, description="first version")
    other = store.get_agent("hj-b")
    client = GatewayClient(scripted.base_url, KEY, store=store)
    try:
        await cut_at_turn_3(store, scripted, client, hive, agent, task, workspace)
        changed = store.update_task(task.id, description="second version")
        scripted.open_gate("held")
        outcome = await LLMExecutor().run(changed, agent, hive,
                                          context(store, workspace, client))
        assert outcome.kind is OutcomeKind.COMPLETE
        assert outcome.turns == 4
        first, second = store.task_journals(task.id)
        assert first.close_reason == "the task changed since this attempt began"
        assert second.close_reason == "ended: complete"
        assert scripted.chat_count == 3 + 4, "the changed task was done from its first turn"

        scripted.reset({"rules": long_rules(4, hold_turn=3)})
        await cut_at_turn_3(store, scripted, client, hive, agent, changed, workspace)
        scripted.open_gate("held")
        outcome = await LLMExecutor().run(changed, other, hive,
                                          context(store, workspace, client))
        assert outcome.turns == 4
        assert scripted.chat_count == 3 + 4
    finally:
        await client.aclose()
    third = store.task_journals(task.id)[2]
    assert third.close_reason == "the task was taken up by agent bob"
    assert not store.events(hive.id, kinds=[EventKind.ATTEMPT_RESUMED])


async def test_each_request_starts_with_the_one_before(store: Any, scripted: ScriptedGateway,
                                                       tmp_path: Path) -> None:
    scripted.set_rules(long_rules(20))
    workspace = tmp_path / "ws"
    workspace.mkdir()
    hive, agent, task = hive_with_task(store, workspace)
    client = GatewayClient(scripted.base_url, KEY, store=store)
    try:
        outcome = await LLMExecutor().run(task, agent, hive, context(store, workspace, client))
    finally:
        await client.aclose()
    assert outcome.turns == 20
    shares = prefix_shares(scripted.requests)
    assert len(shares) == 19
    assert min(shares) >= 0.9, shares
    assert all(common == before for before, _, common in common_prefixes(scripted.requests)), \
        "each request starts with the whole request before it"
    assert all("cache_control" not in json.dumps(r["messages"]) for r in scripted.requests)


async def test_anthropic_models_get_cache_breakpoints(store: Any, scripted: ScriptedGateway,
                                                      tmp_path: Path) -> None:
    scripted.set_rules(long_rules(3))
    workspace = tmp_path / "ws"
    workspace.mkdir()
    hive, agent, task = hive_with_task(store, workspace)
    client = GatewayClient(scripted.base_url, KEY, store=store)
    try:
        outcome = await LLMExecutor().run(task, agent, hive, context(
            store, workspace, client, model="anthropic/claude-sonnet-4-5"))
    finally:
        await client.aclose()
    assert outcome.kind is OutcomeKind.COMPLETE
    mark = {"type": "ephemeral"}
    for request in scripted.requests:
        messages = request["messages"]
        assert messages[0]["content"][-1]["cache_control"] == mark
        marked = [m for m in messages if isinstance(m["content"], list)
                  and "cache_control" in m["content"][-1]]
        assert len(marked) == 2, "the system prompt and the newest message with text"
        newest_text = [m for m in messages if m["content"]][-1]
        assert marked[-1] is newest_text
    # Leaving the marks aside (Anthropic's cache does not compare them), each request starts
    # with the whole request before it.
    found = common_prefixes(scripted.requests, marks=False)
    assert all(common == before for before, _, common in found), found
    # The journal keeps the plain conversation: a resume may go to another provider.
    (journal,) = store.task_journals(task.id)
    assert all(isinstance(m["content"], str) for m in journal.opening["messages"])


async def test_the_last_answers_calls_are_settled_without_a_model_call(
        store: Any, scripted: ScriptedGateway, tmp_path: Path) -> None:
    """A journal whose last answer has a call done, one started (the process died in it) and
    two not started: the started one is answered as interrupted, the others run, and the
    `complete` among them ends the attempt — no model call at all."""
    workspace = tmp_path / "ws"
    workspace.mkdir()
    hive, agent, task = hive_with_task(store, workspace)
    journal = Journal.begin(store, task, agent, [{"role": "system", "content": "s"},
                                                 {"role": "user", "content": "Task: t"}])
    calls = [("c1", "write_file", {"path": "a.txt", "content": "A"}),
             ("c2", "read_file", {"path": "a.txt"}),
             ("c3", "write_file", {"path": "b.txt", "content": "B"}),
             ("c4", "complete", {"result": "wrote a and b"})]
    journal.message(1, {"role": "assistant", "content": None, "tool_calls": [
        {"id": i, "type": "function", "function": {"name": n, "arguments": json.dumps(a)}}
        for i, n, a in calls]})
    journal.started(1, "c1", "write_file", json.dumps(calls[0][2]))
    journal.message(1, {"role": "tool", "tool_call_id": "c1", "content": "wrote 1 bytes"},
                    name="write_file", error=False, path="a.txt", after="A")
    journal.started(1, "c2", "read_file", json.dumps(calls[1][2]))
    client = GatewayClient(scripted.base_url, KEY, store=store)
    try:
        outcome = await LLMExecutor().run(task, agent, hive, context(store, workspace, client))
    finally:
        await client.aclose()
    assert outcome.kind is OutcomeKind.COMPLETE
    assert outcome.result == "wrote a and b"
    assert scripted.chat_count == 0
    assert (workspace / "a.txt").read_text() == "A"
    assert (workspace / "b.txt").read_text() == "B"
    (event,) = store.events(hive.id, kinds=[EventKind.ATTEMPT_RESUMED])
    assert event.data["interrupted"] == ["read_file"]
    assert event.data["run_now"] == ["write_file", "complete"]
    assert event.data["replayed_files"] == ["a.txt"]
    (closed,) = store.task_journals(task.id)
    results = [e.data["message"] for e in closed.entries
               if e.data.get("message", {}).get("role") == "tool"]
    assert [m["content"] for m in results][1] == INTERRUPTED


async def test_an_outcome_recorded_before_the_death_ends_the_attempt(
        store: Any, scripted: ScriptedGateway, tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    hive, agent, task = hive_with_task(store, workspace)
    journal = Journal.begin(store, task, agent, [{"role": "system", "content": "s"},
                                                 {"role": "user", "content": "Task: t"}])
    journal.message(1, {"role": "assistant", "content": "", "tool_calls": [
        {"id": "c1", "type": "function",
         "function": {"name": "abstain", "arguments": '{"reason": "not mine"}'}}]})
    journal.started(1, "c1", "abstain", '{"reason": "not mine"}')
    journal.message(1, {"role": "tool", "tool_call_id": "c1", "content": "task given back"},
                    name="abstain", error=False)
    client = GatewayClient(scripted.base_url, KEY, store=store)
    try:
        outcome = await LLMExecutor().run(task, agent, hive, context(store, workspace, client))
    finally:
        await client.aclose()
    assert outcome.kind is OutcomeKind.ABSTAIN
    assert outcome.reason == "not mine"
    assert outcome.turns == 1
    assert scripted.chat_count == 0


async def test_a_damaged_journal_is_closed_and_the_attempt_starts_over(
        store: Any, scripted: ScriptedGateway, tmp_path: Path) -> None:
    scripted.set_rules(long_rules(2))
    workspace = tmp_path / "ws"
    workspace.mkdir()
    hive, agent, task = hive_with_task(store, workspace)
    journal = Journal.begin(store, task, agent, [{"role": "system", "content": "s"}])
    store.append_journal(journal.record.id, JournalEntryKind.MESSAGE, turn=1, call_id=None,
                         data={"message": "not a message"})
    client = GatewayClient(scripted.base_url, KEY, store=store)
    try:
        outcome = await LLMExecutor().run(task, agent, hive, context(store, workspace, client))
    finally:
        await client.aclose()
    assert outcome.kind is OutcomeKind.COMPLETE
    assert scripted.chat_count == 2
    damaged, fresh = store.task_journals(task.id)
    assert damaged.close_reason is not None
    assert damaged.close_reason.startswith("its journal could not be read")
    assert fresh.close_reason == "ended: complete"


async def test_a_budget_stop_continues_where_it_stopped(store: Any, scripted: ScriptedGateway,
                                                        tmp_path: Path) -> None:
    """The gateway refuses turn 4 for budget (the engine pauses the hive and hands the task
    back); once resumed, the attempt asks turn 4, not turn 1."""
    rules = long_rules(6)
    scripted.set_rules([{"match": {"turn": 4}, "fault": "budget_exceeded", "times": 1},
                        *rules])
    workspace = tmp_path / "ws"
    workspace.mkdir()
    hive, agent, task = hive_with_task(store, workspace)
    client = GatewayClient(scripted.base_url, KEY, store=store)
    try:
        with pytest.raises(GatewayBudgetError):
            await LLMExecutor().run(task, agent, hive, context(store, workspace, client))
        assert scripted.chat_count == 4
        outcome = await LLMExecutor().run(task, agent, hive, context(store, workspace, client))
    finally:
        await client.aclose()
    assert outcome.kind is OutcomeKind.COMPLETE
    assert outcome.turns == 6
    assert scripted.chat_count == 4 + 3, "turns 4, 5 and 6 after the stop; 1-3 not again"
    (event,) = store.events(hive.id, kinds=[EventKind.ATTEMPT_RESUMED])
    assert event.data["turn"] == 3
