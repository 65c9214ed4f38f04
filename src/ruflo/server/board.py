"""The board API for agents that work over REST: list the board, claim a task (the one the hive's
policy chooses for the agent, or a named one) under a lease, then complete or release it. An agent
is named by the caller and registered on its first claim; only the hive's owner and operators may
work it. Depends on the server context, the store protocol, the model and the hive's policy put
back from the store (engine/stored_policy.py).
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from pydantic import Field, StringConstraints

from ruflo.engine.claim_worktrees import ClaimWorktrees
from ruflo.engine.stored_policy import StoredPolicies
from ruflo.errors import Conflict, NotFound
from ruflo.event_kinds import EventKind
from ruflo.model import Agent, AgentStatus, Hive, HiveStatus, Task, TaskState, new_id, utcnow
from ruflo.server.access import ChangeableHive
from ruflo.server.context import ServerContext, context, current_user
from ruflo.server.hives import live_hive, task_json
from ruflo.server.schemas import Body, Ident, Name, Skill
from ruflo.server.wire import JSONBytes

router = APIRouter(prefix="/api/v2/hives", tags=["board"], dependencies=[Depends(current_user)])

Ctx = Annotated[ServerContext, Depends(context)]
HiveId = Annotated[str, PathParam(max_length=100)]
TaskId = Annotated[str, PathParam(max_length=100)]
MAX_LEASE_SECONDS = 7 * 24 * 3600.0
VERIFY_SECONDS = 600.0
VERIFY_OUTPUT_CHARS = 2_000


class ClaimBody(Body):
    agent: Name
    """The claiming agent's name in the hive; a new name registers the agent."""
    lease_seconds: float | None = Field(default=None, gt=0, le=MAX_LEASE_SECONDS)
    """How long the claim holds without a renewal (default: RUFLO_LEASE_SECONDS)."""
    task_id: Ident | None = None
    """Claim this task; without it, the task the hive's policy chooses for the agent (swarm: its
    response thresholds against the tasks' stimulus; round robin and solo: its own pile)."""
    skills: list[Skill] = Field(default_factory=list, max_length=50)
    """The agent's skills, recorded when it registers."""


class CompleteBody(Body):
    agent: Name
    success: bool = True
    """False records the attempt as failed; true runs the task's verify command, if any, whose
    exit code then decides."""
    result: Annotated[str, StringConstraints(max_length=100_000)] | None = None


class ReleaseBody(Body):
    agent: Name
    reason: Annotated[str, StringConstraints(max_length=2_000)] = "released by the agent"


@router.get("/{hive_id}/tasks", response_class=JSONBytes)
async def list_tasks(hive_id: HiveId, ctx: Ctx,
                     state: Annotated[list[TaskState] | None, Query()] = None,
                     limit: Annotated[int, Query(ge=1, le=1000)] = 200,
                     offset: Annotated[int, Query(ge=0, le=10**7)] = 0) -> JSONBytes:
    """The hive's tasks in board order: `{"tasks": [...], "hasMore": bool}`."""
    hive = live_hive(ctx, hive_id)
    rows = getattr(ctx.store, "list_task_rows", None)
    if rows is None:  # a store without the row road: the same answer through Task objects
        tasks = ctx.store.list_tasks(hive.id, states=state, limit=limit + 1, offset=offset)
        return JSONBytes({"tasks": [task_json(task) for task in tasks[:limit]],
                          "hasMore": len(tasks) > limit})
    page = rows(hive.id, states=state, limit=limit + 1, offset=offset)
    return JSONBytes({"tasks": [task_row_json(row) for row in page[:limit]],
                      "hasMore": len(page) > limit})


ROW_FIELDS = ("id", "hive_id", "title", "description", "parent_id", "skills", "priority",
              "effort", "depends_on", "state", "assignee", "lease_until", "attempts", "stimulus",
              "verify", "result", "verified", "blocked_on", "depth", "created_at", "updated_at",
              "claimed_at", "finished_at")
