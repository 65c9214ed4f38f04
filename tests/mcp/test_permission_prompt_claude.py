"""The real Claude Code (`claude -p --permission-prompt-tool mcp__ruflo__permission_prompt`)
asking `ruflo mcp` before it runs `rm -rf build`: the question waits (no model call meanwhile),
a real `ruflo approval approve|reject` decides it, and Claude Code runs the command or reads the
reason. The model is the ScriptedGateway's Anthropic Messages endpoint.

Needs the claude binary scripts/install puts in .agent-clis (or on PATH): skipped without it,
failed instead in CI (tests/agent_clis.py `require_agent_cli`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_transports import server_env

from agent_clis import require_agent_cli
from ruflo.gateway.scripted import ScriptedGateway
from ruflo.model import Agent, ApprovalStatus, Hive, Mode, Task
from ruflo.store import open_store
from waiting import stays_sync, wait_until

pytestmark = pytest.mark.integration

RUFLO = str(Path(sys.executable).with_name("ruflo"))
RULES = [
    {"match": {"last_user": "(?i)wipe the build", "turn": 1}, "reply": {"tool_calls": [
        {"name": "Bash", "arguments": {"command": "rm -rf build", "description": "Wipe"}}]}},
    {"match": {"last_tool": "."}, "reply": {"content": "finished"}},
]


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_claude_code_asks_ruflo_and_waits_for_the_person(tmp_path: Path, decision: str) -> None:
    program = require_agent_cli("claude-code")
    data, work, home = tmp_path / "data", tmp_path / "work", tmp_path / "home"
    (work / "build").mkdir(parents=True)
    home.mkdir()
    (work / "build" / "out.o").write_text("object")
    env_mcp = server_env(data)
    store = open_store(f"sqlite:///{data / 'ruflo.db'}")
    store.create_hive(Hive(id="h1", name="outside", mode=Mode.SWARM, objective="tidy",
                           workspace=str(work)),
                      agents=[Agent(id="a1", hive_id="h1", name="claude")],
                      tasks=[Task(id="t1", hive_id="h1", title="Clean the build")])
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"ruflo": {"command": RUFLO, "env": env_mcp,
        "args": ["mcp", "--hive", "outside", "--agent", "claude", "--task", "t1"]}}}))
    gateway = ScriptedGateway({"keys": ["sk-test"], "rules": RULES, "default": {"content": "ok"}})
    url = gateway.start().removesuffix("/v1")
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "ANTHROPIC_BASE_URL": url,
           "ANTHROPIC_AUTH_TOKEN": "sk-test", "ANTHROPIC_MODEL": "claude-sonnet-4-5",
           "ANTHROPIC_SMALL_FAST_MODEL": "claude-sonnet-4-5", "DISABLE_TELEMETRY": "1",
           "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "MCP_TOOL_TIMEOUT": "600000"}
    claude = subprocess.Popen(
        [program, "-p", "wipe the build folder", "--output-format", "json", "--max-turns", "4",
         "--mcp-config", str(config), "--permission-prompt-tool",
         "mcp__ruflo__permission_prompt"], cwd=work, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        approval = wait_until(lambda: next(iter(store.list_approvals(
            hive_id="h1", status=ApprovalStatus.PENDING)), None), what="Claude Code never asked",
            explain=lambda: f"claude exited {claude.poll()}")
        assert approval.data["subject"] == "rm -rf build"
        stays_sync(lambda: len(gateway.requests) == 1 and claude.poll() is None,
                   what="Claude Code called the model or ended while the question waited")
        args = [RUFLO, "approval", decision, approval.id]
        done = subprocess.run(args + (["--reason", "keep the cache"] if decision == "reject"
                                      else []), env=env_mcp, capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        out, err = claude.communicate(timeout=120)
    finally:
        if claude.poll() is None:
            claude.kill()
        gateway.stop()
        store.close()
    assert claude.returncode == 0, err
    assert json.loads(out)["is_error"] is False
    tool_result = gateway.requests[1]["messages"][-1]
    assert tool_result["role"] == "tool"
    if decision == "approve":
        assert not (work / "build").exists()
    else:
        assert (work / "build" / "out.o").exists()
        assert "rejected" in tool_result["content"]
        assert "keep the cache" in tool_result["content"]
