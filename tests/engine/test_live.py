"""The live engine against the real SQLite store and a ScriptedGateway over real HTTP: a hive runs
to verified completion, survives a killed agent, pauses on a refused key and resumes, cancels,
and costs nothing while idle."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from ruflo.engine.board_engine import BoardEngine, LiveParams
from ruflo.engine.control import cancel_hive, resume_hive
from ruflo.gateway.client import GatewayClient
from ruflo.gateway.scripted import ScriptedGateway
from ruflo.model import Agent, AgentStatus, Budget, Hive, HiveStatus, Mode, Task, TaskState
from ruflo.store import open_store
from ruflo.store.sql import SqlStore
from waiting import stays, until, wait_for_event

KEY = "sk-live-test"
FAST = LiveParams(lease_seconds=1.0, time_unit=0.05, poll_seconds=0.2)


def work_rules(name: str, *, delay: float = 0.0, times: int | None = None,
               content: str | None = None) -> list[dict[str, Any]]:
    """Turn 1 writes `<name>.txt`, turn 2 completes: the built-in agent's whole attempt."""
    match = f"^Task: {name}$|^Task: {name}\\n"
    first: dict[str, Any] = {
        "name": f"{name}-write", "match": {"last_user": match, "turn": 1},
        "reply": {"tool_calls": [{"name": "write_file", "arguments": {
            "path": f"{name}.txt", "content": content if content is not None else name}}]}}
    if delay:
        first["delay"] = delay
    if times is not None:
        first["times"] = times
    done = {"name": f"{name}-complete", "match": {"last_user": match, "turn": 2},
            "reply": {"tool_calls": [{"name": "complete",
                                      "arguments": {"result": f"wrote {name}.txt"}}]}}
    return [first, done]


def board(names: Sequence[str], deps: dict[str, Sequence[str]] | None = None) -> list[Task]:
    deps = deps or {}
    return [Task(id=f"h-{n}", hive_id="", title=n, skills=("python",),
                 depends_on=tuple(f"h-{d}" for d in deps.get(n, ())),
                 verify=f"grep -qx {n} {n}.txt") for n in names]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    opened = open_store(f"sqlite:///{tmp_path / 'data' / 'ruflo.db'}")
    yield opened
    opened.close()


def make_hive(store: SqlStore, tmp_path: Path, tasks: Sequence[Task], *, agents: int = 4,
              mode: Mode = Mode.SWARM, budget: Budget | None = None,
              config: dict[str, Any] | None = None) -> Hive:
    workspace = tmp_path / "workspace"
    workspace.mkdir(exist_ok=True)
    hive = Hive(id=f"hive{len(store.list_hives())}", name="live", mode=mode,
                objective="write the files", workspace=str(workspace),
                budget=budget or Budget(), config=config or {})
    crew = [Agent(id=f"{hive.id}-a{i}", hive_id=hive.id, name=f"agent-{i}",
                  skills=("python",)) for i in range(agents)]
    store.create_hive(hive, agents=crew, tasks=[_in(t, hive.id) for t in tasks])
    return hive


def _in(task: Task, hive_id: str) -> Task:
    from dataclasses import replace

    return replace(task, id=f"{hive_id}{task.id}", hive_id=hive_id,
                   depends_on=tuple(f"{hive_id}{d}" for d in task.depends_on))


def engine(store: SqlStore, hive: Hive, client: GatewayClient | None,
           params: LiveParams = FAST) -> BoardEngine:
    from ruflo.agents.commands import command_env

    return BoardEngine(store, hive.id, gateway=client, params=params, env=command_env())


def finishes(store: SqlStore, hive_id: str) -> Counter[str]:
    return Counter(e.task_id for e in store.events(hive_id, kinds=["task_done"])
                   if e.task_id is not None)


def assert_no_double_holders(store: SqlStore, hive_id: str) -> None:
    """From the events: a task is never claimed while someone else holds it."""
    holder: dict[str, str | None] = {}
    for event in store.events(hive_id):
        task = event.task_id
        if task is None:
            continue
        if event.kind == "task_claimed":
            assert holder.get(task) is None, f"{task} claimed by {event.agent_id} while " \
                                             f"{holder.get(task)} held it"
            holder[task] = event.agent_id
        elif event.kind in ("task_done", "task_failed", "task_released", "lease_expired",
                            "task_cancelled", "task_updated"):
            holder[task] = None


