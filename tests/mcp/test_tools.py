"""The MCP tools through the SDK's own client, connected in-process to the server over a real
SQLite store: the board cycle, verify verdicts, leases, the swarm's choice, memory, the ledger,
and refusals that come back as tool errors while the server keeps serving."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from mcp import Client
from ruflo.event_kinds import EventKind
from ruflo.mcp.desk import Desk
from ruflo.mcp.server import build_server
from ruflo.memory import open_memory
from ruflo.model import CostKind, TaskState, utcnow
from ruflo.store import open_store
from ruflo.store.sql import SqlStore


@pytest.fixture
def store(tmp_path: Path) -> SqlStore:
    opened = open_store(f"sqlite:///{tmp_path / 'ruflo.db'}")
    yield opened  # type: ignore[misc]
    opened.close()


def make_desk(store: SqlStore, tmp_path: Path, **kwargs: Any) -> Desk:
    return Desk(store, open_memory(store, semantic=False), lease_seconds=60,
                workspace_root=tmp_path / "workspace", **kwargs)


@asynccontextmanager
async def connect(store: SqlStore, tmp_path: Path, **kwargs: Any) -> AsyncIterator[Client]:
    """The SDK's client, connected in-process (entered in the test's own task, as anyio needs)."""
    async with Client(build_server(make_desk(store, tmp_path, **kwargs))) as connected:
        yield connected


async def call(client: Client, tool: str, **arguments: Any) -> Any:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    return json.loads(result.content[0].text)  # type: ignore[union-attr]


async def refused(client: Client, tool: str, **arguments: Any) -> str:
    result = await client.call_tool(tool, arguments)
    assert result.is_error, result.content
    text: str = result.content[0].text  # type: ignore[union-attr]
    return text


def write_file(path: Path, text: str) -> None:
    path.write_text(text)


async def new_hive(client: Client, name: str = "h", **extra: Any) -> dict[str, Any]:
    extra.setdefault("agents", [{"name": "ada", "skills": ["python"]}])
    answer: dict[str, Any] = (await call(client, "create_hive", name=name,
                                         objective="ship it", **extra))["hive"]
    return answer


async def test_post_claim_complete_with_a_passing_verify(store: SqlStore, tmp_path: Path) -> None:
    async with connect(store, tmp_path) as client:
        hive = await new_hive(client)
        posted = (await call(client, "post_task", hive="h", title="write it", skills=["python"],
                             verify="test -f out.txt"))["task"]
        claimed = await call(client, "claim_next_task", hive="h", agent="ada")
        assert claimed["task"]["id"] == posted["id"]
        assert claimed["task"]["state"] == "claimed"
        assert claimed["task"]["assignee"] == "ada"
        write_file(Path(claimed["workspace"], "out.txt"), "done\n")
        done = await call(client, "complete_task", hive="h", task=posted["id"], agent="ada",
                          result="wrote out.txt")
        assert done["task"]["state"] == "done"
        assert done["task"]["verified"] is True
        stored = store.get_task(posted["id"])
        assert stored.state is TaskState.DONE
        assert stored.result == "wrote out.txt"
        kinds = [e.kind for e in store.events(hive["id"])]
        assert kinds.count(EventKind.MCP_CALL) == 4  # create, post, claim, complete
        assert "task_verified" in kinds
        assert "task_done" in kinds
        calls = [e.data for e in store.events(hive["id"], kinds=[EventKind.MCP_CALL])]
        assert [c["tool"] for c in calls] == ["create_hive", "post_task", "claim_next_task",
                                              "complete_task"]
        assert all(c["ok"] and c["caller"] for c in calls)


async def test_a_failing_verify_fails_the_task_whatever_the_agent_says(
        store: SqlStore, tmp_path: Path) -> None:
    async with connect(store, tmp_path) as client:
        await new_hive(client)
        task = (await call(client, "post_task", hive="h", title="t",
                           verify="echo broken; exit 3"))["task"]
        await call(client, "claim_next_task", hive="h", agent="ada")
        answer = await call(client, "complete_task", hive="h", task="t", agent="ada", result="ok!")
        assert answer["task"]["state"] == "failed"
        assert answer["task"]["verified"] is False
        assert answer["verify"]["exit_code"] == 3
        assert "broken" in answer["verify"]["output"]
        assert store.get_task(task["id"]).state is TaskState.FAILED


async def test_dependencies_hold_a_task_until_done(store: SqlStore, tmp_path: Path) -> None:
    async with connect(store, tmp_path) as client:
        await new_hive(client)
        first = (await call(client, "post_task", hive="h", title="first"))["task"]
        second = (await call(client, "post_task", hive="h", title="second",
                             depends_on=["first"]))["task"]
        assert second["depends_on"] == [first["id"]]
        assert "waits on dependencies" in await refused(client, "claim_next_task", hive="h",
                                                       agent="ada", task=second["id"])
        got = await call(client, "claim_next_task", hive="h", agent="ada")
        assert got["task"]["id"] == first["id"]
        await call(client, "complete_task", hive="h", task=first["id"], agent="ada")
        got = await call(client, "claim_next_task", hive="h", agent="ada")
        assert got["task"]["id"] == second["id"]


async def test_release_reopens_and_a_new_agent_joins_by_claiming(
        store: SqlStore, tmp_path: Path) -> None:
    async with connect(store, tmp_path) as client:
        hive = await new_hive(client)
        await call(client, "post_task", hive="h", title="t", priority=5)
        await call(client, "claim_next_task", hive="h", agent="ada")
        released = await call(client, "release_task", hive="h", task="t", agent="ada",
                              reason="stuck")
        assert released["task"]["state"] == "open"
        status = await call(client, "board_status", hive="h")
        assert status["counts"]["open"] == 1
        got = await call(client, "claim_next_task", hive="h", agent="newcomer",
                         skills=["rust"], task="t")
        assert got["task"]["assignee"] == "newcomer"
        names = {a.name: a for a in store.list_agents(hive["id"])}
        assert names["newcomer"].skills == ("rust",)
        status = await call(client, "board_status", hive="h", states=["claimed"])
        assert [t["assignee"] for t in status["tasks"]] == ["newcomer"]
        assert {a["name"]: a["status"] for a in status["agents"]}["newcomer"] == "working"


async def test_an_agent_that_vanishes_loses_its_claim_when_the_lease_ends(
        store: SqlStore, tmp_path: Path) -> None:
    async with connect(store, tmp_path) as client:
        hive = await new_hive(client, agents=[{"name": "ada"}, {"name": "bob"}])
        task = (await call(client, "post_task", hive="h", title="t"))["task"]
        await call(client, "claim_next_task", hive="h", agent="ada", task="t")
        assert "already holds" in await refused(client, "claim_next_task", hive="h", agent="ada")
        # ada's client is gone; pretend its lease ran out.
        store.update_task(task["id"], lease_until=utcnow() - timedelta(seconds=1))
        got = await call(client, "claim_next_task", hive="h", agent="bob", task="t")
        assert got["reopened_expired"] == [task["id"]]
        assert got["task"]["assignee"] == "bob"
        assert "not held by 'ada'" in await refused(client, "complete_task", hive="h", task="t",
                                                    agent="ada")
        assert [e.kind for e in store.events(hive["id"], kinds=["lease_expired"])] == [
            "lease_expired"]


async def test_heartbeat_extends_the_lease(store: SqlStore, tmp_path: Path) -> None:
    async with connect(store, tmp_path) as client:
        await new_hive(client)
        task = (await call(client, "post_task", hive="h", title="t"))["task"]
        await call(client, "claim_next_task", hive="h", agent="ada", task="t")
        store.update_task(task["id"], lease_until=utcnow() + timedelta(seconds=5))
        beat = await call(client, "heartbeat", hive="h", agent="ada")
        assert beat["renewed"] == [task["id"]]
        lease = store.get_task(task["id"]).lease_until
        assert lease is not None
        assert lease > utcnow() + timedelta(seconds=50)


async def test_swarm_choice_is_seeded_and_follows_skills(store: SqlStore, tmp_path: Path) -> None:
    async def run() -> list[str | None]:
        async with connect(store, tmp_path) as client:
            name = f"h{len(store.list_hives())}"
            await call(client, "create_hive", name=name, objective="o", seed=7,
                       agents=[{"name": "py", "skills": ["python"]}])
            for n in range(6):
                await call(client, "post_task", hive=name, title=f"rust-{n}", skills=["rust"])
                await call(client, "post_task", hive=name, title=f"py-{n}", skills=["python"])
            picks = []
            for _ in range(6):
                got = await call(client, "claim_next_task", hive=name, agent="py")
                picks.append(got["task"]["title"] if got["task"] else None)
                if got["task"]:
                    await call(client, "complete_task", hive=name, task=got["task"]["id"],
                               agent="py")
            return picks
    first, second = await run(), await run()
    assert first == second
    taken = [p for p in first if p]
    assert taken
    assert all(p.startswith("py-") for p in taken)


async def test_declining_says_why_and_when_to_ask_again(store: SqlStore, tmp_path: Path) -> None:
    async with connect(store, tmp_path) as client:
        hive = await new_hive(client, agents=[{"name": "py", "skills": ["python"]}])
        await call(client, "post_task", hive="h", title="r", skills=["rust"])
        answers = [await call(client, "claim_next_task", hive="h", agent="py") for _ in range(3)]
        declined = [a for a in answers if a["task"] is None]
        # θ for an undeclared skill is 12 against a stimulus of about 2: p ≈ 3% per look.
        assert declined, answers
        assert declined[0]["retry_after_seconds"] > 0
        assert "declined" in declined[0]["reason"]
        agent = store.list_agents(hive["id"])[0]
        assert agent.thresholds["rust"] > 12.0  # abstaining raised it, and it was stored


async def test_round_robin_deals_tasks_in_turn(store: SqlStore, tmp_path: Path) -> None:
    async with connect(store, tmp_path) as client:
        await new_hive(client, mode="round_robin", agents=[{"name": "a"}, {"name": "b"}])
        for n in range(4):
            await call(client, "post_task", hive="h", title=f"t{n}")
        a = await call(client, "claim_next_task", hive="h", agent="a")
        b = await call(client, "claim_next_task", hive="h", agent="b")
        assert a["task"]
        assert b["task"]
        assert a["task"]["id"] != b["task"]["id"]


async def test_default_hive_and_memory(store: SqlStore, tmp_path: Path) -> None:
    async with connect(store, tmp_path) as client:
        hive = await new_hive(client)
        assert "without --hive" in await refused(client, "post_task", title="x")
    async with connect(store, tmp_path, default_hive="h") as client:
        await call(client, "post_task", title="via default")
        stored = await call(client, "memory_store", key="db", content="The orders table is "
                            "partitioned by month", tags=["schema"])
        assert stored["note"]["namespace"] == f"hive:{hive['id']}"
        found = await call(client, "memory_search", query="orders partitioned")
        assert [n["key"] for n in found["notes"]] == ["db"]
        assert found["backend"] == "keyword"
        nothing = await call(client, "memory_search", query="orders", namespace="elsewhere")
        assert nothing["notes"] == []
    tools = [e.data["tool"] for e in store.events(hive["id"], kinds=[EventKind.MCP_CALL])]
    assert tools[-3:] == ["memory_store", "memory_search", "memory_search"]


async def test_memory_without_any_hive_uses_the_default_namespace(
        store: SqlStore, tmp_path: Path) -> None:
    async with connect(store, tmp_path) as client:
        await call(client, "memory_store", key="k", content="plain note")
        assert store.memory_get("default", "k").content == "plain note"


async def test_ledger_summary_by_agent_and_kind(store: SqlStore, tmp_path: Path) -> None:
    async with connect(store, tmp_path) as client:
        hive = await new_hive(client)
        ada = store.list_agents(hive["id"])[0]
        store.add_ledger_entry(model="m", prompt_tokens=100, completion_tokens=50, cost=0.25,
                               cost_source="gateway", hive_id=hive["id"], agent_id=ada.id)
        store.add_ledger_entry(model="m", prompt_tokens=10, completion_tokens=5, cost=None,
                               cost_source="unknown", kind=CostKind.COORDINATION,
                               hive_id=hive["id"], agent_id=ada.id)
        summary = await call(client, "ledger_summary", hive="h")
        assert summary["total"] == {"calls": 2, "tokens": 165, "cost": 0.25,
                                    "unknown_cost_calls": 1}
        rows = {(r["agent"], r["kind"]): r for r in summary["by_agent_and_kind"]}
        assert rows[("ada", "work")]["tokens"] == 150
        assert rows[("ada", "coordination")]["unknown_cost_calls"] == 1


@pytest.mark.parametrize(("tool", "arguments", "says"), [
    ("create_hive", {"name": "", "objective": "o"}, "at least 1 character"),
    ("create_hive", {"name": "x", "objective": "o", "mode": "company"}, "mode"),
    ("create_hive", {"name": "x", "objective": "o", "agents": [{"name": "a"}, {"name": "a"}]},
     "unique"),
    ("create_hive", {"name": "x", "objective": "o", "workspace": "relative/dir"},
     "absolute path"),
    ("create_hive", {"name": "h", "objective": "again"}, "already exists"),
    ("post_task", {"hive": "h", "title": "t", "priority": -1}, "greater than or equal"),
    ("post_task", {"hive": "h", "title": "t", "effort": 0}, "greater than"),
    ("post_task", {"hive": "h", "title": "t", "skills": ["has space"]}, "pattern"),
    ("post_task", {"hive": "h", "title": "t", "depends_on": ["no-such-task"]}, "no task"),
    ("post_task", {"hive": "missing", "title": "t"}, "no hive 'missing'"),
    ("post_task", {"hive": "h", "title": 42}, "valid string"),
    ("claim_next_task", {"hive": "h"}, "agent"),
    ("claim_next_task", {"hive": "h", "agent": "a\nb"}, "pattern"),
    ("complete_task", {"hive": "h", "task": "nope", "agent": "ada"}, "no task"),
    ("complete_task", {"hive": "h", "task": "t", "agent": "ghost"}, "no agent 'ghost'"),
    ("release_task", {"hive": "h", "task": "t", "agent": "ada"}, "not held by"),
    ("board_status", {"hive": "h", "states": ["sleeping"]}, "sleeping"),
    ("memory_search", {"query": ""}, "at least 1 character"),
    ("memory_search", {"query": "q", "limit": 0}, "greater than or equal"),
    ("no_such_tool", {}, "no_such_tool"),
])
async def test_bad_calls_are_tool_errors_and_the_server_keeps_serving(
        store: SqlStore, tmp_path: Path, tool: str, arguments: dict[str, Any], says: str) -> None:
    async with connect(store, tmp_path) as client:
        hive = await new_hive(client)
        await call(client, "post_task", hive="h", title="t")
        before = store.count_tasks(hive["id"])
        assert says in await refused(client, tool, **arguments)
        assert store.count_tasks(hive["id"]) == before
        status = await call(client, "board_status", hive="h")
        assert status["counts"]["open"] == 1


async def test_a_refused_call_on_a_hive_is_recorded(store: SqlStore, tmp_path: Path) -> None:
    async with connect(store, tmp_path) as client:
        hive = await new_hive(client)
        await refused(client, "release_task", hive="h", task="nope", agent="ada")
        last = store.events(hive["id"], kinds=[EventKind.MCP_CALL])[-1]
        assert last.data["tool"] == "release_task"
        assert last.data["ok"] is False
        assert "no task" in last.data["error"]


async def test_a_paused_hive_hands_out_no_work(store: SqlStore, tmp_path: Path) -> None:
    async with connect(store, tmp_path) as client:
        from ruflo.model import HiveStatus

        hive = await new_hive(client)
        await call(client, "post_task", hive="h", title="t")
        store.set_hive_status(hive["id"], HiveStatus.PAUSED, reason="gateway refused the key")
        assert "gateway refused the key" in await refused(client, "claim_next_task", hive="h",
                                                          agent="ada")
