"""The tools a chat model is offered: ruflo's own hive operations (start a hive, show its board,
post a task, pause, resume, cancel, decide an approval), each a thin call into the hive API's own
routes, with the same access rules. Each tool has a policy per user: `allow` (runs at once), `ask`
(the person confirms first) or `off` (not offered). Tools that change something default to ask,
the others to allow. Depends on the server's hive routes, access rules and context.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import HTTPException
from pydantic import ValidationError

from ruflo.errors import NotFound, RufloError
from ruflo.model import ApprovalStatus, Hive
from ruflo.server import hives
from ruflo.server.access import may_change
from ruflo.server.auth import Caller
from ruflo.server.chat_mcp import McpServer, tool_name
from ruflo.server.chat_mcp import call as mcp_call
from ruflo.server.context import ServerContext
from ruflo.server.schemas import HiveCreate, PauseBody, TaskSpec

Policy = Literal["allow", "ask", "off"]
POLICIES: tuple[Policy, ...] = ("allow", "ask", "off")
BOARD_LIMIT = 50
"""Tasks listed by show_board (the counts cover them all)."""


class ToolRefused(Exception):
    """A tool call that could not run, in one line the model and the person both read."""


@dataclass(frozen=True)
class ToolUse:
    """Who calls a tool, and where."""
    ctx: ServerContext
    caller: Caller


Runner = Callable[[ToolUse, dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class ChatTool:
    name: str
    """The function name the model sees: [a-zA-Z0-9_-], at most 64 characters."""
    title: str
    """What the person reads."""
    description: str
    parameters: dict[str, Any]
    changes: bool
    run: Runner
    source: str = "ruflo"

    @property
    def default_policy(self) -> Policy:
        return "ask" if self.changes else "allow"

    def spec(self) -> dict[str, Any]:
        return {"type": "function", "function": {"name": self.name,
                                                 "description": self.description,
                                                 "parameters": self.parameters}}


def policy_of(tool: ChatTool, policies: Mapping[str, Any]) -> Policy:
    chosen = policies.get(tool.name)
    return chosen if chosen in POLICIES else tool.default_policy


def _hive_param() -> dict[str, Any]:
    return {"type": "string", "description": "The hive's id."}


def _object(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required,
            "additionalProperties": False}


def _text(args: Mapping[str, Any], key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ToolRefused(f"`{key}` must be a non-empty string")
    return value.strip()


def _hive(use: ToolUse, args: Mapping[str, Any], *, change: bool) -> Hive:
    hive = use.ctx.store.get_hive(_text(args, "hive"))
    if change and not may_change(use.caller, hive):
        raise ToolRefused(f"user {use.caller.name!r} may look at hive {hive.id} but not "
                          f"change it: only its owner ({hive.owner!r}) or an operator may")
    return hive


def card(ctx: ServerContext, hive: Hive) -> dict[str, Any]:
    """What the conversation's live card starts from: the page keeps it up to date."""
    summary = hives.hive_summary(ctx, hive)
    return {"id": hive.id, "name": hive.name, "mode": hive.mode.value,
            "status": hive.status.value, "tasks": summary["tasks"],
            "spend": hives.spend_json(ctx.store.spend(hive_id=hive.id)),
            "url": f"/hives/{hive.id}"}


async def start_hive(use: ToolUse, args: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"objective": _text(args, "objective")}
    for key in ("name", "mode", "agents", "org", "tasks", "isolation"):
        if args.get(key) is not None:
            body[key] = args[key]
    if args.get("max_tokens") is not None:
        body["budget"] = {"max_tokens": args["max_tokens"]}
    created = await hives.create_hive(HiveCreate.model_validate(body), use.ctx, use.caller)
    hive = use.ctx.store.get_hive(str(created["id"]))
    return {"hive": card(use.ctx, hive)}


async def show_board(use: ToolUse, args: dict[str, Any]) -> dict[str, Any]:
    hive = _hive(use, args, change=False)
    tasks = use.ctx.store.list_tasks(hive.id)
    approvals = use.ctx.store.list_approvals(hive_id=hive.id, status=ApprovalStatus.PENDING)
    return {"hive": card(use.ctx, hive), "objective": hive.objective,
            "board": [{"id": t.id, "title": t.title, "state": t.state.value,
                       "verified": t.verified} for t in tasks[:BOARD_LIMIT]],
            "more_tasks": max(0, len(tasks) - BOARD_LIMIT),
            "pending_approvals": [{"id": a.id, "kind": a.kind.value, "subject": a.subject}
                                  for a in approvals]}


async def list_hives(use: ToolUse, args: dict[str, Any]) -> dict[str, Any]:
    return {"hives": [card(use.ctx, hive) for hive in use.ctx.store.list_hives(limit=20)]}