async def test_four_agents_run_a_small_workload_to_verified_completion(
        store: SqlStore, client: GatewayClient, gateway_server: ScriptedGateway,
        tmp_path: Path) -> None:
    names = ["t1", "t2", "t3", "t4", "t5", "t6"]
    for name in names:
        gateway_server.add_rules(*work_rules(name))
    hive = make_hive(store, tmp_path, board(names, {"t3": ["t1"], "t4": ["t2", "t3"]}))

    final = await asyncio.wait_for(engine(store, hive, client).run(), 60)

    assert final.status is HiveStatus.DONE, final.pause_reason
    tasks = store.list_tasks(hive.id)
    assert {t.state for t in tasks} == {TaskState.DONE}
    assert all(t.verified for t in tasks)
    assert (tmp_path / "workspace" / "t4.txt").read_text() == "t4"
    assert set(finishes(store, hive.id).values()) == {1}
    assert_no_double_holders(store, hive.id)
    done_at = {e.task_id: e.seq for e in store.events(hive.id, kinds=["task_done"])}
    claimed_at = {e.task_id: e.seq for e in store.events(hive.id, kinds=["task_claimed"])}
    assert claimed_at[f"{hive.id}h-t4"] > max(done_at[f"{hive.id}h-t2"],
                                              done_at[f"{hive.id}h-t3"])
    agents = store.list_agents(hive.id)
    assert all(a.thresholds.get("python") for a in agents), "thresholds are persisted"
    assert all(a.status is AgentStatus.IDLE and a.current_task is None for a in agents)
    assert sum(a.spent_tokens for a in agents) > 0
    assert gateway_server.chat_count == 2 * len(names)


async def test_an_agent_killed_mid_task_loses_nothing_and_no_task_is_done_twice(
        store: SqlStore, client: GatewayClient, gateway_server: ScriptedGateway,
        tmp_path: Path) -> None:
    names = ["t1", "t2", "t3", "t4", "t5"]
    gateway_server.add_rules(*work_rules("t2", delay=3.0, times=1)[:1])  # the first try hangs
    for name in names:
        gateway_server.add_rules(*work_rules(name))
    hive = make_hive(store, tmp_path, board(names, {"t5": ["t2"]}))
    run = engine(store, hive, client)
    running = asyncio.create_task(run.run())
    slow = f"{hive.id}h-t2"
    claim = await wait_for_event(store, hive.id, "task_claimed", task_id=slow)
    await until(lambda: any(r["rule"] == "t2-write" for r in gateway_server.requests),
                what="t2's hanging first turn never reached the gateway")
    run.kill_agent(claim.agent_id)

    final = await asyncio.wait_for(running, 60)

    assert final.status is HiveStatus.DONE, final.pause_reason
    assert set(finishes(store, hive.id).values()) == {1}
    assert len(finishes(store, hive.id)) == len(names)
    assert_no_double_holders(store, hive.id)
    expired = store.events(hive.id, kinds=["lease_expired"])
    assert [(e.task_id, e.agent_id) for e in expired] == [(slow, claim.agent_id)]
    done_by = {e.task_id: e.agent_id for e in store.events(hive.id, kinds=["task_done"])}
    assert done_by[slow] != claim.agent_id
    assert claim.agent_id not in done_by.values() or \
        all(e.seq < expired[0].seq for e in store.events(hive.id, kinds=["task_done"])
            if e.agent_id == claim.agent_id)
    assert store.get_agent(claim.agent_id).status is AgentStatus.DEAD
    assert store.events(hive.id, kinds=["agent_lost"])[0].agent_id == claim.agent_id


async def test_a_refused_key_pauses_the_hive_and_resume_finishes_with_nothing_lost(
        store: SqlStore, client: GatewayClient, gateway_server: ScriptedGateway,
        tmp_path: Path) -> None:
    names = ["t1", "t2", "t3", "t4"]
    gateway_server.add_rules(*work_rules("t3", delay=0.5))
    for name in names:
        gateway_server.add_rules(*work_rules(name))
    hive = make_hive(store, tmp_path, board(names, {"t3": ["t1"], "t4": ["t3"]}), agents=2)
    running = asyncio.create_task(engine(store, hive, client).run())
    await wait_for_event(store, hive.id, "task_claimed", task_id=f"{hive.id}h-t3")
    gateway_server.revoke_key(KEY)

    paused = await asyncio.wait_for(running, 30)

    assert paused.status is HiveStatus.PAUSED
    assert paused.pause_reason == "gateway refused the key"
    states = {t.title: t.state for t in store.list_tasks(hive.id)}
    assert states["t1"] is TaskState.DONE
    assert states["t3"] is TaskState.OPEN, "the claim in flight went back to the board"
    assert states["t4"] is TaskState.OPEN
    assert not store.list_tasks(hive.id, states=[TaskState.CLAIMED])
    released = store.events(hive.id, kinds=["task_released"])
    assert any(e.task_id == f"{hive.id}h-t3" and "gateway refused the key" in e.data["reason"]
               for e in released)
    refused = gateway_server.chat_count

    gateway_server.restore_key(KEY)
    resume_hive(store, hive.id)
    final = await asyncio.wait_for(engine(store, hive, client).run(), 60)

    assert final.status is HiveStatus.DONE, final.pause_reason
    assert set(finishes(store, hive.id).values()) == {1}
    assert len(finishes(store, hive.id)) == len(names)
    assert gateway_server.chat_count > refused
    assert_no_double_holders(store, hive.id)


