"""The live engine against the real SQLite store and a ScriptedGateway over real HTTP: a hive runs
to verified completion, survives a killed agent, pauses on a refused key and resumes, cancels,
and costs nothing while idle."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from ruflo.engine.control import cancel_hive, pause_hive, resume_hive
from ruflo.engine.live import LiveEngine, LiveParams
from ruflo.gateway.client import GatewayClient, RetryPolicy
from ruflo.gateway.scripted import ScriptedGateway
from ruflo.model import Agent, AgentStatus, Budget, Hive, HiveStatus, Mode, Task, TaskState
from ruflo.store import open_store
from ruflo.store.sql import SqlStore

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


@pytest.fixture
def gateway_server() -> Iterator[ScriptedGateway]:
    server = ScriptedGateway({"keys": [KEY], "cost": 0.0001})
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def client(gateway_server: ScriptedGateway, store: SqlStore) -> AsyncIterator[GatewayClient]:
    gateway = GatewayClient(gateway_server.base_url, KEY, store=store,
                            retry=RetryPolicy(attempts=2, timeout=5, wait_initial=0.01,
                                              wait_max=0.05))
    yield gateway
    await gateway.aclose()


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
           params: LiveParams = FAST) -> LiveEngine:
    from ruflo.agents.commands import command_env

    return LiveEngine(store, hive.id, gateway=client, params=params, env=command_env())


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
