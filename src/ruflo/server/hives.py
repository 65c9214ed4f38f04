"""The hive API: start a hive (objective, mode, agents or an org chart), list and show hives,
pause/resume/cancel through the hive runner, post tasks, decide approvals, read the ledger and
the event log, and follow a hive's events live over SSE. A hive starts through `start_hive`
(engine/start.py's first board). Every signed-in user may read every
hive; its starter owns it, and only the owner and operators may change it (server/access.py).
Depends on the server context, the store protocol, the core model and engine/start.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path as FolderPath
from pathlib import PurePath
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Request
from fastapi.responses import StreamingResponse

from ruflo.engine.isolation import Workspace, isolation_summary, prepare_workspace, task_git
from ruflo.engine.start import HiveSpec
from ruflo.engine.start import create_hive as create_hive_in
from ruflo.errors import ConfigError, Conflict, NotFound, PolicyError
from ruflo.event_kinds import EventKind
from ruflo.model import (
    Agent,
    ApprovalStatus,
    Budget,
    Hive,
    Mode,
    Task,
    TaskState,
    new_id,
)
from ruflo.server.access import (
    CallerDep,
    ChangeableHive,
    hive_commands,
    require_operator,
    task_commands,
)
from ruflo.server.actions import checked_actions
from ruflo.server.auth import Caller
from ruflo.server.context import ServerContext, context, current_caller, current_user
from ruflo.server.event_stream import event_json
from ruflo.server.schemas import (
    AgentSpec,
    ApprovalDecision,
    BudgetSpec,
    HiveCreate,
    PauseBody,
    TaskSpec,
)
from ruflo.server.wire import SSE_HEADERS, JSONBytes, dumps, iso
from ruflo.store.base import Spend

log = logging.getLogger("ruflo.server")

router = APIRouter(prefix="/api/v2/hives", tags=["hives"], dependencies=[Depends(current_user)])

Ctx = Annotated[ServerContext, Depends(context)]
User = Annotated[str, Depends(current_user)]
HiveId = Annotated[str, Path(max_length=100)]
GIT_KINDS = [EventKind.TASK_COMMITTED, EventKind.TASK_MERGED]
"""The events a task's git state is read from (engine/isolation.py task_git)."""
DEFAULT_SWARM_SIZE = 4
MAX_SEQ = 2**62
"""The largest seq a client may resume after: both stores hold it as a signed 64-bit integer."""
_SEQ = re.compile(r"[0-9]{1,19}")


_SCALARS = frozenset({str, int, float, bool, type(None)})
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def task_json(task: Task) -> dict[str, Any]:
    """`plain(task)` written out: the board routes answer with tasks by the thousand, and this is
    several times quicker than the generic walk (a test keeps the two equal)."""
    return {
        "id": task.id, "hive_id": task.hive_id, "title": task.title,
        "description": task.description, "parent_id": task.parent_id,
        "skills": list(task.skills), "priority": task.priority, "effort": task.effort,
        "depends_on": list(task.depends_on), "state": task.state.value,
        "assignee": task.assignee, "lease_until": iso(task.lease_until),
        "attempts": task.attempts, "verify": task.verify,
        "result": task.result, "verified": task.verified, "blocked_on": task.blocked_on,
        "depth": task.depth, "created_at": iso(task.created_at),
        "updated_at": iso(task.updated_at), "claimed_at": iso(task.claimed_at),
        "finished_at": iso(task.finished_at),
    }


def plain(value: Any) -> Any:
    """A core dataclass (or anything inside one) as JSON-ready values."""
    if type(value) is Task:
        return task_json(value)
    return walk(value)


