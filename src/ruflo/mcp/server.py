"""The MCP server: the hive tools a coding agent (Claude Code, Codex, any MCP client) calls, built
with the official `mcp` SDK's MCPServer. Depends on the Desk (which does the work) and the SDK.

Arguments are checked by the SDK against each tool's schema (types, lengths, ranges) and then by
the Desk (hives, tasks and agents must exist); either way a bad call comes back as a tool error
(isError) with a sentence saying what was wrong, and the server goes on serving.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from ruflo.agents.asking import ActionGate
from ruflo.agents.workspace import Workspace
from ruflo.errors import RufloError
from ruflo.mcp.desk import Desk
from ruflo.mcp.permission import answer_permission
from ruflo.model import JSON

INSTRUCTIONS = """\
ruflo hives: a shared board of tasks that agents take work from. Typical loop for an agent:
claim_next_task (with your agent name) -> do the work -> heartbeat while it takes long ->
complete_task (success true/false, with a result) or release_task. post_task adds work (with
skills, dependencies and an optional verify command whose exit code decides success).
memory_store / memory_search share notes within a hive. Calls without `hive` use the server's
default hive (ruflo mcp --hive).
"""

Name = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f]+$")]
Skill = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\s,\x00-\x1f]+$")]
HiveRef = Annotated[str | None, Field(
    default=None, max_length=200,
    description="Hive id or name; omit to use the server's default hive (--hive).")]
AgentName = Annotated[Name, Field(description="Your agent name in the hive (registered on "
                                              "its first claim).")]
TaskRef = Annotated[str, Field(min_length=1, max_length=300,
                               description="Task id (or its exact title, when unique).")]


class AgentSpec(BaseModel):
    """A member of a new hive."""

    name: Name
    skills: list[Skill] = Field(default_factory=list, max_length=50)
    role: str = Field("worker", max_length=50)


def caller_of(ctx: Context | None) -> str:
    """The MCP client's own name and version, as it introduced itself (or "unknown")."""
    if ctx is None:
        return "unknown"
    try:
        params = ctx.session.client_params
        info = params.client_info if params is not None else None
    except (AttributeError, LookupError, ValueError, RuntimeError):
        info = None
    if info is None:
        return "unknown"
    return f"{info.name}/{info.version}" if getattr(info, "version", None) else str(info.name)


