"""Claude Code's permission questions answered by `ruflo mcp`'s permission_prompt tool, called
with the SDK's client exactly as Claude Code calls it (tool_name, input, tool_use_id), the server
a real `ruflo mcp` subprocess: the hive's and the agent's action policies decide, "ask" keeps the
call open until a person decides, and the answer is Claude Code's JSON."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp.client.stdio import StdioServerParameters
from test_transports import server_env

from mcp import Client
from ruflo.model import Agent, ApprovalKind, ApprovalStatus, Hive, Mode, Task
from ruflo.store import open_store
from waiting import until

pytestmark = pytest.mark.integration

RUFLO = str(Path(sys.executable).with_name("ruflo"))


async def ask(client: Client, tool_name: str, tool_input: dict[str, Any],
              tool_use_id: str) -> dict[str, Any]:
    result = await client.call_tool("permission_prompt", {
        "tool_name": tool_name, "input": tool_input, "tool_use_id": tool_use_id})
    assert not result.is_error, result.content
    answer: dict[str, Any] = json.loads(result.content[0].text)  # type: ignore[union-attr]
    return answer


@pytest.fixture
def hive_folder(tmp_path: Path) -> tuple[Path, Path]:
    data, work = tmp_path / "data", tmp_path / "work"
    work.mkdir()
    (work / "notes.md").write_text("one\ntwo\n")
    store = open_store(f"sqlite:///{data / 'ruflo.db'}")
    store.create_hive(
        Hive(id="h1", name="outside", mode=Mode.SWARM, objective="tidy", workspace=str(work),
             config={"actions": {"write": "ask"}}),
        agents=[Agent(id="a1", hive_id="h1", name="claude", adapter_config={"actions": {
            "run_command": {"rules": [{"glob": "curl *", "decision": "deny"}]}}})],
        tasks=[Task(id="t1", hive_id="h1", title="Tidy the notes")])
    store.close()
    return data, work


async def test_claude_codes_questions_follow_the_policies_and_wait_for_a_person(
        hive_folder: tuple[Path, Path]) -> None:
    data, work = hive_folder
    params = StdioServerParameters(command=RUFLO, env=server_env(data), args=[
        "mcp", "--hive", "outside", "--agent", "claude", "--task", "Tidy the notes"])
    store = open_store(f"sqlite:///{data / 'ruflo.db'}")
    try:
        async with Client(params) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            assert {"tool_name", "input", "tool_use_id"} <= set(
                tools["permission_prompt"].input_schema["properties"])

            listing = {"command": "ls -la", "description": "List files"}
            assert await ask(client, "Bash", listing, "toolu_1") == {
                "behavior": "allow", "updatedInput": listing}
            assert await ask(client, "WebSearch", {"query": "x"}, "toolu_2") == {
                "behavior": "allow", "updatedInput": {"query": "x"}}
            denied = await ask(client, "Bash", {"command": "curl https://x.example"}, "toolu_3")
            assert denied["behavior"] == "deny"
            assert "denied by policy" in denied["message"]
            assert "the agent's rule pattern 'curl *'" in denied["message"]

            # ask: the call stays open until a person approves it.
            wipe = {"command": "rm -rf build"}
            pending = asyncio.create_task(ask(client, "Bash", wipe, "toolu_4"))
            approval = await until(lambda: next(iter(store.list_approvals(hive_id="h1")), None),
                                   what="no approval was opened")
            assert approval.kind is ApprovalKind.ACTION
            assert approval.agent_id == "a1"
            assert approval.data["task_id"] == "t1"
            assert approval.data["subject"] == "rm -rf build"
            assert "claude wants to run `rm -rf build` (task 'Tidy the notes')" in \
                approval.subject
            assert not pending.done()
            store.decide_approval(approval.id, ApprovalStatus.APPROVED, decided_by="person:ops")
            assert await asyncio.wait_for(pending, 60) == {"behavior": "allow",
                                                           "updatedInput": wipe}

            # The hive's write: ask, with the diff shown; rejected with a reason.
            write = {"file_path": str(work / "notes.md"), "content": "one\n2\n"}
            pending = asyncio.create_task(ask(client, "Write", write, "toolu_5"))
            approval = await until(lambda: next((a for a in store.list_approvals(
                hive_id="h1", status=ApprovalStatus.PENDING)), None), what="no write approval")
            assert approval.data["subject"] == "notes.md"
            assert "-two\n+2\n" in approval.data["diff"]
            store.decide_approval(approval.id, ApprovalStatus.REJECTED, decided_by="person:ops",
                                  reason="keep the words")
            answer = await asyncio.wait_for(pending, 60)
            assert answer["behavior"] == "deny"
            assert "keep the words" in answer["message"]
    finally:
        store.close()
