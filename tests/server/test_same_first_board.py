"""One way to start a hive: the same objective started by `ruflo orchestrate` (the program, as a
person runs it), over REST (a real server driving its hives) and over MCP (`create_hive` through
the SDK's client, with the planner `ruflo mcp` builds from its settings) starts with the same
first board, planned by one metered call to the same ScriptedGateway planner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from server_harness import GATEWAY_KEY, Served

from agent_scripts import work_rules
from mcp import Client
from ruflo.config import load_settings
from ruflo.engine.start import planner_from_settings
from ruflo.mcp.desk import Desk
from ruflo.mcp.server import build_server
from ruflo.memory import open_memory
from ruflo.model import CostKind, Task
from ruflo.store import open_store
from ruflo.store.sql import SqlStore

OBJECTIVE = "write a, then b and c beside each other"
PLAN = {"tasks": [
    {"id": "a", "title": "a", "description": "write a.txt", "skills": ["python"],
     "priority": 3, "verify": "test -f a.txt"},
    {"id": "b", "title": "b", "description": "write b.txt", "depends_on": ["a"], "effort": 2},
    {"id": "c", "title": "c", "skills": ["docs"], "depends_on": ["a"]},
]}
SCRIPT = {"keys": [GATEWAY_KEY], "cost": 0.0001, "rules": [
    {"name": "plan", "match": {"system": "You plan work"},
     "reply": {"content": "```json\n" + json.dumps(PLAN) + "\n```"}},
    *work_rules("a"), *work_rules("b"), *work_rules("c")]}
RUFLO = Path(sys.executable).parent / "ruflo"

Board = list[tuple[Any, ...]]


def board_of(store: SqlStore, hive_id: str) -> Board:
    """The first board as a person reads it: each task's content, its dependencies by title."""
    tasks: list[Task] = store.list_tasks(hive_id)
    titles = {task.id: task.title for task in tasks}
    return sorted((t.title, t.description, t.skills, t.priority, t.effort, t.verify,
                   tuple(sorted(titles[d] for d in t.depends_on)), t.parent_id) for t in tasks)


def planning_calls(store: SqlStore, hive_id: str) -> int:
    return sum(1 for e in store.ledger(hive_id=hive_id) if e.kind is CostKind.COORDINATION)


@pytest.fixture
def served(make_server: Callable[..., Served]) -> Served:
    return make_server(script=SCRIPT, live=True)


def started_by_the_cli(served: Served, tmp_path: Path) -> tuple[SqlStore, str]:
    data = tmp_path / "cli-data"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENAI_", "LITELLM_", "RUFLO_", "DATABASE_"))}
    env.update(OPENAI_BASE_URL=served.gateway.base_url, OPENAI_API_KEY=GATEWAY_KEY,
               RUFLO_DATA_DIR=str(data), RUFLO_LEASE_SECONDS="2", RUFLO_CONFIG="",
               XDG_CONFIG_HOME=str(tmp_path / "config"))
    done = subprocess.run([str(RUFLO), "orchestrate", OBJECTIVE, "--agents", "2", "--json",
                           "--workspace", str(tmp_path / "cli-ws")],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    store = open_store(f"sqlite:///{data / 'ruflo.db'}")
    return store, str(json.loads(done.stdout)["hive_id"])


def started_over_rest(served: Served) -> str:
    answer = served.client.post("/api/v2/hives", json={"objective": OBJECTIVE, "agents": 2})
    assert answer.status_code == 201, answer.text
    assert answer.json()["tasks"].get("open", 0) + answer.json()["tasks"].get("claimed", 0) \
        + answer.json()["tasks"].get("done", 0) == 3, "planned before the answer"
    return str(answer.json()["id"])


async def started_over_mcp(served: Served, tmp_path: Path) -> tuple[SqlStore, str]:
    store = open_store(f"sqlite:///{tmp_path / 'mcp.db'}")
    settings = load_settings({"OPENAI_BASE_URL": served.gateway.base_url,
                              "OPENAI_API_KEY": GATEWAY_KEY, "RUFLO_CONFIG": "",
                              "RUFLO_DATA_DIR": str(tmp_path / "mcp-data")})
    planner = planner_from_settings(settings, store)
    assert planner is not None, "`ruflo mcp` plans when a gateway is configured"
    desk = Desk(store, open_memory(store, semantic=False), lease_seconds=60,
                workspace_root=tmp_path / "mcp-ws", planner=planner)
    async with Client(build_server(desk)) as client:
        result = await client.call_tool("create_hive", {
            "name": "same", "objective": OBJECTIVE,
            "agents": [{"name": "agent-1"}, {"name": "agent-2"}]})
        assert not result.is_error, result.content
        answer = json.loads(result.content[0].text)  # type: ignore[union-attr]
    assert sorted(t["title"] for t in answer["tasks"]) == ["a", "b", "c"]
    return store, str(answer["hive"]["id"])


async def test_the_cli_rest_and_mcp_start_a_hive_with_the_same_board(
        served: Served, tmp_path: Path) -> None:
    rest_hive = started_over_rest(served)
    mcp_store, mcp_hive = await started_over_mcp(served, tmp_path)
    cli_store, cli_hive = started_by_the_cli(served, tmp_path)
    try:
        expected = [
            ("a", "write a.txt", ("python",), 3, 1.0, "test -f a.txt", (), None),
            ("b", "write b.txt", (), 1, 2.0, None, ("a",), None),
            ("c", "", ("docs",), 1, 1.0, None, ("a",), None),
        ]
        assert board_of(cli_store, cli_hive) == expected
        assert board_of(served.store, rest_hive) == expected
        assert board_of(mcp_store, mcp_hive) == expected
        for store, hive_id in ((cli_store, cli_hive), (served.store, rest_hive),
                               (mcp_store, mcp_hive)):
            assert planning_calls(store, hive_id) == 1, "one metered planning call each"
            assert len(store.events(hive_id, kinds=["objective_planned"])) == 1
    finally:
        cli_store.close()
        mcp_store.close()