def walk(value: Any) -> Any:
    """The generic conversion behind `plain`: dataclass fields, times, enums, containers."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    names = _FIELD_NAMES.get(kind)
    if names is None and dataclasses.is_dataclass(value) and not isinstance(value, type):
        # Field names per class, looked up once: agents and events come by the hundred.
        names = _FIELD_NAMES[kind] = tuple(f.name for f in dataclasses.fields(value))
    if names is not None:
        return {name: plain(getattr(value, name)) for name in names}
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    return value


def record(value: Any) -> dict[str, Any]:
    """A core dataclass as a JSON object."""
    out: dict[str, Any] = plain(value)
    return out


def spend_json(spend: Spend) -> dict[str, Any]:
    return {"tokens": spend.tokens, "cost": round(spend.cost, 9), "calls": spend.calls,
            "unknown_cost_calls": spend.unknown_cost_calls}


def budget_of(spec: BudgetSpec | None) -> Budget:
    return Budget() if spec is None else Budget(max_tokens=spec.max_tokens,
                                                max_cost=spec.max_cost)


def live_hive(ctx: ServerContext, hive_id: str) -> Hive:
    return ctx.store.get_hive(hive_id)


def hive_summary(ctx: ServerContext, hive: Hive) -> dict[str, Any]:
    counts = ctx.store.count_tasks(hive.id)
    return {**plain(hive), "tasks": {TaskState(state).value: n for state, n in counts.items()}}


SHOWN_DEPTH = 200
"""How deeply a hive's JSON may nest in an answer: JSON writers (orjson, pydantic) stop near 254
levels, and an answer wraps a hive in a few more."""


def _deeper_than(value: Any, limit: int) -> bool:
    stack = [(1, value)]
    while stack:
        depth, item = stack.pop()
        if depth > limit:
            return True
        if type(item) is dict:
            stack.extend((depth + 1, inner) for inner in item.values())
        elif type(item) is list:
            stack.extend((depth + 1, inner) for inner in item)
    return False


def shown(answer: dict[str, Any]) -> dict[str, Any]:
    """A hive's JSON as an answer can carry it. Free-form values stored past the edge's checks
    (nested too deep for JSON writers, say) are left out with `damage` saying so, rather than
    failing the answer, or a whole page of hives, for everyone."""
    try:
        if _deeper_than(answer, SHOWN_DEPTH):
            raise RecursionError
        dumps(answer)
    except (TypeError, ValueError, RecursionError) as error:
        cause = "nested too deep" if isinstance(error, RecursionError) else str(error)[:120]
        return {**answer, "config": None, "damage": "the stored hive can't be shown whole: its "
                f"config or an agent's adapter_config can't be written as JSON ({cause}); they "
                "are left out",
                "agents": [{**agent, "adapter_config": None}
                           for agent in answer.get("agents", ())]}
    return answer


def hive_detail(ctx: ServerContext, hive: Hive) -> dict[str, Any]:
    agents = ctx.store.list_agents(hive.id)
    return {
        **hive_summary(ctx, hive),
        "isolation": isolation_summary(hive),
        "agents": [plain(agent) for agent in agents],
        "spend": spend_json(ctx.store.spend(hive_id=hive.id)),
        "approvals": [plain(a) for a in ctx.store.list_approvals(
            hive_id=hive.id, status=ApprovalStatus.PENDING)],
        "last_seq": ctx.store.last_seq(hive.id),
    }


def org_agents(hive_id: str, specs: Sequence[AgentSpec], *, default_model: str,
               chart: bool) -> list[Agent]:
    """Agents from their specs, `reports_to` names resolved to ids. An org chart must have
    exactly one root and no reporting loop."""
    names = [spec.name for spec in specs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise PolicyError(f"agent names must be unique; repeated: {', '.join(duplicates)}")
    ids = {spec.name: new_id() for spec in specs}
    for spec in specs:
        if spec.reports_to is not None and spec.reports_to not in ids:
            raise PolicyError(f"agent {spec.name!r} reports to {spec.reports_to!r}, who is "
                              "not in the list")
        if spec.reports_to == spec.name:
            raise PolicyError(f"agent {spec.name!r} can't report to itself")
    if chart:
        roots = [spec.name for spec in specs if spec.reports_to is None]
        if len(roots) != 1:
            raise PolicyError("an org chart needs exactly one agent who reports to nobody; "
                              f"found {len(roots)}")
        managers = {spec.name: spec.reports_to for spec in specs}
        for name in managers:
            seen = {name}
            boss = managers[name]
            while boss is not None:
                if boss in seen:
                    raise PolicyError(f"the org chart has a reporting loop through {boss!r}")
                seen.add(boss)
                boss = managers[boss]
    return [Agent(id=ids[spec.name], hive_id=hive_id, name=spec.name, role=spec.role,
                  title=spec.title, capabilities=spec.capabilities, skills=tuple(spec.skills),
                  thresholds=dict(spec.thresholds), adapter=spec.adapter,
                  adapter_config=dict(spec.adapter_config), model=spec.model or default_model,
                  reports_to=ids[spec.reports_to] if spec.reports_to else None,
                  budget=budget_of(spec.budget))
            for spec in specs]


def board_tasks(hive_id: str, specs: Sequence[TaskSpec], *,
                known: dict[str, str] | None = None) -> list[Task]:
    """Tasks from their specs. In one request, `depends_on` may name another task of the same
    request by its title, or an existing task by id."""
    ids = [new_id() for _ in specs]
    by_title = dict(known or {})
    by_title.update({spec.title: task_id for spec, task_id in zip(specs, ids, strict=True)})
    return [Task(id=task_id, hive_id=hive_id, title=spec.title, description=spec.description,
                 parent_id=spec.parent_id, skills=tuple(spec.skills), priority=spec.priority,
                 effort=spec.effort,
                 depends_on=tuple(by_title.get(dep, dep) for dep in spec.depends_on),
                 verify=spec.verify)
            for spec, task_id in zip(specs, ids, strict=True)]


def hive_spec(body: HiveCreate, *, default_model: str, owner: str) -> HiveSpec:
    """What a REST body starts: its agents (a count of generalists, specs, or an org chart)
    and first tasks, checked. Raises PolicyError saying what is wrong."""
    mode = body.mode or (Mode.COMPANY if body.org is not None else Mode.SWARM)
    hive_id = new_id()
    default_model = body.model or default_model
    if body.org is not None:
        agents = org_agents(hive_id, body.org, default_model=default_model, chart=True)
    elif isinstance(body.agents, list):
        agents = org_agents(hive_id, body.agents, default_model=default_model,
                            chart=mode is Mode.COMPANY)
    elif mode is Mode.COMPANY:
        raise PolicyError("company mode needs an org chart: give `org`, a list of agents with "
                          "reports_to naming their manager")
    else:
        count = body.agents if isinstance(body.agents, int) else DEFAULT_SWARM_SIZE
        agents = [Agent(id=new_id(), hive_id=hive_id, name=f"agent-{n}", model=default_model)
                  for n in range(1, count + 1)]
    if not agents:
        raise PolicyError("a hive needs at least one agent")
    if body.workspace is not None and not PurePath(body.workspace).is_absolute():
        raise PolicyError(f"workspace {body.workspace!r} must be an absolute path of an existing "
                          "folder on the server; nothing was created")
    config = dict(body.config)
    if "actions" in config:
        config["actions"] = checked_actions(config["actions"], "config")
    agents = [dataclasses.replace(a, adapter_config={
        **a.adapter_config, "actions": checked_actions(a.adapter_config["actions"],
                                                       f"agent {a.name}")})
        if "actions" in a.adapter_config else a for a in agents]
    return HiveSpec(id=hive_id, name=body.name or body.objective.splitlines()[0][:100],
                    mode=mode, objective=body.objective, budget=budget_of(body.budget),
                    config=config, owner=owner, agents=agents,
                    workspace=body.workspace, tasks=board_tasks(hive_id, body.tasks))


async def start_hive(ctx: ServerContext, spec: HiveSpec, *, isolation: str | None = None,
                     git_remote: str | None = None) -> Hive:
    """The server's way to start a hive (the create route, and every road through it: chat,
    A2A, the OpenAI-compatible route): its folder made ready and its isolation chosen by
    engine/isolation.py's one rule (`spec.workspace`, or a folder of its own under the
    workspace directory, which becomes a repository), then stored, then handed to the runner,
    which seeds its first board (engine/start.py) and drives it. Raises PolicyError when the
    folder can't be had (nothing stored) or the planner's answer for the objective was refused
    (the hive is stored, failed), HTTPException 500 when it was stored but could not be
    started."""
    prepared = await asyncio.to_thread(_ready_folder, ctx, spec, isolation, git_remote)
    log.info("hive %s: %s", spec.id, prepared.notice)
    spec = dataclasses.replace(spec, workspace=str(prepared.folder),
                               config={**spec.config, **prepared.config})
    hive = create_hive_in(ctx.store, spec)
    try:
        await ctx.runner.start(hive.id)
    except PolicyError as error:
        raise PolicyError(f"hive {hive.id} was stored but failed: {error}") from None
    except Exception as error:
        # The hive is stored: the answer must not say that nothing changed.
        log.exception("starting hive %s failed", hive.id)
        raise HTTPException(500, f"hive {hive.id} was stored but could not be started "
                                 f"({error}); see GET /api/v2/hives/{hive.id}, then resume or "
                                 "cancel it") from None
    return ctx.store.get_hive(hive.id)


def _ready_folder(ctx: ServerContext, spec: HiveSpec, isolation: str | None,
                  git_remote: str | None) -> Workspace:
    if spec.workspace is not None and not FolderPath(spec.workspace).is_dir():
        raise PolicyError(f"workspace {spec.workspace} is not an existing folder on the server; "
                          "nothing was created")
    try:
        return prepare_workspace(spec.workspace or ctx.settings.workspace_dir / spec.id,
                                 isolation, remote=git_remote, dialect=ctx.store.dialect)
    except ConfigError as error:
        raise PolicyError(str(error)) from None


@router.post("", status_code=201)
async def create_hive(body: HiveCreate, ctx: Ctx, caller: CallerDep) -> dict[str, Any]:
    """Start a hive: its folder and isolation (`isolation`, default git; `workspace`, default a
    new folder the server makes; `git_remote`, the remote its integration branch lives on for
    workers on other machines), store it with its agents and first tasks (none given: its
    objective is planned, engine/start.py), then hand it to the runner. The caller owns it;
    process or http agents, verify commands, a given workspace and a git remote need an
    operator."""
    require_operator(caller, hive_commands(body), outcome="no hive was created")
    spec = hive_spec(body, default_model=ctx.settings.model, owner=caller.name)
    return shown(hive_detail(ctx, await start_hive(ctx, spec, isolation=body.isolation,
                                                   git_remote=body.git_remote)))


@router.get("")
async def list_hives(ctx: Ctx, p: Annotated[int, Query(ge=0, le=100_000)] = 0,
                     limit: Annotated[int, Query(ge=1, le=200)] = 50) -> dict[str, Any]:
    """Hives, newest first, with their task counts."""
    found = ctx.store.list_hives(limit=limit + 1, offset=p * limit)
    return {"hives": [shown(hive_summary(ctx, hive)) for hive in found[:limit]],
            "hasMore": len(found) > limit}


@router.get("/{hive_id}")
async def show_hive(hive_id: HiveId, ctx: Ctx) -> dict[str, Any]:
    """A hive with its agents (status, current task, spend), task counts by state, spend,
    pending approvals and the seq of its last event."""
    return shown(hive_detail(ctx, live_hive(ctx, hive_id)))


@router.get("/{hive_id}/workers")
async def list_workers(hive_id: HiveId, ctx: Ctx) -> dict[str, Any]:
    """The `ruflo worker` processes hosting the hive's agents, with their agents, last heartbeat
    and liveness (a worker silent for longer than a lease is not alive)."""
    from ruflo.engine.worker import hive_workers

    hive = live_hive(ctx, hive_id)
    lease = float(getattr(ctx.settings, "lease_seconds", 60.0))
    return {"workers": hive_workers(ctx.store, hive.id, stale_after=lease)}


@router.post("/{hive_id}/pause")
async def pause_hive(hive: ChangeableHive, ctx: Ctx,
                     body: PauseBody | None = None) -> dict[str, Any]:
    return shown(record(await ctx.runner.pause(hive.id,
                                               reason=(body or PauseBody()).reason)))


@router.post("/{hive_id}/resume")
async def resume_hive(hive: ChangeableHive, ctx: Ctx) -> dict[str, Any]:
    return shown(record(await ctx.runner.resume(hive.id)))


@router.post("/{hive_id}/cancel")
async def cancel_hive(hive: ChangeableHive, ctx: Ctx) -> dict[str, Any]:
    return shown(record(await ctx.runner.cancel(hive.id)))


# GET /{hive_id}/tasks (the board in order) is served by ruflo.server.board.


@router.post("/{hive_id}/tasks", status_code=201, response_class=JSONBytes)
async def post_task(hive: ChangeableHive, body: TaskSpec, request: Request) -> JSONBytes:
    """Post a task to the board; `depends_on` names task ids of this hive. A verify command
    needs an operator."""
    # A hot route: the context and the caller (already known from ChangeableHive) are read from
    # the request rather than solved again as dependencies.
    ctx: ServerContext = request.app.state.ctx
    task = add_task(ctx, hive, await current_caller(request), body)
    return JSONBytes(task_json(task), status_code=201)


def add_task(ctx: ServerContext, hive: Hive, caller: Caller, spec: TaskSpec) -> Task:
    """Post one task on the hive's board, by the rules every way in shares (this route, the
    chat's tool, an A2A message to a hive): a verify command needs an operator, a finished hive
    takes no task, and the parent and dependencies must be tasks of this hive. Whether the
    caller may change the hive is the caller's check (ChangeableHive here)."""
    require_operator(caller, task_commands("", [spec]), outcome="the task was not posted")
    if hive.status.terminal:
        raise Conflict(f"hive {hive.id} is {hive.status.value}; the task was not posted")
    if spec.parent_id is not None:
        _task_of(ctx, hive.id, spec.parent_id)
    for dependency in spec.depends_on:
        _task_of(ctx, hive.id, dependency)
    (task,) = ctx.store.post_tasks(hive.id, board_tasks(hive.id, [spec]))
    return task


