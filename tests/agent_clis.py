"""The agent CLI tests' helpers: the real CLI's program (or a skip, or in CI a failure, when it is
not installed) and ScriptedGateway rules that make an agent fix a file with its own tools: Claude Code (Read,
Edit: Anthropic Messages tool_use), Codex (exec_command, then apply_patch through it: Responses
function calls), Gemini CLI (read_file, replace: Gemini function calls), OpenCode (read, edit:
chat completions), aider (its whole-file edit in the answer's text) and the built-in agent
(read_file, edit_file, complete: chat completions).

Each agent is told apart by the tools its requests offer (aider, which offers none, by its system
prompt), each task by a marker in its prompt; a rule answers turn 1 (read), turn 2 once the
file's text came back (edit), turn 3 (done). aider reads the files it is given before its first
request: its one rule (edit) answers a request that carries the file's text.
"""

from __future__ import annotations

import os
import re
from typing import Any

import pytest

TOOLS = {"claude-code": "Edit", "codex": "exec_command", "gemini-cli": "replace",
         "opencode": "todowrite", "llm": "edit_file"}
"""A tool only that agent's requests offer."""


def patch(path: str, old: str, new: str) -> str:
    """Codex's apply_patch, as the command its exec_command runs (Codex intercepts it)."""
    return (f"apply_patch <<'EOF'\n*** Begin Patch\n*** Update File: {path}\n@@\n-{old}\n"
            f"+{new}\n*** End Patch\nEOF")


def fix_rules(agent: str, path: str, old: str, new: str, *, marker: str | None = None,
              final: str = "Fixed it.") -> list[dict[str, Any]]:
    """Rules for `agent` to read `path` (a path relative to its worktree), replace the line
    `old` with `new`, and finish, for the task titled `marker` (any task: None)."""
    task = None if marker is None else f"(?m)^Task: {re.escape(marker)}$"
    if agent == "aider":
        return aider_rules(path, old, new, task=task, final=final, name=f"aider:{marker or path}")
    base: dict[str, Any] = {"tool": TOOLS[agent]}
    if task is not None:
        # The task's own line, not the hive's notes (which quote other tasks) in the prompt.
        base["any"] = task
    if agent == "claude-code":
        read = {"name": "Read", "arguments": {"file_path": path}}
        edit = {"name": "Edit", "arguments": {"file_path": path, "old_string": old.strip(),
                                              "new_string": new.strip()}}
        done: dict[str, Any] = {"content": final}
    elif agent == "codex":
        read = {"name": "exec_command", "arguments": {"cmd": f"cat {path}"}}
        edit = {"name": "exec_command", "arguments": {"cmd": patch(path, old, new)}}
        done = {"content": final}
    elif agent == "gemini-cli":
        read = {"name": "read_file", "arguments": {"file_path": path}}
        edit = {"name": "replace", "arguments": {
            "file_path": path, "instruction": "fix the line", "old_string": old.strip(),
            "new_string": new.strip()}}
        done = {"content": final}
    elif agent == "opencode":
        read = {"name": "read", "arguments": {"filePath": path}}
        edit = {"name": "edit", "arguments": {"filePath": path, "oldString": old.strip(),
                                              "newString": new.strip()}}
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


def aider_rules(path: str, old: str, new: str, *, task: str | None, final: str,
                name: str) -> list[dict[str, Any]]:
    """aider's turn: given `path` (adapter config `files`), it sends the file's text with its
    first request; the answer's SEARCH/REPLACE block (its `diff` edit format, the preset's
    default) is the edit."""
    match: dict[str, Any] = {"system": "(?i)expert software developer", "any": re.escape(old)}
    if task is not None:
        match["last_user"] = task
    block = f"{path}\n```\n<<<<<<< SEARCH\n{old}\n=======\n{new}\n>>>>>>> REPLACE\n```\n"
    return [{"name": f"{name}:edit", "match": match,
             "reply": {"content": f"{final}\n\n{block}"}}]


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