async def post_task(use: ToolUse, args: dict[str, Any]) -> dict[str, Any]:
    hive = _hive(use, args, change=True)
    spec = TaskSpec.model_validate({"title": _text(args, "title"),
                                    "description": args.get("description") or ""})
    task = hives.add_task(use.ctx, hive, use.caller, spec)
    return {"task": {"id": task.id, "title": task.title, "state": task.state.value},
            "hive": card(use.ctx, hive)}


async def pause_hive(use: ToolUse, args: dict[str, Any]) -> dict[str, Any]:
    hive = _hive(use, args, change=True)
    reason = args.get("reason") or "paused from a conversation"
    await hives.pause_hive(hive, use.ctx, PauseBody(reason=reason))
    return {"hive": card(use.ctx, use.ctx.store.get_hive(hive.id))}


async def resume_hive(use: ToolUse, args: dict[str, Any]) -> dict[str, Any]:
    hive = _hive(use, args, change=True)
    await hives.resume_hive(hive, use.ctx)
    return {"hive": card(use.ctx, use.ctx.store.get_hive(hive.id))}


async def cancel_hive(use: ToolUse, args: dict[str, Any]) -> dict[str, Any]:
    hive = _hive(use, args, change=True)
    await hives.cancel_hive(hive, use.ctx)
    return {"hive": card(use.ctx, use.ctx.store.get_hive(hive.id))}


async def decide_approval(use: ToolUse, args: dict[str, Any]) -> dict[str, Any]:
    hive = _hive(use, args, change=True)
    decision = args.get("decision")
    if decision not in ("approved", "rejected"):
        raise ToolRefused("`decision` must be \"approved\" or \"rejected\"")
    approval = use.ctx.store.get_approval(_text(args, "approval"))
    if approval.hive_id != hive.id:
        raise ToolRefused(f"no approval {approval.id!r} in hive {hive.id}")
    decided = await use.ctx.runner.decide_approval(approval.id, ApprovalStatus(decision),
                                                   decided_by=use.caller.name)
    return {"approval": {"id": decided.id, "status": decided.status.value},
            "hive": card(use.ctx, use.ctx.store.get_hive(hive.id))}


HIVE = {"hive": _hive_param()}
RUFLO_TOOLS: tuple[ChatTool, ...] = (
    ChatTool("ruflo_start_hive", "Start a hive",
             "Start a ruflo hive working on an objective. mode: swarm (alike agents share a "
             "board; give `agents` as a count), company (an org chart in `org`: agents with "
             "reports_to naming their manager, exactly one without), solo or round_robin.",
             _object({"objective": {"type": "string"}, "name": {"type": "string"},
                      "mode": {"type": "string",
                               "enum": ["swarm", "company", "solo", "round_robin"]},
                      "agents": {"type": "integer", "minimum": 1, "maximum": 50},
                      "org": {"type": "array", "items": _object(
                          {"name": {"type": "string"}, "role": {"type": "string"},
                           "reports_to": {"type": "string"}}, ["name"])},
                      "tasks": {"type": "array", "description": "First tasks on the board "
                                "(default: the objective is the first task)",
                                "items": _object({"title": {"type": "string"},
                                                  "description": {"type": "string"}},
                                                 ["title"])},
                      "max_tokens": {"type": "integer", "minimum": 1},
                      "isolation": {"type": "string", "enum": ["git", "none"],
                                    "description": "git (default): each attempt in its own "
                                    "worktree of the hive's repository; none: the agents "
                                    "share one folder"}}, ["objective"]),
             True, start_hive),
    ChatTool("ruflo_list_hives", "List hives", "The newest hives with their status and counts.",
             _object({}, []), False, list_hives),
    ChatTool("ruflo_show_board", "Show a hive's board",
             "A hive's status, task counts, spend, its tasks and pending approvals.",
             _object(dict(HIVE), ["hive"]), False, show_board),
    ChatTool("ruflo_post_task", "Post a task", "Post a task on a running hive's board.",
             _object({**HIVE, "title": {"type": "string"}, "description": {"type": "string"}},
                     ["hive", "title"]), True, post_task),
    ChatTool("ruflo_pause_hive", "Pause a hive", "Pause a hive (agents stop taking work).",
             _object({**HIVE, "reason": {"type": "string"}}, ["hive"]), True, pause_hive),
    ChatTool("ruflo_resume_hive", "Resume a hive", "Resume a paused hive.",
             _object(dict(HIVE), ["hive"]), True, resume_hive),
    ChatTool("ruflo_cancel_hive", "Cancel a hive", "Cancel a hive for good.",
             _object(dict(HIVE), ["hive"]), True, cancel_hive),
    ChatTool("ruflo_decide_approval", "Decide an approval",
             "Approve or reject a hive's pending approval (see show_board).",
             _object({**HIVE, "approval": {"type": "string"},
                      "decision": {"type": "string", "enum": ["approved", "rejected"]}},
                     ["hive", "approval", "decision"]), True, decide_approval),
)