def _task_of(ctx: ServerContext, hive_id: str, task_id: str) -> Task:
    try:
        task = ctx.store.get_task(task_id)
    except NotFound:
        raise PolicyError(f"no task {task_id!r} in this hive") from None
    if task.hive_id != hive_id:
        raise PolicyError(f"no task {task_id!r} in this hive")
    return task


@router.get("/{hive_id}/tasks/{task_id}")
async def show_task(hive_id: HiveId, task_id: Annotated[str, Path(max_length=100)],
                    ctx: Ctx) -> dict[str, Any]:
    """A task, and under git isolation its branch, commit, merge state, diff stat and patch
    (`git`, the same as `ruflo task show --json`; null before its first commit)."""
    task = ctx.store.get_task(task_id)
    if task.hive_id != hive_id:
        raise NotFound(f"no task {task_id!r} in hive {hive_id!r}")
    history = [e for e in ctx.store.events(hive_id, kinds=GIT_KINDS) if e.task_id == task.id]
    git_info = (await asyncio.to_thread(task_git, ctx.store.get_hive(hive_id), history)
                if history else None)
    return {**record(task), "git": git_info}


@router.get("/{hive_id}/approvals")
async def list_approvals(hive_id: HiveId, ctx: Ctx,
                         status: ApprovalStatus | None = None) -> dict[str, Any]:
    hive = live_hive(ctx, hive_id)
    return {"approvals": [plain(a) for a in ctx.store.list_approvals(hive_id=hive.id,
                                                                      status=status)]}


