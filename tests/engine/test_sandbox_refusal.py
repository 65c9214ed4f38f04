"""A hive on a machine where commands are refused (no sandbox, no opt-out): the agent whose
verify can't run is paused with the one-line reason, its task goes back to the board, and with no
agent left the hive pauses: nothing lost, resumable once bubblewrap is installed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from ruflo.agents.commands import command_env
from ruflo.agents.sandbox import Sandbox, SandboxMode, use_sandbox
from ruflo.engine.board_engine import BoardEngine, LiveParams
from ruflo.gateway.client import GatewayClient
from ruflo.gateway.scripted import ScriptedGateway
from ruflo.model import Agent, AgentStatus, Hive, HiveStatus, Mode, Task, TaskState
from ruflo.store import open_store
from ruflo.store.sql import SqlStore

KEY = "sk-refusal-test"
REFUSED = Sandbox(SandboxMode.AUTO, refusal="bubblewrap (bwrap) is not installed; install "
                                            "bubblewrap or set RUFLO_SANDBOX=off")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    opened = open_store(f"sqlite:///{tmp_path / 'data' / 'ruflo.db'}")
    yield opened
    opened.close()


async def test_refused_commands_pause_the_agent_and_give_the_task_back(
        store: SqlStore, client: GatewayClient, gateway_server: ScriptedGateway,
        tmp_path: Path) -> None:
    gateway_server.add_rules(
        {"match": {"turn": 1}, "reply": {"tool_calls": [
            {"name": "write_file", "arguments": {"path": "a.txt", "content": "a"}}]}},
        {"match": {"turn": 2}, "reply": {"tool_calls": [
            {"name": "complete", "arguments": {"result": "wrote a.txt"}}]}})
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    hive = Hive(id="h1", name="refused", mode=Mode.SWARM, objective="write a",
                workspace=str(workspace))
    store.create_hive(hive, agents=[Agent(id="h1-a", hive_id="h1", name="ada",
                                          skills=("python",))],
                      tasks=[Task(id="h1-t", hive_id="h1", title="a", skills=("python",),
                                  verify="touch verified.txt")])
    use_sandbox(REFUSED)
    engine = BoardEngine(store, hive.id, gateway=client, env=command_env(),
                        params=LiveParams(lease_seconds=1.0, time_unit=0.05, poll_seconds=0.2))
    final = await asyncio.wait_for(engine.run(), 30)

    # The only agent is paused, so the hive pauses: nothing is lost, and it says why.
    assert final.status is HiveStatus.PAUSED, final
    assert final.pause_reason == "no agent left that can work"
    paused = store.events(hive.id, kinds=["agent_paused"])
    assert "commands are refused: bubblewrap (bwrap) is not installed" in str(paused[0].data)
    assert store.get_agent("h1-a").status is AgentStatus.PAUSED
    task = store.get_task("h1-t")
    assert task.state is TaskState.OPEN
    assert not (workspace / "verified.txt").exists()