"""The row `task_row_json` reads (the store's TASK_FIELDS; a test keeps them equal). The tasks
table's `stimulus` column is no longer read: the swarm policy computes stimulus as it decides."""

_loads = json.loads
_modf = math.modf
_seconds: dict[int, str] = {}


_lists: dict[str, tuple[str, ...]] = {}


def _ids(text: str) -> list[str]:
    """A stored JSON list of names; the few distinct ones (skills repeat) are parsed once."""
    if text == "[]":
        return []
    known = _lists.get(text)
    if known is None:
        if len(_lists) > 10_000:
            _lists.clear()
        known = _lists[text] = tuple(_loads(text))
    return list(known)


def epoch_iso(value: float | None) -> str | None:
    """`iso(datetime.fromtimestamp(value, UTC))` without the datetime: the same microsecond
    rounding (half to even, as CPython does), then milliseconds, with the date and time of
    each whole second formatted once."""
    if value is None:
        return None
    fraction, whole = _modf(value)
    micros = round(fraction * 1e6)
    if micros >= 1_000_000:
        micros -= 1_000_000
        whole += 1.0
    elif micros < 0:
        micros += 1_000_000
        whole -= 1.0
    second = int(whole)
    head = _seconds.get(second)
    if head is None:
        if len(_seconds) > 100_000:
            _seconds.clear()
        head = _seconds[second] = datetime.fromtimestamp(second, UTC).isoformat()[:19]
    return f"{head}.{micros // 1000:03d}Z"


def task_row_json(row: Sequence[Any]) -> dict[str, Any]:
    """`task_json` of a stored row (see ROW_FIELDS): what the board list sends, 50 to 1,000
    tasks at a time (a test keeps the two equal)."""
    verified, lease, claimed, finished = row[16], row[11], row[21], row[22]
    return {
        "id": row[0], "hive_id": row[1], "title": row[2], "description": row[3],
        "parent_id": row[4], "skills": _ids(row[5]), "priority": row[6],
        "effort": float(row[7]), "depends_on": _ids(row[8]), "state": row[9],
        "assignee": row[10], "lease_until": None if lease is None else epoch_iso(lease),
        "attempts": row[12], "verify": row[14], "result": row[15],
        "verified": None if verified is None else bool(verified), "blocked_on": row[17],
        "depth": row[18], "created_at": epoch_iso(row[19]), "updated_at": epoch_iso(row[20]),
        "claimed_at": None if claimed is None else epoch_iso(claimed),
        "finished_at": None if finished is None else epoch_iso(finished),
    }


# (store, hive id, agent name) -> agent id: claims by name skip listing the hive's agents.
_agent_ids: dict[tuple[int, str, str], str] = {}

POLICIES = StoredPolicies()
"""The hives' policies, which choose what a claim without a task id takes."""
WORKTREES = ClaimWorktrees()
"""Git hives' claims in worktrees of their own (engine/claim_worktrees.py)."""

CLAIM_TRIES = 8
"""Choices lost to other agents' claims before a claim gives up (409, nothing held)."""


def agent_named(ctx: ServerContext, hive: Hive, name: str) -> Agent | None:
    key = (id(ctx.store), hive.id, name)
    known = _agent_ids.get(key)
    if known is not None:
        try:
            agent = ctx.store.get_agent(known)
        except NotFound:
            agent = None
        if agent is not None and agent.hive_id == hive.id and agent.name == name:
            return agent
        _agent_ids.pop(key, None)
    for agent in ctx.store.list_agents(hive.id):
        if agent.name == name:
            _agent_ids[key] = agent.id
            return agent
    return None


def held_by(ctx: ServerContext, hive: Hive, task_id: str, name: str) -> tuple[Task, Agent]:
    """The task and the agent, refusing (409) when the agent does not hold the task's claim."""
    task = ctx.store.get_task(task_id)
    if task.hive_id != hive.id:
        raise NotFound(f"no task {task_id!r} in hive {hive.id!r}")
    agent = agent_named(ctx, hive, name)
    if agent is None or task.state is not TaskState.CLAIMED or task.assignee != agent.id:
        raise Conflict(f"task {task.id} is {task.state.value}, not held by agent {name!r}; "
                       "nothing was changed")
    return task, agent


