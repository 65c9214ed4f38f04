"""The agent CLI tests' helpers: the real CLI's program (or a skip, or in CI a failure, when it is
not installed) and ScriptedGateway rules that make an agent fix a file with its own tools: Claude Code (Read,
Edit: Anthropic Messages tool_use), Codex (exec_command, then apply_patch through it: Responses
function calls) and the built-in agent (read_file, edit_file, complete: chat completions).

Each agent is told apart by the tools its requests offer, each task by a marker in its prompt;
a rule answers turn 1 (read), turn 2 once the file's text came back (edit), turn 3 (done).
"""

from __future__ import annotations

import os
import re
from typing import Any

import pytest

TOOLS = {"claude-code": "Edit", "codex": "exec_command", "llm": "edit_file"}
"""A tool only that agent's requests offer."""


def patch(path: str, old: str, new: str) -> str:
    """Codex's apply_patch, as the command its exec_command runs (Codex intercepts it)."""
    return (f"apply_patch <<'EOF'\n*** Begin Patch\n*** Update File: {path}\n@@\n-{old}\n"
            f"+{new}\n*** End Patch\nEOF")


def fix_rules(agent: str, path: str, old: str, new: str, *, marker: str | None = None,
              final: str = "Fixed it.") -> list[dict[str, Any]]:
    """Rules for `agent` to read `path` (a path relative to its worktree), replace the line
    `old` with `new`, and finish, for the task titled `marker` (any task: None)."""
    base: dict[str, Any] = {"tool": TOOLS[agent]}
    if marker is not None:
        # The task's own line, not the hive's notes (which quote other tasks) in the prompt.
        base["any"] = f"(?m)^Task: {re.escape(marker)}$"
    if agent == "claude-code":
        read = {"name": "Read", "arguments": {"file_path": path}}
        edit = {"name": "Edit", "arguments": {"file_path": path, "old_string": old.strip(),
                                              "new_string": new.strip()}}
        done: dict[str, Any] = {"content": final}
    elif agent == "codex":
        read = {"name": "exec_command", "arguments": {"cmd": f"cat {path}"}}
        edit = {"name": "exec_command", "arguments": {"cmd": patch(path, old, new)}}
        done = {"content": final}
    else:
        read = {"name": "read_file", "arguments": {"path": path}}
        edit = {"name": "edit_file", "arguments": {"path": path, "old": old.strip(),
                                                   "new": new.strip()}}
        done = {"tool_calls": [{"name": "complete", "arguments": {"result": final}}]}
    name = f"{agent}:{marker or path}"
    return [
        {"name": f"{name}:read", "match": {**base, "turn": 1}, "reply": {"tool_calls": [read]}},
        {"name": f"{name}:edit", "match": {**base, "turn": 2, "last_tool": re.escape(old.strip())},
         "reply": {"tool_calls": [edit]}},
        {"name": f"{name}:done", "match": {**base, "turn": 3}, "reply": done},
    ]


def must_run_agent_clis() -> bool:
    """In CI (or when asked) a missing agent CLI is a failure, never a skip."""
    return (os.environ.get("CI", "").lower() in ("1", "true", "yes")
            or os.environ.get("RUFLO_REQUIRE_AGENT_CLIS") == "1")


def require_agent_cli(name: str) -> str:
    """The program of the agent CLI `name` (the real one scripts/install puts in .agent-clis);
    skips with the reason when it is not installed, fails instead under CI=true or
    RUFLO_REQUIRE_AGENT_CLIS=1."""
    from ruflo.agents.presets import find_program, preset_for

    preset = preset_for(name)
    program = find_program(preset, {}, os.environ.get("PATH"))
    if program is None:
        why = (f"requires agent CLI {name}: {preset.program!r} is not on PATH or in "
               f".agent-clis; scripts/install installs {preset.package}")
        if must_run_agent_clis():
            pytest.fail(why + " (CI: the agent CLI tests must run)")
        pytest.skip(why)
    return program
