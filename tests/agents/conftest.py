"""Fixtures for the agent tests: a real SQLite store holding a hive with one claimed task, a
workspace folder, and a real GatewayClient talking to a ScriptedGateway server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ruflo.agents.base import SWARM_TOOLS, Limits, RunContext, TaskTool
from ruflo.gateway.client import GatewayClient
from ruflo.gateway.scripted import ScriptedGateway
from ruflo.model import Agent, Hive, Mode, Task
from ruflo.store import open_store
from ruflo.store.sql import SqlStore

GATEWAY_KEY = "sk-test"


@dataclass
class Board:
    """A hive with one agent that has claimed one task, on a real store."""

    store: SqlStore
    hive: Hive
    agent: Agent
    task: Task
    workspace: Path
    gateways: list[GatewayClient] = field(default_factory=list)

    def context(self, gateway: GatewayClient | None = None, *,
                task_tools: frozenset[TaskTool] = SWARM_TOOLS, limits: Limits | None = None,
                env: dict[str, str] | None = None, **kwargs: Any) -> RunContext:
        return RunContext(store=self.store, workspace=self.workspace, gateway=gateway,
                          task_tools=task_tools, limits=limits or Limits(),
                          env=env or {}, **kwargs)

    def transcript(self, *kinds: str) -> list[Any]:
        return self.store.events(self.hive.id, kinds=list(kinds) or None)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    folder = tmp_path / "workspace"
    folder.mkdir()
    return folder


@pytest.fixture
def make_board(tmp_path: Path, workspace: Path) -> Iterator[Callable[..., Board]]:
    stores: list[SqlStore] = []

    def make(*, verify: str | None = None, title: str = "Fix the failing test",
             description: str = "", agent: Agent | None = None,
             mode: Mode = Mode.SWARM) -> Board:
        store = open_store(f"sqlite:///{tmp_path / f'data{len(stores)}' / 'ruflo.db'}")
        stores.append(store)
        hive = Hive(id=f"h{len(stores)}", name="fixture", mode=mode,
                    objective="keep the calculator correct", workspace=str(workspace))
        worker = agent or Agent(id="a1", hive_id=hive.id, name="ada", role="coder",
                                skills=("python",))
        task = Task(id="t1", hive_id=hive.id, title=title, description=description,
                    skills=("python",), verify=verify)
        store.create_hive(hive, agents=[worker], tasks=[task])
        claimed = store.claim_task(hive.id, worker.id, lease_seconds=300, task_id=task.id)
        assert claimed is not None
        return Board(store=store, hive=hive, agent=worker, task=claimed, workspace=workspace)

    yield make
    for store in stores:
        store.close()


@pytest.fixture
def scripted() -> Iterator[Callable[[dict[str, Any]], ScriptedGateway]]:
    """Start a ScriptedGateway server with a script."""
    servers: list[ScriptedGateway] = []

    def start(script: dict[str, Any]) -> ScriptedGateway:
        server = ScriptedGateway(script)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
async def gateway_for() -> Any:
    clients: list[GatewayClient] = []

    def make(server: ScriptedGateway, store: SqlStore) -> GatewayClient:
        client = GatewayClient(server.base_url, GATEWAY_KEY, store=store)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()