async def test_cancel_stops_the_executors_and_cancels_every_unfinished_task(
        store: SqlStore, client: GatewayClient, gateway_server: ScriptedGateway,
        tmp_path: Path) -> None:
    gateway_server.add_rules(*work_rules("slow", delay=5.0))
    gateway_server.add_rules(*work_rules("after"))
    hive = make_hive(store, tmp_path, board(["slow", "after"], {"after": ["slow"]}), agents=2)
    running = asyncio.create_task(engine(store, hive, client).run())
    await wait_for_event(store, hive.id, "agent_started", task_id=f"{hive.id}h-slow")

    cancel_hive(store, hive.id)
    final = await asyncio.wait_for(running, 3)

    assert final.status is HiveStatus.CANCELLED
    assert {t.state for t in store.list_tasks(hive.id)} == {TaskState.CANCELLED}
    assert not store.events(hive.id, kinds=["task_done", "agent_outcome"])
    assert all(a.current_task is None for a in store.list_agents(hive.id))


async def test_fifty_idle_agents_cost_nothing_and_a_task_posted_elsewhere_wakes_them(
        store: SqlStore, client: GatewayClient, gateway_server: ScriptedGateway,
        tmp_path: Path) -> None:
    hive = make_hive(store, tmp_path, [], agents=50)
    gateway_server.add_rules(*work_rules("late"))
    running = asyncio.create_task(engine(store, hive, client).run())
    await wait_for_event(store, hive.id, "engine_started")
    await stays(lambda: gateway_server.request_count == 0 and not running.done(),
                what="idle agents called the gateway, or the engine ended")

    # Another process (its own connection, no shared listener) posts work: the poll finds it.
    other = open_store(f"sqlite:///{tmp_path / 'data' / 'ruflo.db'}")
    try:
        other.post_tasks(hive.id, [_in(t, hive.id) for t in board(["late"])])
    finally:
        other.close()
    final = await asyncio.wait_for(running, 30)

    assert final.status is HiveStatus.DONE
    assert gateway_server.chat_count == 2


async def test_a_task_that_never_verifies_fails_after_its_attempts_and_so_does_the_hive(
        store: SqlStore, client: GatewayClient, gateway_server: ScriptedGateway,
        tmp_path: Path) -> None:
    gateway_server.add_rules(*work_rules("wrong", content="not what verify wants"))
    gateway_server.add_rules(*work_rules("fine"))
    hive = make_hive(store, tmp_path, board(["wrong", "fine", "next"], {"next": ["wrong"]}),
                     agents=2)

    final = await asyncio.wait_for(engine(store, hive, client).run(), 60)

    assert final.status is HiveStatus.FAILED
    states = {t.title: t for t in store.list_tasks(hive.id)}
    assert states["wrong"].state is TaskState.FAILED
    assert states["wrong"].verified is False
    assert states["fine"].state is TaskState.DONE
    assert states["next"].state is TaskState.CANCELLED
    attempts = [e for e in store.events(hive.id, kinds=["task_verified"])
                if e.task_id == states["wrong"].id]
    assert len(attempts) == 5
    assert all(not e.data["passed"] for e in attempts)


async def test_a_spent_hive_budget_pauses_and_a_bigger_budget_resumes(
        store: SqlStore, client: GatewayClient, gateway_server: ScriptedGateway,
        tmp_path: Path) -> None:
    for name in ["t1", "t2"]:
        gateway_server.add_rules(*work_rules(name))
    hive = make_hive(store, tmp_path, board(["t1", "t2"]), agents=1,
                     budget=Budget(max_tokens=1))

    paused = await asyncio.wait_for(engine(store, hive, client).run(), 30)

    assert paused.status is HiveStatus.PAUSED
    assert "spent its budget" in (paused.pause_reason or "")
    assert gateway_server.chat_count == 1
    assert not store.list_tasks(hive.id, states=[TaskState.CLAIMED])
    assert store.events(hive.id, kinds=["budget_exceeded"])

    resume_hive(store, hive.id, budget=Budget(max_tokens=1_000_000))
    final = await asyncio.wait_for(engine(store, hive, client).run(), 30)
    assert final.status is HiveStatus.DONE


