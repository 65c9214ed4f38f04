"""Who may do what to a hive over HTTP: every signed-in user may look at every hive; its owner and
the operators may change it; only operators may define commands (process or http agents, verify
commands), because the server runs them or calls out for them. Operators are RUFLO_OPERATORS,
bearers of `operator` tokens, and the one local user when auth is off.
Depends on the server context, the request schemas and the core model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Request

from ruflo.model import AdapterKind, Hive
from ruflo.server.auth import Caller
from ruflo.server.context import ServerContext, current_caller
from ruflo.server.schemas import AgentSpec, HiveCreate, TaskSpec

CallerDep = Annotated[Caller, Depends(current_caller)]
OPERATOR_HOW = "RUFLO_OPERATORS or a token made with `ruflo token create --scope operator`"


def may_change(caller: Caller, hive: Hive) -> bool:
    """Whether `caller` may pause, resume, cancel, post to, claim from or decide for `hive`."""
    return caller.operator or caller.name == hive.owner


async def changeable_hive(request: Request,
                          hive_id: Annotated[str, Path(max_length=100)]) -> Hive:
    """The route's hive, when the caller may change it; else a 403 that says so (a missing hive
    is the store's 404). The context and the caller are read directly, not as dependencies of
    their own: on the board's hot routes each dependency FastAPI solves costs more than the
    check itself."""
    ctx: ServerContext = request.app.state.ctx
    caller = await current_caller(request)
    hive = ctx.store.get_hive(hive_id)
    if not may_change(caller, hive):
        raise HTTPException(403, f"user {caller.name!r} may look at hive {hive.id} but not "
                                 f"change it: only its owner ({hive.owner!r}) or an operator "
                                 "may; nothing was changed")
    return hive


ChangeableHive = Annotated[Hive, Depends(changeable_hive)]
"""A route parameter: the hive of `{hive_id}`, checked to be the caller's to change."""


def _defines_text(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def agent_commands(where: str, specs: Sequence[AgentSpec]) -> list[str]:
    """Fields of agent specs that name something to run or call: a process adapter runs a
    command on this machine, an http adapter has the server make requests to an address of the
    caller's choosing."""
    return [f"{where}[{n}].adapter ({spec.adapter.value})"
            for n, spec in enumerate(specs) if spec.adapter is not AdapterKind.LLM]


def task_commands(where: str, specs: Sequence[TaskSpec]) -> list[str]:
    """Fields of task specs that name a verify command (a blank one names none). An empty
    `where` means the request body is the one task."""
    return [f"{where}[{n}].verify" if where else "verify"
            for n, spec in enumerate(specs) if _defines_text(spec.verify)]


def hive_commands(body: HiveCreate) -> list[str]:
    """Every field of a new hive that defines a command, in the order of the body."""
    fields = agent_commands("agents", body.agents) if isinstance(body.agents, list) else []
    fields += agent_commands("org", body.org or [])
    fields += task_commands("tasks", body.tasks)
    if _defines_text(body.config.get("verify")):
        fields.append("config.verify")
    if body.workspace is not None:
        fields.append("workspace")  # the agents' commands run in a folder of the caller's choice
    if body.git_remote is not None:
        fields.append("git_remote")  # the server runs git against an address of the caller's
    return fields


def require_operator(caller: Caller, fields: Sequence[str], *, outcome: str) -> None:
    """Refuse (403) a non-operator whose request defines commands in `fields`."""
    if not fields or caller.operator:
        return
    named = ", ".join(fields[:5]) + (f" and {len(fields) - 5} more" if len(fields) > 5 else "")
    raise HTTPException(403, f"{named}: defining a command the server runs is an operator's "
                             f"right ({OPERATOR_HOW}), and user {caller.name!r} is not an "
                             f"operator; {outcome}")