@router.post("/{hive_id}/tasks/claim", response_class=JSONBytes)
async def claim_task(hive: ChangeableHive, body: ClaimBody, request: Request) -> JSONBytes:
    """Claim a task under a lease: the named one, or the one the hive's policy chooses for the
    agent (the same policy the hive's engine runs). `task` is null when the policy gives the
    agent nothing now, with the `reason` and, when the agent declined, `retry_after_seconds`
    (poll again then, or follow the hive's event stream); naming a task that is taken or waiting
    is a 409. Working a hive is changing it: its owner's or an operator's agents only."""
    ctx: ServerContext = request.app.state.ctx  # the hottest route: no dependency to solve
    if hive.status is not HiveStatus.RUNNING:
        raise Conflict(f"hive {hive.id} is {hive.status.value}; no task was claimed")
    lease = body.lease_seconds or float(ctx.settings.lease_seconds)
    store = ctx.store
    reason = "the agent asked for it"
    retry_after: float | None = None
    if body.task_id is None:
        POLICIES.refresh(store, hive)  # a rebuild reads the board outside the transaction
    with store.transaction():
        agent = agent_named(ctx, hive, body.agent)
        if agent is None:
            agent = store.add_agent(Agent(id=new_id(), hive_id=hive.id, name=body.agent,
                                          role="rest", skills=tuple(body.skills),
                                          adapter_config={"via": "rest"}))
            _agent_ids[(id(store), hive.id, agent.name)] = agent.id
        if body.task_id is not None:
            task = store.claim_task(hive.id, agent.id, lease_seconds=lease, task_id=body.task_id)
            if task is None:
                wanted = store.get_task(body.task_id)
                if wanted.hive_id != hive.id:
                    raise NotFound(f"no task {body.task_id!r} in hive {hive.id!r}")
                raise Conflict(f"task {wanted.id} is {wanted.state.value} or waits on its "
                               "dependencies, so it cannot be claimed now")
        else:
            task, reason, retry_after = _chosen_claim(store, hive, agent, lease)
        if task is not None:
            store.update_agent(agent.id, status=AgentStatus.WORKING, current_task=task.id,
                               heartbeat_at=utcnow())
    tree = None
    if task is not None and WORKTREES.isolated(hive):
        # After the commit and off the event loop: git may take a while on a large repository.
        tree = await asyncio.to_thread(WORKTREES.open_for_claim, store, hive, task, agent)
    answer: dict[str, Any] = {"task": None if task is None else task_json(task),
                              "agent": agent.name, "agent_id": agent.id, "lease_seconds": lease,
                              "reason": reason,
                              "workspace": str(tree.path) if tree is not None else hive.workspace,
                              "worktree": tree is not None}
    if retry_after is not None:
        answer["retry_after_seconds"] = retry_after
    return JSONBytes(answer)


def _chosen_claim(store: Any, hive: Hive, agent: Agent,
                  lease: float) -> tuple[Task | None, str, float | None]:
    """Claim what the hive's policy chooses for the agent; a choice another agent claimed
    first is followed by another look (the policy takes that claim in)."""
    for _ in range(CLAIM_TRIES):
        chosen = POLICIES.decide(store, hive, agent)
        if chosen.task_id is None:
            return None, chosen.reason, chosen.retry_after_seconds
        task = store.claim_task(hive.id, agent.id, lease_seconds=lease, task_id=chosen.task_id)
        if task is not None:
            return task, chosen.reason, None
        POLICIES.forget(store, hive.id)  # read the board afresh: it moved in a way not yet seen
    raise Conflict(f"other agents claimed every task the policy chose for {agent.name!r}, "
                   f"{CLAIM_TRIES} times running; nothing is held: claim again")