@router.post("/{hive_id}/approvals/{approval_id}")
async def decide_approval(hive: ChangeableHive,
                          approval_id: Annotated[str, Path(max_length=100)],
                          body: ApprovalDecision, ctx: Ctx, user: User) -> dict[str, Any]:
    """Approve or reject a pending approval; deciding twice is a 409."""
    approval = ctx.store.get_approval(approval_id)
    if approval.hive_id != hive.id:
        raise NotFound(f"no approval {approval_id!r} in hive {hive.id!r}")
    decided = await ctx.runner.decide_approval(approval.id, ApprovalStatus(body.decision),
                                               decided_by=user, reason=body.reason)
    return record(decided)


@router.get("/{hive_id}/ledger")
async def read_ledger(hive_id: HiveId, ctx: Ctx,
                      limit: Annotated[int, Query(ge=1, le=10_000)] = 500) -> dict[str, Any]:
    """Metered gateway calls of the hive, and its spend totals."""
    hive = live_hive(ctx, hive_id)
    return {"entries": [plain(e) for e in ctx.store.ledger(hive_id=hive.id, limit=limit)],
            "spend": spend_json(ctx.store.spend(hive_id=hive.id))}


@router.get("/{hive_id}/events")
async def read_events(hive_id: HiveId, ctx: Ctx,
                      after: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
                      limit: Annotated[int, Query(ge=1, le=5000)] = 500) -> dict[str, Any]:
    """A page of the hive's event log after seq `after` (JSON; see /stream for live)."""
    hive = live_hive(ctx, hive_id)
    events = ctx.store.events(hive.id, after_seq=after, limit=limit)
    return {"events": [event_json(e) for e in events], "last_seq": ctx.store.last_seq(hive.id)}