async def run_tool(tool: ChatTool, use: ToolUse, args: dict[str, Any]) -> dict[str, Any]:
    """The tool's answer, or {"error": one line} when it was refused: the model reads either."""
    try:
        return await tool.run(use, args)
    except ToolRefused as refused:
        return {"error": str(refused)}
    except HTTPException as refused:
        return {"error": str(refused.detail)}
    except ValidationError as invalid:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
                             for e in invalid.errors()[:5])
        return {"error": f"invalid arguments: {problems}"}
    except NotFound as missing:
        return {"error": str(missing)}
    except RufloError as refused:
        return {"error": str(refused)}


MAX_RESULT_CHARS = 20_000
"""A tool's answer as the model reads it is cut here; the thread keeps it whole."""


class ToolSession:
    """The tools of one chat answer: which are offered, and each call the model makes, asked
    of the person first when its policy says so. Every call is logged (`log`, stored with the
    answer) and reported through `emit` as it changes."""

    def __init__(self, use: ToolUse | None, tools: Sequence[ChatTool],
                 policies: Mapping[str, Any], emit: Callable[[dict[str, Any]], None],
                 more: Callable[[], Awaitable[list[ChatTool]]] | None = None) -> None:
        self.use = use
        self.policies = dict(policies)
        self.tools: dict[str, ChatTool] = {}
        self._offer(tools)
        self.more = more
        """The tools found only when the answer starts (the person's MCP servers)."""
        self.emit = emit
        self.log: list[dict[str, Any]] = []
        self.waiting: dict[str, asyncio.Future[bool]] = {}

    def _offer(self, tools: Sequence[ChatTool]) -> None:
        for tool in tools:
            if policy_of(tool, self.policies) != "off":
                self.tools.setdefault(tool.name, tool)

    async def prepare(self) -> None:
        """Add the tools that take a moment to find (never for long: see chat_mcp)."""
        if self.more is not None:
            self._offer(await self.more())

    def specs(self) -> list[dict[str, Any]] | None:
        return [tool.spec() for tool in self.tools.values()] or None

    def decide(self, call_id: str, allow: bool) -> bool:
        """The person's answer to a call waiting for it; False when none waits under that id."""
        waiting = self.waiting.pop(call_id, None)
        if waiting is None or waiting.done():
            return False
        waiting.set_result(allow)
        return True

    def _report(self, entry: dict[str, Any], status: str, **fields: Any) -> None:
        entry.update(status=status, **fields)
        self.emit(dict(entry))

    async def call(self, call_id: str, name: str, arguments: str) -> str:
        """Run one tool call; the answer as the tool message's content."""
        tool = self.tools.get(name)
        entry: dict[str, Any] = {"id": call_id, "name": name, "arguments": arguments,
                                 "title": tool.title if tool else name,
                                 "source": tool.source if tool else None}
        self.log.append(entry)
        answer = await self._answer(entry, tool, arguments)
        text = json.dumps(answer, default=str)
        return text if len(text) <= MAX_RESULT_CHARS else text[:MAX_RESULT_CHARS] + "…(cut)"

    async def _answer(self, entry: dict[str, Any], tool: ChatTool | None,
                      arguments: str) -> dict[str, Any]:
        if tool is None or self.use is None:
            error = f"no tool {entry['name']!r} is offered here"
            self._report(entry, "error", error=error)
            return {"error": error}
        try:
            args = json.loads(arguments or "{}")
        except json.JSONDecodeError as bad:
            args = None
            problem = f"the arguments are not JSON ({bad.msg})"
        else:
            problem = "the arguments must be a JSON object"
        if not isinstance(args, dict):
            self._report(entry, "error", error=problem)
            return {"error": problem}
        entry["arguments"] = args
        if policy_of(tool, self.policies) == "ask":
            decision: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            self.waiting[entry["id"]] = decision
            self._report(entry, "asking")
            try:
                allowed = await decision
            finally:
                self.waiting.pop(entry["id"], None)
            if not allowed:
                self._report(entry, "denied")
                return {"error": "the person declined this call; it did not run"}
        self._report(entry, "running")
        result = await run_tool(tool, self.use, args)
        if "error" in result:
            self._report(entry, "error", error=str(result["error"]))
        else:
            self._report(entry, "done", result=result)
        return result


def mcp_tools(found: Sequence[tuple[McpServer, Any]]) -> list[ChatTool]:
    """The tools of a person's MCP servers as chat tools. A tool the server marks read-only
    defaults to allow, any other to ask."""
    tools: list[ChatTool] = []
    for server, tool in found:
        annotations = tool.annotations
        read_only = bool(annotations is not None and annotations.read_only_hint)

        async def run(use: ToolUse, args: dict[str, Any], server: McpServer = server,
                      name: str = str(tool.name)) -> dict[str, Any]:
            return await mcp_call(server, name, args)

        schema = tool.input_schema if isinstance(tool.input_schema, dict) else {}
        tools.append(ChatTool(
            tool_name(server.name, tool.name), f"{tool.title or tool.name} ({server.name})",
            (tool.description or tool.name)[:1000], schema or {"type": "object"},
            not read_only, run, source=server.name))
    return tools
