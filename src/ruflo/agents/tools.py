"""The built-in agent's tools: their JSON schemas (OpenAI function format) and their dispatch.

Depends on the workspace, command runner, memory and the Executor types. A tool never raises to
the loop for a bad call: invalid JSON, a missing argument or a path out of the workspace come back
as an error text the model reads and can act on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ruflo.agents.base import (
    OutcomeKind,
    RunContext,
    SubtaskSpec,
    TaskOutcome,
    TaskTool,
)
from ruflo.agents.commands import command_env, run_command
from ruflo.agents.workspace import Workspace
from ruflo.errors import WorkspaceError
from ruflo.memory.notes import Memory, agent_namespace, hive_namespace
from ruflo.model import JSON, Agent, Hive, Task


def _tool(name: str, description: str, properties: dict[str, JSON],
          required: tuple[str, ...] = ()) -> JSON:
    return {"type": "function", "function": {
        "name": name, "description": description,
        "parameters": {"type": "object", "properties": properties,
                       "required": list(required), "additionalProperties": False}}}


_STR: JSON = {"type": "string"}
_INT: JSON = {"type": "integer"}

WORK_TOOLS: tuple[JSON, ...] = (
    _tool("list_files", "List files under a folder of the workspace (recursive).",
          {"path": {"type": "string", "description": "Folder relative to the workspace; "
                                                     "default '.'"}}),
    _tool("read_file", "Read a text file of the workspace, optionally a range of lines.",
          {"path": _STR, "start_line": _INT, "end_line": _INT}, ("path",)),
    _tool("write_file", "Create or overwrite a file with the given content.",
          {"path": _STR, "content": _STR}, ("path", "content")),
    _tool("edit_file", "Replace one exact occurrence of `old` with `new` in a file. `old` must "
                       "match exactly once (whitespace included).",
          {"path": _STR, "old": _STR, "new": _STR}, ("path", "old", "new")),
    _tool("search_text", "Find lines containing `pattern` in the workspace's files.",
          {"pattern": _STR, "path": _STR,
           "regex": {"type": "boolean", "description": "treat pattern as a regular expression"}},
          ("pattern",)),
    _tool("run_command", "Run a shell command in the workspace; returns exit code and output.",
          {"command": _STR, "timeout": {"type": "number", "description": "seconds"}},
          ("command",)),
    _tool("memory_store", "Leave a note for the other agents (scope 'hive', default) or for "
                          "yourself (scope 'agent').",
          {"key": _STR, "content": _STR, "tags": {"type": "array", "items": _STR},
           "scope": {"type": "string", "enum": ["hive", "agent"]}}, ("key", "content")),
    _tool("memory_search", "Search the notes left by the hive and by you.",
          {"query": _STR, "limit": _INT}, ("query",)),
)

TASK_TOOLS: dict[TaskTool, JSON] = {
    TaskTool.COMPLETE: _tool(
        "complete", "Finish the task: say what you did. The task's verify command, if any, "
                    "decides whether it counts.", {"result": _STR}, ("result",)),
    TaskTool.ABSTAIN: _tool(
        "abstain", "Give the task back to the board: it does not fit your skills.",
        {"reason": _STR}, ("reason",)),
    TaskTool.POST_SUBTASKS: _tool(
        "post_subtasks", "Split the task into subtasks posted to the board. depends_on lists "
                         "other subtasks of this list by 0-based index or title.",
        {"subtasks": {"type": "array", "items": {
            "type": "object", "required": ["title"], "additionalProperties": False,
            "properties": {"title": _STR, "description": _STR,
                           "skills": {"type": "array", "items": _STR},
                           "depends_on": {"type": "array", "items": {"type": ["string",
                                                                              "integer"]}},
                           "verify": _STR}}}},
        ("subtasks",)),
    TaskTool.DELEGATE: _tool(
        "delegate", "Hand the work to one of your reports (by name or id).",
        {"report": _STR, "title": _STR, "description": _STR}, ("report", "title")),
    TaskTool.ESCALATE: _tool(
        "escalate", "You are blocked: pass the task up to your manager with the reason.",
        {"reason": _STR}, ("reason",)),
}


TASK_TOOL_NAMES = frozenset(t.value for t in TaskTool)
"""Tools whose only effect is the attempt's outcome."""


def tool_schemas(task_tools: frozenset[TaskTool]) -> list[JSON]:
    """The tools offered to the model, task tools in a stable order."""
    return [*WORK_TOOLS, *(TASK_TOOLS[t] for t in TaskTool if t in task_tools)]


