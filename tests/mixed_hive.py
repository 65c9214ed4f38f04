"""The mixed hive of issue 22, shared by its API test and its browser test: the built-in agent,
the real Claude Code and the real Codex, each with one skill (its own name) and its own git
worktree, and three tasks (fix builtin.py, claude.py, codex.py), one per skill, each verified
by grep. The ScriptedGateway rules let whichever agent takes a task fix it with its own tools."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from agent_clis import fix_rules, require_agent_cli
from ruflo.agents.commands import command_env
from ruflo.agents.gitwork import init_repo
from ruflo.engine.board_engine import BoardEngine, LiveParams
from ruflo.engine.isolation import isolation_config
from ruflo.gateway.client import GatewayClient
from ruflo.model import AdapterKind, Agent, Hive, Mode, Task
from ruflo.store.base import Store

FAST = LiveParams(lease_seconds=60.0, time_unit=0.05, poll_seconds=0.2)
CREW = {"builtin": AdapterKind.LLM, "claude": AdapterKind.CLAUDE_CODE,
        "codex": AdapterKind.CODEX}
"""Agent name → adapter; each has one skill, its own name, and one task needs it."""
RULE_AGENT = {AdapterKind.LLM: "llm", AdapterKind.CLAUDE_CODE: "claude-code",
              AdapterKind.CODEX: "codex"}
TOOL_CALLS = {AdapterKind.LLM: ["read_file", "edit_file", "complete"],
              AdapterKind.CLAUDE_CODE: ["Read", "Edit"],
              AdapterKind.CODEX: ["shell", "apply_patch"]}
"""The tool calls each agent's transcript records (Codex's exec_command shows as its own items:
a shell command, then the apply_patch it intercepts)."""


def require_clis() -> None:
    require_agent_cli("claude-code")
    require_agent_cli("codex")


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


def script(key: str) -> dict[str, Any]:
    """The ScriptedGateway's script for the mixed hive, accepting `key`."""
    return {"keys": [key], "cost": 0.0001, "default": {"content": "ok"}, "rules": rules()}


def create_mixed_hive(store: Store, root: Path) -> tuple[Hive, list[Agent]]:
    """Store the mixed hive (repository under `root`/repo) with its three agents and tasks."""
    repo = root / "repo"
    repo_with_bugs(repo)
    config, _ = isolation_config(repo, None)
    hive = Hive(id="mixed", name="mixed", mode=Mode.SWARM, objective="fix the three files",
                workspace=str(repo), config=config)
    agents = [Agent(id=f"mixed-{name}", hive_id=hive.id, name=name, skills=(name,),
                    adapter=adapter, adapter_config={"timeout": 120} if adapter.is_agent_cli
                    else {}) for name, adapter in CREW.items()]
    tasks = [Task(id=f"mixed-{name}", hive_id=hive.id, title=f"Fix {name}.py", skills=(name,),
                  verify=f"grep -qx \"    return '{name} fixed'\" {name}.py") for name in CREW]
    store.create_hive(hive, agents=agents, tasks=tasks)
    return hive, agents


async def run_hive(store: Store, hive_id: str, gateway_url: str, key: str) -> Hive:
    """Run the hive's live engine against the gateway until it ends (at most 180 s)."""
    async with GatewayClient(gateway_url, key, store=store) as client:
        engine = BoardEngine(store, hive_id, gateway=client, params=FAST, env=command_env())
        return await asyncio.wait_for(engine.run(), 180)