async def test_an_agent_over_its_own_budget_pauses_and_the_others_finish(
        store: SqlStore, client: GatewayClient, gateway_server: ScriptedGateway,
        tmp_path: Path) -> None:
    names = ["t1", "t2", "t3"]
    for name in names:
        # Work takes a while, so the agent with money cannot take the whole board before the
        # broke one has looked at it (without the delay this depended on scheduling).
        gateway_server.add_rules(*work_rules(name, delay=0.5))
    hive = make_hive(store, tmp_path, board(names), agents=2)
    broke = store.list_agents(hive.id)[0]
    with store.transaction():
        store.update_agent(broke.id, budget=Budget(max_tokens=0))

    final = await asyncio.wait_for(engine(store, hive, client).run(), 30)

    assert final.status is HiveStatus.DONE
    assert store.get_agent(broke.id).status is AgentStatus.PAUSED
    assert [e.agent_id for e in store.events(hive.id, kinds=["agent_paused"])] == [broke.id]
    assert broke.id not in {e.agent_id for e in store.events(hive.id, kinds=["task_done"])}


@pytest.mark.parametrize("mode", [Mode.SOLO, Mode.ROUND_ROBIN])
async def test_the_baselines_run_through_the_same_engine(
        mode: Mode, store: SqlStore, client: GatewayClient, gateway_server: ScriptedGateway,
        tmp_path: Path) -> None:
    names = ["t1", "t2", "t3", "t4"]
    for name in names:
        gateway_server.add_rules(*work_rules(name))
    hive = make_hive(store, tmp_path, board(names, {"t4": ["t1"]}), agents=2, mode=mode)

    final = await asyncio.wait_for(engine(store, hive, client).run(), 60)

    assert final.status is HiveStatus.DONE
    doers = Counter(e.agent_id for e in store.events(hive.id, kinds=["task_done"]))
    if mode is Mode.SOLO:
        assert len(doers) == 1
    else:
        assert sorted(doers.values()) == [2, 2]


async def test_an_agent_splits_a_task_and_it_is_integrated_once_the_parts_are_done(
        store: SqlStore, client: GatewayClient, gateway_server: ScriptedGateway,
        tmp_path: Path) -> None:
    gateway_server.add_rules(
        {"match": {"last_user": "^Task: big$", "turn": 1},
         "reply": {"tool_calls": [{"name": "post_subtasks", "arguments": {"subtasks": [
             {"title": "part-a"}, {"title": "part-b", "depends_on": [0]}]}}]}},
        {"match": {"last_user": "subtasks are done", "turn": 1},
         "reply": {"tool_calls": [{"name": "complete", "arguments": {"result": "merged"}}]}},
        *work_rules("part-a"), *work_rules("part-b"))
    hive = make_hive(store, tmp_path, [Task(id="h-big", hive_id="", title="big")], agents=3)

    final = await asyncio.wait_for(engine(store, hive, client).run(), 60)

    assert final.status is HiveStatus.DONE, final.pause_reason
    tasks = {t.title: t for t in store.list_tasks(hive.id)}
    big = tasks["big"]
    assert big.result == "merged"
    assert tasks["part-a"].parent_id == big.id
    assert tasks["part-b"].parent_id == big.id
    assert tasks["part-b"].depends_on == (tasks["part-a"].id,)
    order = [e.task_id for e in store.events(hive.id, kinds=["task_done"])]
    assert order == [tasks["part-a"].id, tasks["part-b"].id, big.id]


async def test_the_live_view_draws_the_board_agents_and_latest_events(
        store: SqlStore, client: GatewayClient, gateway_server: ScriptedGateway,
        tmp_path: Path) -> None:
    from rich.console import Console

    from ruflo.engine.view import HiveView

    gateway_server.add_rules(*work_rules("t1"))
    hive = make_hive(store, tmp_path, board(["t1", "t2"]), agents=2)
    store.finish_task(f"{hive.id}h-t2", None, state=TaskState.CANCELLED, result="not needed")
    await asyncio.wait_for(engine(store, hive, client).run(), 30)
    console = Console(record=True, width=120, force_terminal=False)

    console.print(HiveView(store, hive.id, console).render())

    drawn = console.export_text()
    assert f"hive {hive.id}" in drawn
    assert "done 1" in drawn
    assert "cancelled 1" in drawn
    assert "agent-0" in drawn
    assert "agent-1" in drawn
    assert "hive_failed: not every task of the objective succeeded" in drawn