@router.post("/{hive_id}/tasks/{task_id}/complete", response_class=JSONBytes)
async def complete_task(hive: ChangeableHive, task_id: TaskId, body: CompleteBody,
                        ctx: Ctx) -> JSONBytes:
    """Finish the agent's claim: done, or failed when `success` is false or the task's verify
    command fails in the claim's workspace. In a git hive the claim's worktree is then
    committed and integrated (engine/claim_worktrees.py; `integration` says how) and removed."""
    task, agent = held_by(ctx, hive, task_id, body.agent)
    tree = await asyncio.to_thread(WORKTREES.tree, ctx.store, hive, task)
    verdict = (await verify(ctx, hive, task, agent, tree.path if tree is not None else None)
               if body.success and task.verify else None)
    passed = None if verdict is None else verdict["passed"]
    state = TaskState.DONE if body.success and passed is not False else TaskState.FAILED
    landed = (await WORKTREES.land(ctx.store, hive, task, agent, tree)
              if tree is not None and state is TaskState.DONE else None)
    result = body.result
    if landed is not None:
        state = TaskState.FAILED if landed.refused is not None else state
        result = f"{result}\n{landed.note()}".strip()
    with ctx.store.transaction():
        finished = ctx.store.finish_task(
            task.id, agent.id, state=state, result=result,
            verified=passed if isinstance(passed, bool) else None,
            data={"via": "rest", "claimed_success": body.success})
        ctx.store.update_agent(agent.id, status=AgentStatus.IDLE, current_task=None,
                               heartbeat_at=utcnow())
    if tree is not None:
        await asyncio.to_thread(WORKTREES.drop, ctx.store, hive, task)
    answer = {"task": task_json(finished)}
    if verdict is not None:
        answer["verify"] = verdict
    if landed is not None:
        answer["integration"] = landed.json()
    return JSONBytes(answer)


@router.post("/{hive_id}/tasks/{task_id}/release", response_class=JSONBytes)
async def release_task(hive: ChangeableHive, task_id: TaskId, body: ReleaseBody,
                       ctx: Ctx) -> JSONBytes:
    """Give the claim back: the task is open again for any agent."""
    task, agent = held_by(ctx, hive, task_id, body.agent)
    with ctx.store.transaction():
        released = ctx.store.release_task(task.id, agent.id, reason=body.reason)
        ctx.store.update_agent(agent.id, status=AgentStatus.IDLE, current_task=None,
                               heartbeat_at=utcnow())
    await asyncio.to_thread(WORKTREES.drop, ctx.store, hive, task)
    return JSONBytes({"task": task_json(released)})


async def verify(ctx: ServerContext, hive: Hive, task: Task, agent: Agent,
                 worktree: Path | None = None) -> dict[str, Any]:
    """Run the task's verify command in the claim's worktree (a git hive) or the hive's
    workspace; its exit code decides."""
    from ruflo.agents.commands import command_env, run_command

    folder = worktree or (Path(hive.workspace) if hive.workspace else None)
    if folder is None or not folder.is_dir():
        verdict: dict[str, Any] = {"command": task.verify, "passed": None,
                                   "skipped": "the hive has no workspace folder, so the verify "
                                              "command was not run"}
    else:
        assert task.verify is not None
        # Verification may outlast the lease: hold the claim while it runs.
        ctx.store.renew_lease(task.id, agent.id,
                              lease_seconds=VERIFY_SECONDS + float(ctx.settings.lease_seconds))
        ran = await run_command(task.verify, cwd=folder, env=command_env(),
                                time_limit=VERIFY_SECONDS)
        verdict = {"command": task.verify, "passed": ran.ok, "exit_code": ran.exit_code,
                   "timed_out": ran.timed_out, "output": ran.output[-VERIFY_OUTPUT_CHARS:]}
    ctx.store.append_event(hive.id, EventKind.TASK_VERIFIED, agent_id=agent.id, task_id=task.id,
                           data=verdict)
    return verdict
