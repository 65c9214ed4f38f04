"""Claude Code's permission questions (`claude --permission-prompt-tool mcp__ruflo__permission_
prompt`), answered by the same action policies and approvals as the built-in agent: Bash is
run_command, Write is write, Edit/MultiEdit/NotebookEdit are edit, Read/Glob/Grep/LS are read.
Depends on agents/asking.py, agents/permissions.py and the core model.

The answer is what Claude Code reads from the tool's text: {"behavior": "allow", "updatedInput":
<the input, unchanged>} or {"behavior": "deny", "message": <why>}. "ask" keeps the tool call open
until a person decides (the CLI, the hive page, the API or Telegram).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ruflo.agents.asking import ActionGate
from ruflo.agents.permissions import Action
from ruflo.model import new_id

__all__ = ["CLAUDE_TOOLS", "answer_permission", "ruflo_action"]

CLAUDE_TOOLS: dict[str, Action] = {
    "Bash": Action.RUN_COMMAND, "Write": Action.WRITE, "Edit": Action.EDIT,
    "MultiEdit": Action.EDIT, "NotebookEdit": Action.EDIT, "Read": Action.READ,
    "Glob": Action.READ, "Grep": Action.READ, "LS": Action.READ, "NotebookRead": Action.READ,
}
"""Claude Code's tools that a ruflo policy governs; its others are allowed (ruflo has no action
for them)."""


def _relative(path: object, workspace: Path | None) -> str:
    """A path as the policy sees it: relative to the hive's workspace when inside it."""
    text = path if isinstance(path, str) else ""
    if workspace is not None and text.startswith("/"):
        try:
            return Path(text).resolve().relative_to(workspace.resolve()).as_posix()
        except ValueError:
            return text
    return text


def ruflo_action(tool_name: str, tool_input: Mapping[str, Any],
                 workspace: Path | None) -> tuple[Action, dict[str, Any]] | None:
    """The ruflo action and its arguments (as the built-in agent's tools name them) for one of
    Claude Code's tool calls; None when no policy governs it."""
    action = CLAUDE_TOOLS.get(tool_name)
    if action is None:
        return None
    path = _relative(tool_input.get("file_path") or tool_input.get("notebook_path")
                     or tool_input.get("path") or tool_input.get("pattern") or ".", workspace)
    if action is Action.RUN_COMMAND:
        return action, {"command": str(tool_input.get("command", ""))}
    if tool_name == "Write":
        return action, {"path": path, "content": str(tool_input.get("content", ""))}
    if tool_name == "Edit":
        return action, {"path": path, "old": str(tool_input.get("old_string", "")),
                        "new": str(tool_input.get("new_string", ""))}
    if tool_name == "MultiEdit":
        raw = tool_input.get("edits")
        edits: list[Any] = raw if isinstance(raw, list) else []
        first = edits[0] if edits and isinstance(edits[0], dict) else {}
        return action, {"path": path, "old": str(first.get("old_string", "")),
                        "new": str(first.get("new_string", "")), "edits": len(edits)}
    return action, {"path": path}


async def answer_permission(gate: ActionGate, tool_name: str, tool_input: Mapping[str, Any],
                            tool_use_id: str | None) -> dict[str, Any]:
    """Claude Code's answer for one permission question (waiting on a person for "ask")."""
    governed = ruflo_action(tool_name, tool_input, gate.workspace.root if gate.workspace else None)
    if governed is None:
        return {"behavior": "allow", "updatedInput": dict(tool_input)}
    action, arguments = governed
    # Without Claude Code's tool-use id, each question is its own (never an earlier decision).
    asked = await gate.decide(action, tool_name, arguments, step=tool_use_id or new_id())
    if asked.refusal is None:
        return {"behavior": "allow", "updatedInput": dict(tool_input)}
    return {"behavior": "deny", "message": asked.refusal.removeprefix("error: ")}