def build_server(desk: Desk) -> MCPServer[Any]:
    """An MCPServer whose tools work on the hives in `desk`'s store."""
    server: MCPServer[Any] = MCPServer("ruflo", instructions=INSTRUCTIONS, log_level="WARNING")

    def refused(error: RufloError) -> ToolError:
        return ToolError(str(error))

    @server.tool()
    async def create_hive(
        name: Name,
        objective: Annotated[str, Field(min_length=1, max_length=20_000)],
        mode: Literal["swarm", "solo", "round_robin"] = "swarm",
        agents: Annotated[list[AgentSpec], Field(max_length=500)] = [],  # noqa: B006
        workspace: Annotated[str | None, Field(
            max_length=4096, description="Absolute path of an existing folder where verify "
                                         "commands run; default: a new folder under ruflo's "
                                         "workspace.")] = None,
        seed: Annotated[int, Field(ge=0, le=2**31)] = 0,
        isolation: Annotated[Literal["git", "none"] | None, Field(
            description="git (the default): the hive starts from a named commit and the "
                        "attempts ruflo runs get their own worktrees; a workspace given must "
                        "be a git repository (a folder ruflo makes becomes one). none: every "
                        "agent shares the folder.")] = None,
        git_remote: Annotated[str | None, Field(
            max_length=4096, description="A git remote (URL or path) the hive's integration "
                                         "branch lives on, for `ruflo worker` processes on "
                                         "other machines; needs git isolation, a Postgres "
                                         "store, and the workspace's start commit on the "
                                         "remote.")] = None,
        ctx: Context | None = None,
    ) -> JSON:
        """Create a hive: a board of tasks worked by agents, with its objective and mode (swarm:
        response thresholds decide who takes what; solo: one agent does all; round_robin: tasks
        dealt in turn). When ruflo has a gateway, the objective is planned into the first
        tasks (the answer lists them); without one the board starts empty for you to post to. Agents may also join later by
        claiming."""
        try:
            return await desk.create_hive(caller_of(ctx), name=name, objective=objective, mode=mode,
                                    agents=[(a.name, a.skills, a.role) for a in agents],
                                    workspace=workspace, seed=seed, isolation=isolation,
                                    git_remote=git_remote)
        except RufloError as error:
            raise refused(error) from None

    @server.tool()
    async def post_task(
        title: Annotated[str, Field(min_length=1, max_length=300)],
        description: Annotated[str, Field(max_length=50_000)] = "",
        skills: Annotated[list[Skill], Field(max_length=20)] = [],  # noqa: B006
        depends_on: Annotated[list[TaskRef], Field(
            max_length=200, description="Tasks (ids or unique titles) that must be done "
                                        "first.")] = [],  # noqa: B006
        verify: Annotated[str | None, Field(
            max_length=4000, description="Shell command run in the hive's workspace on "
                                         "completion; exit code 0 means done.")] = None,
        priority: Annotated[int, Field(ge=0, le=100, description="Higher is more "
                                                                "urgent.")] = 1,
        effort: Annotated[float, Field(gt=0, le=10_000)] = 1.0,
        parent: Annotated[str | None, Field(max_length=300)] = None,
        agent: Annotated[str | None, Field(max_length=100, description="The posting agent's "
                                                                       "name, if any.")] = None,
        hive: HiveRef = None,
        ctx: Context | None = None,
    ) -> JSON:
        """Post a task on the hive's board."""
        try:
            return desk.post_task(caller_of(ctx), hive, title=title, description=description,
                                  skills=skills, depends_on=depends_on, verify=verify,
                                  priority=priority, effort=effort, parent=parent,
                                  agent_name=agent)
        except RufloError as error:
            raise refused(error) from None

    @server.tool()
    async def claim_next_task(
        agent: AgentName,
        skills: Annotated[list[Skill], Field(
            max_length=50, description="Your skills, used when you join the hive.")] = [],  # noqa: B006
        task: Annotated[str | None, Field(
            max_length=300, description="Claim this task instead of letting the hive's "
                                        "policy choose.")] = None,
        hive: HiveRef = None,
        ctx: Context | None = None,
    ) -> JSON:
        """Claim the next task for `agent`, chosen by the hive's policy. The claim carries a
        lease (call heartbeat while working); an answer with task null says why and when to
        ask again. Work in the answer's `workspace` folder: in a git hive (`worktree` true) it
        is your own git worktree, and only what you leave there is committed and merged."""
        try:
            return await desk.claim_next_task(caller_of(ctx), hive, agent_name=agent,
                                              skills=skills, task_ref=task)
        except RufloError as error:
            raise refused(error) from None

    @server.tool()
    async def heartbeat(agent: AgentName, hive: HiveRef = None,
                        ctx: Context | None = None) -> JSON:
        """Renew the leases of the tasks `agent` holds (an agent that stops calling loses its
        claim when the lease ends, and the task is reopened)."""
        try:
            return desk.heartbeat(caller_of(ctx), hive, agent_name=agent)
        except RufloError as error:
            raise refused(error) from None

    @server.tool()
    async def complete_task(
        task: TaskRef,
        agent: AgentName,
        result: Annotated[str, Field(max_length=100_000)] = "",
        success: bool = True,
        hive: HiveRef = None,
        ctx: Context | None = None,
    ) -> JSON:
        """Finish a task you hold. If it has a verify command, that command runs in your claim's
        `workspace` and its exit code decides whether it is done or failed; in a git hive ruflo
        then commits that worktree and merges it (`integration` in the answer says how)."""
        try:
            return await desk.complete_task(caller_of(ctx), hive, task_ref=task,
                                            agent_name=agent, result=result, success=success)
        except RufloError as error:
            raise refused(error) from None

    @server.tool()
    async def release_task(
        task: TaskRef,
        agent: AgentName,
        reason: Annotated[str, Field(min_length=1, max_length=2000)] = "released by the agent",
        hive: HiveRef = None,
        ctx: Context | None = None,
    ) -> JSON:
        """Give a claimed task back to the board, open for others."""
        try:
            return desk.release_task(caller_of(ctx), hive, task_ref=task, agent_name=agent,
                                     reason=reason)
        except RufloError as error:
            raise refused(error) from None

    @server.tool()
    async def board_status(
        states: Annotated[list[Literal["open", "claimed", "done", "failed", "blocked",
                                       "cancelled"]], Field(max_length=6)] = [],  # noqa: B006
        hive: HiveRef = None,
        ctx: Context | None = None,
    ) -> JSON:
        """Task counts by state, the tasks (optionally only some states) with their assignees,
        and the agents."""
        try:
            return desk.board_status(caller_of(ctx), hive, states=states)
        except RufloError as error:
            raise refused(error) from None

    @server.tool()
    async def memory_store(
        key: Annotated[str, Field(min_length=1, max_length=300)],
        content: Annotated[str, Field(max_length=200_000)],
        namespace: Annotated[str | None, Field(
            max_length=200, description="Default: the hive's shared namespace (hive:<id>), "
                                        "or 'default' without a hive.")] = None,
        tags: Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=50)] = [],  # noqa: B006
        hive: HiveRef = None,
        ctx: Context | None = None,
    ) -> JSON:
        """Store (or replace) a note other agents can find."""
        try:
            return desk.memory_store(caller_of(ctx), hive, key=key, content=content,
                                     namespace=namespace, tags=tags)
        except RufloError as error:
            raise refused(error) from None

    @server.tool()
    async def memory_search(
        query: Annotated[str, Field(min_length=1, max_length=2000)],
        namespace: Annotated[str | None, Field(max_length=200)] = None,
        limit: Annotated[int, Field(ge=1, le=100)] = 10,
        keyword: Annotated[bool, Field(
            description="Full-text search only (faster; semantic search is used by default "
                        "when the embeddings extra is installed).")] = False,
        hive: HiveRef = None,
        ctx: Context | None = None,
    ) -> JSON:
        """Notes most relevant to the query, best first."""
        try:
            return desk.memory_search(caller_of(ctx), hive, query=query, namespace=namespace,
                                      limit=limit, keyword=keyword)
        except RufloError as error:
            raise refused(error) from None

    @server.tool()
    async def ledger_summary(hive: HiveRef = None, ctx: Context | None = None) -> JSON:
        """What the hive's metered LLM calls cost: totals, by kind (work, coordination) and by
        agent and kind."""
        try:
            return desk.ledger_summary(caller_of(ctx), hive)
        except RufloError as error:
            raise refused(error) from None

    # No structured output: Claude Code reads the answer from exactly one text block, and takes a
    # structuredContent ({"result": ...}) for an invalid answer when one is present.
    @server.tool(structured_output=False)
    async def permission_prompt(
        tool_name: Annotated[str, Field(min_length=1, max_length=200)],
        input: dict[str, Any],
        tool_use_id: Annotated[str | None, Field(max_length=200)] = None,
    ) -> str:
        """For `claude --permission-prompt-tool mcp__ruflo__permission_prompt`: decides a tool
        call of Claude Code by the default hive's action policies (and the --agent's), waiting
        for a person when they say ask. Answers Claude Code's JSON: {"behavior": "allow",
        "updatedInput": ...} or {"behavior": "deny", "message": ...}."""
        try:
            gate = await asyncio.to_thread(asking_gate, desk)
            return json.dumps(await answer_permission(gate, tool_name, input, tool_use_id))
        except RufloError as error:
            raise refused(error) from None

    return server


def asking_gate(desk: Desk) -> ActionGate:
    """The gate for the server's default hive, the asking agent and its task."""
    hive = desk.hive(None)
    agent = desk.agent(hive, desk.asking_agent) if desk.asking_agent else None
    task = desk.task(hive, desk.asking_task) if desk.asking_task else None
    folder = Path(hive.workspace) if hive.workspace else None
    workspace = Workspace.open(folder) if folder is not None and folder.is_dir() else None
    return ActionGate(desk.store, hive, agent, task, workspace)