def truncate(text: str, limit: int) -> str:
    """`text` cut to about `limit` characters, keeping its head and tail around a marker."""
    if len(text) <= limit:
        return text
    keep = max(0, limit - 60)
    head, tail = text[:keep // 2], text[len(text) - keep // 2:] if keep else ""
    return f"{head}\n[... {len(text) - len(head) - len(tail)} characters cut ...]\n{tail}"


@dataclass(frozen=True, slots=True)
class ToolReply:
    """What a tool call gave back: the text the model reads, and an outcome for task tools."""

    content: str
    error: bool = False
    outcome: TaskOutcome | None = None


class ToolArgumentError(Exception):
    """A tool call's arguments are missing or of the wrong type (reported to the model)."""


class ToolBox:
    """Runs the tools of one agent on one task."""

    def __init__(self, *, task: Task, agent: Agent, hive: Hive, ctx: RunContext,
                 memory: Memory, workspace: Workspace) -> None:
        self.task, self.agent, self.hive, self.ctx = task, agent, hive, ctx
        self.memory = memory
        self.workspace = workspace
        self.env = dict(ctx.env) if ctx.env else command_env()
        self.changed_files: list[str] = []
        self.commands_run = 0
        self.handlers: dict[str, Callable[[JSON], Any]] = {
            "list_files": self.list_files, "read_file": self.read_file,
            "write_file": self.write_file, "edit_file": self.edit_file,
            "search_text": self.search_text, "run_command": self.run_command,
            "memory_store": self.memory_store, "memory_search": self.memory_search,
        }
        offered: dict[TaskTool, Callable[[JSON], Any]] = {
            TaskTool.COMPLETE: self.complete, TaskTool.ABSTAIN: self.abstain,
            TaskTool.POST_SUBTASKS: self.post_subtasks, TaskTool.DELEGATE: self.delegate,
            TaskTool.ESCALATE: self.escalate}
        for tool, handler in offered.items():
            if tool in ctx.task_tools:
                self.handlers[tool.value] = handler

    async def call(self, name: str, raw_arguments: str) -> ToolReply:
        """Run one tool call; every failure becomes an error reply the model can read."""
        handler = self.handlers.get(name)
        if handler is None:
            return ToolReply(f"error: there is no tool named {name!r}; available: "
                             f"{', '.join(sorted(self.handlers))}", error=True)
        try:
            arguments = json.loads(raw_arguments or "{}")
        except json.JSONDecodeError as problem:
            return ToolReply(f"error: the arguments of {name} are not valid JSON ({problem}); "
                             "send a JSON object", error=True)
        if not isinstance(arguments, dict):
            return ToolReply(f"error: the arguments of {name} must be a JSON object", error=True)
        try:
            result = handler(arguments)
            if hasattr(result, "__await__"):
                result = await result
        except (WorkspaceError, ToolArgumentError) as problem:
            return ToolReply(f"error: {problem}", error=True)
        except OSError as problem:
            return ToolReply(f"error: {problem.strerror or problem}", error=True)
        if isinstance(result, ToolReply):
            return result
        return ToolReply(truncate(str(result), self.ctx.limits.tool_output_chars))

    # -- work tools ----------------------------------------------------------------------------
    def list_files(self, args: JSON) -> str:
        return self.workspace.list_files(optional_str(args, "path") or ".")

    def read_file(self, args: JSON) -> str:
        return self.workspace.read_file(required_str(args, "path"),
                                        start_line=optional_int(args, "start_line"),
                                        end_line=optional_int(args, "end_line"))

    def write_file(self, args: JSON) -> str:
        path = required_str(args, "path")
        done = self.workspace.write_file(path, required_str(args, "content", allow_empty=True))
        self.changed_files.append(path)
        return done

    def edit_file(self, args: JSON) -> str:
        path = required_str(args, "path")
        done = self.workspace.edit_file(path, required_str(args, "old"),
                                        required_str(args, "new", allow_empty=True))
        self.changed_files.append(path)
        return done

    def search_text(self, args: JSON) -> str:
        regex = args.get("regex", False)
        return self.workspace.search_text(required_str(args, "pattern"),
                                          optional_str(args, "path") or ".",
                                          regex=bool(regex))

    async def run_command(self, args: JSON) -> ToolReply:
        command = required_str(args, "command")
        limits = self.ctx.limits
        timeout = args.get("timeout")
        seconds = limits.command_timeout
        if isinstance(timeout, int | float) and not isinstance(timeout, bool) and timeout > 0:
            seconds = min(float(timeout), limits.command_timeout)
        outcome = await run_command(command, cwd=self.workspace.root, env=self.env,
                                    time_limit=seconds, grace=limits.command_grace,
                                    output_limit=limits.command_output_bytes,
                                    sandbox=self.ctx.sandbox)
        self.commands_run += 1
        return ToolReply(truncate(outcome.summary(), limits.tool_output_chars),
                         error=not outcome.ok)

    def memory_store(self, args: JSON) -> str:
        scope = optional_str(args, "scope") or "hive"
        if scope not in ("hive", "agent"):
            raise ToolArgumentError("scope must be 'hive' or 'agent'")
        namespace = (hive_namespace(self.hive.id) if scope == "hive"
                     else agent_namespace(self.agent.id))
        tags = args.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ToolArgumentError("tags must be a list of strings")
        self.memory.put(namespace, required_str(args, "key"), required_str(args, "content"),
                        tags=tags)
        return f"stored note {required_str(args, 'key')!r} in {namespace}"

    def memory_search(self, args: JSON) -> str:
        limit = optional_int(args, "limit") or 5
        notes = self.memory.search_many(
            required_str(args, "query"),
            [hive_namespace(self.hive.id), agent_namespace(self.agent.id)],
            limit=max(1, min(limit, 20)))
        if not notes:
            return "no notes found"
        return "\n\n".join(f"[{n.namespace} / {n.key}]\n{n.content}" for n in notes)

    # -- task tools ----------------------------------------------------------------------------
    def complete(self, args: JSON) -> ToolReply:
        result = required_str(args, "result")
        return ToolReply("task marked complete",
                         outcome=TaskOutcome(OutcomeKind.COMPLETE, result=result))

    def abstain(self, args: JSON) -> ToolReply:
        reason = required_str(args, "reason")
        return ToolReply("task given back", outcome=TaskOutcome(OutcomeKind.ABSTAIN,
                                                                reason=reason))

    def post_subtasks(self, args: JSON) -> ToolReply:
        items = args.get("subtasks")
        if not isinstance(items, list) or not items:
            raise ToolArgumentError("subtasks must be a non-empty list")
        specs: list[SubtaskSpec] = []
        titles: list[str] = []
        for number, item in enumerate(items):
            if not isinstance(item, dict):
                raise ToolArgumentError(f"subtask {number} must be an object")
            title = required_str(item, "title")
            skills = item.get("skills") or []
            depends = item.get("depends_on") or []
            if not isinstance(skills, list) or not all(isinstance(s, str) for s in skills):
                raise ToolArgumentError(f"subtask {number}: skills must be a list of strings")
            if not isinstance(depends, list):
                raise ToolArgumentError(f"subtask {number}: depends_on must be a list")
            resolved: list[str] = []
            for ref in depends:
                if isinstance(ref, int) and not isinstance(ref, bool):
                    if not 0 <= ref < len(items) or ref == number:
                        raise ToolArgumentError(f"subtask {number}: depends_on index {ref} "
                                                "does not name another subtask of this list")
                    resolved.append(str(ref))
                elif isinstance(ref, str) and ref:
                    resolved.append(ref)
                else:
                    raise ToolArgumentError(f"subtask {number}: bad depends_on entry {ref!r}")
            specs.append(SubtaskSpec(title=title, description=optional_str(item, "description")
                                     or "", skills=tuple(skills), depends_on=tuple(resolved),
                                     verify=optional_str(item, "verify")))
            titles.append(title)
        return ToolReply(f"{len(specs)} subtasks will be posted: {'; '.join(titles)}",
                         outcome=TaskOutcome(OutcomeKind.DECOMPOSE, subtasks=tuple(specs)))

    def delegate(self, args: JSON) -> ToolReply:
        report = required_str(args, "report")
        target = next((a for a in self.ctx.reports if report in (a.id, a.name)), None)
        if self.ctx.reports and target is None:
            names = ", ".join(f"{a.name} ({a.title or a.role})" for a in self.ctx.reports)
            raise ToolArgumentError(f"{report!r} is not one of your reports: {names}")
        return ToolReply(f"delegated to {report}", outcome=TaskOutcome(
            OutcomeKind.DELEGATE, delegate_to=target.id if target else report,
            delegate_title=required_str(args, "title"),
            delegate_description=optional_str(args, "description") or ""))

    def escalate(self, args: JSON) -> ToolReply:
        reason = required_str(args, "reason")
        return ToolReply("escalated to your manager",
                         outcome=TaskOutcome(OutcomeKind.ESCALATE, reason=reason))


def required_str(args: JSON, name: str, *, allow_empty: bool = False) -> str:
    value = args.get(name)
    if not isinstance(value, str) or (not value and not allow_empty):
        raise ToolArgumentError(f"argument {name!r} is required and must be a "
                                f"{'' if allow_empty else 'non-empty '}string")
    return value


def optional_str(args: JSON, name: str) -> str | None:
    value = args.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ToolArgumentError(f"argument {name!r} must be a string")
    return value


def optional_int(args: JSON, name: str) -> int | None:
    value = args.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ToolArgumentError(f"argument {name!r} must be an integer")
    return value
