"""A mixed hive: the built-in agent, the real Claude Code and the real Codex, each in its own git
worktree, complete a three-task workload with verified success; the hive's API (what its page
shows) has each agent's transcript — its turns, tool calls and results — and its spend."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from server_harness import GATEWAY_KEY

from agent_clis import fix_rules, require_agent_cli
from ruflo.agents.commands import command_env
from ruflo.agents.gitwork import init_repo
from ruflo.engine.board_engine import BoardEngine, LiveParams
from ruflo.engine.isolation import isolation_config
from ruflo.gateway.client import GatewayClient
from ruflo.model import AdapterKind, Agent, Hive, HiveStatus, Mode, Task, TaskState

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FAST = LiveParams(lease_seconds=60.0, time_unit=0.05, poll_seconds=0.2)
CREW = {"builtin": AdapterKind.LLM, "claude": AdapterKind.CLAUDE_CODE,
        "codex": AdapterKind.CODEX}
"""Agent name → adapter; each has one skill, its own name, and one task needs it."""
RULE_AGENT = {AdapterKind.LLM: "llm", AdapterKind.CLAUDE_CODE: "claude-code",
              AdapterKind.CODEX: "codex"}


def repo_with_bugs(folder: Path) -> None:
    folder.mkdir()
    for name in CREW:
        (folder / f"{name}.py").write_text(f"def value():\n    return '{name} broken'\n")
    init_repo(folder)


def rules() -> list[dict[str, Any]]:
    """Every agent can fix every file (whoever takes a task, the script answers it)."""
    found = []
    for file in CREW:
        for adapter in CREW.values():
            found += fix_rules(RULE_AGENT[adapter], f"{file}.py", f"    return '{file} broken'",
                               f"    return '{file} fixed'", marker=f"Fix {file}.py",
                               final=f"{file}.py fixed")
    return found


async def test_builtin_claude_code_and_codex_finish_a_workload_and_show_their_transcripts(
        make_server, tmp_path: Path) -> None:
    require_agent_cli("claude-code")
    require_agent_cli("codex")
    served = make_server(script={"keys": [GATEWAY_KEY], "cost": 0.0001,
                                 "default": {"content": "ok"}, "rules": rules()})
    repo = tmp_path / "repo"
    repo_with_bugs(repo)
    config, _ = isolation_config(repo, None)
    hive = Hive(id="mixed", name="mixed", mode=Mode.SWARM, objective="fix the three files",
                workspace=str(repo), config=config)
    agents = [Agent(id=f"mixed-{name}", hive_id=hive.id, name=name, skills=(name,),
                    adapter=adapter, adapter_config={"timeout": 120} if adapter.is_agent_cli
                    else {}) for name, adapter in CREW.items()]
    tasks = [Task(id=f"mixed-{name}", hive_id=hive.id, title=f"Fix {name}.py", skills=(name,),
                  verify=f"grep -qx \"    return '{name} fixed'\" {name}.py") for name in CREW]
    served.store.create_hive(hive, agents=agents, tasks=tasks)

    async with GatewayClient(served.gateway.base_url, GATEWAY_KEY, store=served.store) as client:
        engine = BoardEngine(served.store, hive.id, gateway=client, params=FAST,
                             env=command_env())
        final = await asyncio.wait_for(engine.run(), 180)

    assert final.status is HiveStatus.DONE, final.pause_reason
    board = served.client.get(f"/api/v2/hives/{hive.id}/tasks").json()
    states = {t["title"]: (t["state"], t["verified"]) for t in board["tasks"]}
    assert states == {f"Fix {name}.py": (TaskState.DONE.value, True) for name in CREW}
    events = served.client.get(f"/api/v2/hives/{hive.id}/events",
                               params={"limit": 5000}).json()["events"]
    done_by = {e["task_id"]: e["agent_id"] for e in events if e["kind"] == "task_done"}
    assert sorted(done_by.values()) == sorted(a.id for a in agents), "each agent did one task"
    for agent in agents:
        mine = [e for e in events if e["agent_id"] == agent.id]
        kinds = {e["kind"] for e in mine}
        assert {"agent_turn", "tool_call", "tool_result", "task_verified"} <= kinds, agent.name
        calls = [e["data"]["name"] for e in mine if e["kind"] == "tool_call"]
        expected = {AdapterKind.LLM: ["read_file", "edit_file", "complete"],
                    AdapterKind.CLAUDE_CODE: ["Read", "Edit"],
                    AdapterKind.CODEX: ["shell", "apply_patch"]}[agent.adapter]
        assert calls == expected, agent.name
        if agent.adapter.is_agent_cli:
            [exited] = [e for e in mine if e["kind"] == "process_exited"]
            assert exited["data"]["exit_code"] == 0
            assert exited["data"]["final"].endswith(".py fixed")
    ledger = served.client.get(f"/api/v2/hives/{hive.id}/ledger").json()
    spenders = {e["agent_id"] for e in ledger["entries"]}
    assert spenders == {a.id for a in agents}, "every agent's calls went through the meter"
    shown = served.client.get(f"/api/v2/hives/{hive.id}").json()
    assert {a["name"]: a["adapter"] for a in shown["agents"]} == {
        name: adapter.value for name, adapter in CREW.items()}
    page = served.client.get(f"/hives/{hive.id}")
    assert page.status_code == 200
