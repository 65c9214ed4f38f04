"""An outside agent's model calls stop the hive the way the built-in agent's do: a refused
gateway key or a spent budget met through the relay pauses the hive, the claimed task goes back
to the board, and nothing is lost."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ruflo.agents.commands import command_env
from ruflo.engine.board_engine import BoardEngine, LiveParams
from ruflo.gateway.client import GatewayClient
from ruflo.gateway.scripted import ScriptedGateway
from ruflo.model import AdapterKind, Agent, Budget, Hive, HiveStatus, Mode, Task, TaskState
from ruflo.store import open_store
from ruflo.store.sql import SqlStore

pytestmark = pytest.mark.integration

KEY = "sk-relay-pause"
FAST = LiveParams(lease_seconds=5.0, time_unit=0.05, poll_seconds=0.2)
CALLER = r'''
import json, os, urllib.error, urllib.request
for turn in range(20):
    request = urllib.request.Request(
        os.environ["OPENAI_BASE_URL"] + "/chat/completions", method="POST",
        data=json.dumps({"model": "m", "max_tokens": 20,
                         "messages": [{"role": "user", "content": "hello " * 40}]}).encode(),
        headers={"authorization": "Bearer " + os.environ["OPENAI_API_KEY"],
                 "content-type": "application/json"})
    try:
        urllib.request.urlopen(request, timeout=30).read()
    except urllib.error.HTTPError as error:
        print("refused", error.code, flush=True)
        break
import time
time.sleep(600)  # a stubborn agent: the relay's stop must end it
'''


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    opened = open_store(f"sqlite:///{tmp_path / 'data' / 'ruflo.db'}")
    yield opened
    opened.close()


def outside_hive(store: SqlStore, tmp_path: Path, budget: Budget | None = None) -> Hive:
    program = tmp_path / "agent-cli" / "caller.py"
    program.parent.mkdir()
    program.write_text(CALLER)
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    hive = Hive(id="hive0", name="outside", mode=Mode.SWARM, objective="call models",
                workspace=str(workspace), budget=budget or Budget())
    agent = Agent(id="hive0-a0", hive_id=hive.id, name="cli", skills=("python",),
                  adapter=AdapterKind.PROCESS,
                  adapter_config={"command": [sys.executable, str(program)]})
    task = Task(id="hive0-t1", hive_id=hive.id, title="call", skills=("python",))
    store.create_hive(hive, agents=[agent], tasks=[task])
    return hive


async def run(store: SqlStore, hive: Hive, client: GatewayClient, tmp_path: Path) -> Hive:
    from ruflo.agents.sandbox import current_sandbox, use_sandbox

    # The agent's program lives outside PATH: show its folder, as RUFLO_SANDBOX_READ would.
    use_sandbox(current_sandbox().with_extras(readable=[tmp_path / "agent-cli"]))
    try:
        engine = BoardEngine(store, hive.id, gateway=client, params=FAST, env=command_env())
        return await asyncio.wait_for(engine.run(), 60)
    finally:
        use_sandbox(None)


async def test_a_refused_gateway_key_met_by_an_outside_agent_pauses_the_hive(
        store: SqlStore, gateway_server: ScriptedGateway, tmp_path: Path) -> None:
    gateway_server.set_rules([{"reply": {"content": "hi"}}])
    hive = outside_hive(store, tmp_path)
    async with GatewayClient(gateway_server.base_url, "sk-revoked", store=store) as client:
        paused = await run(store, hive, client, tmp_path)
    assert paused.status is HiveStatus.PAUSED
    assert paused.pause_reason == "gateway refused the key"
    [task] = store.list_tasks(hive.id)
    assert task.state is TaskState.OPEN, "the claim went back to the board"
    assert any("gateway refused the key" in e.data["reason"]
               for e in store.events(hive.id, kinds=["task_released"]))
    assert store.ledger(hive_id=hive.id) == []


async def test_a_budget_spent_by_an_outside_agent_pauses_the_hive(
        store: SqlStore, gateway_server: ScriptedGateway, tmp_path: Path) -> None:
    gateway_server.set_rules([{"reply": {"content": "a short answer"}}])
    hive = outside_hive(store, tmp_path, budget=Budget(max_tokens=200))
    async with GatewayClient(gateway_server.base_url, KEY, store=store) as client:
        paused = await run(store, hive, client, tmp_path)
    assert paused.status is HiveStatus.PAUSED
    assert "spent its budget" in (paused.pause_reason or "")
    [task] = store.list_tasks(hive.id)
    assert task.state is TaskState.OPEN
    spent = sum(e.total_tokens for e in store.ledger(hive_id=hive.id))
    assert spent >= 200
    assert store.events(hive.id, kinds=["budget_exceeded"])
