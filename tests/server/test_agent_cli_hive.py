"""A mixed hive: the built-in agent, the real Claude Code and the real Codex, each in its own git
worktree, complete a three-task workload with verified success; the hive's API (what its page
shows) has each agent's transcript — its turns, tool calls and results — and its spend."""

from __future__ import annotations

from pathlib import Path

import pytest
from server_harness import GATEWAY_KEY

from mixed_hive import CREW, TOOL_CALLS, create_mixed_hive, require_clis, run_hive, script
from ruflo.model import HiveStatus, TaskState

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_builtin_claude_code_and_codex_finish_a_workload_and_show_their_transcripts(
        make_server, tmp_path: Path) -> None:
    require_clis()
    served = make_server(script=script(GATEWAY_KEY))
    hive, agents = create_mixed_hive(served.store, tmp_path)
    final = await run_hive(served.store, hive.id, served.gateway.base_url, GATEWAY_KEY)

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
        assert calls == TOOL_CALLS[agent.adapter], agent.name
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