@router.get("/{hive_id}/stream",
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "SSE: one event per hive event, `id` = its seq."}})
async def stream_events(hive_id: HiveId, ctx: Ctx,
                        last_event_id: Annotated[str | None, Header(max_length=40)] = None,
                        after: Annotated[int | None, Query(ge=0, le=MAX_SEQ)] = None,
                        ) -> StreamingResponse:
    """The hive's events live, resuming after `Last-Event-ID` (or `?after=`) without loss or
    duplication."""
    hive = live_hive(ctx, hive_id)
    start = after or 0
    if last_event_id is not None and last_event_id.strip():
        given = last_event_id.strip()
        if not _SEQ.fullmatch(given) or int(given) > MAX_SEQ:
            raise PolicyError(f"Last-Event-ID must be the seq number of an event, a whole number "
                              f"from 0 to {MAX_SEQ}; got {given[:40]!r}")
        start = int(given)
    return StreamingResponse(_counted(ctx, hive.id, start), media_type="text/event-stream",
                             headers=SSE_HEADERS)


async def _counted(ctx: ServerContext, hive_id: str, start: int) -> Any:
    ctx.metrics.event_streams_open += 1
    try:
        async for frame in ctx.hub.stream(hive_id, start):
            yield frame
    finally:
        ctx.metrics.event_streams_open -= 1
