"""The action-policy API: read and set a hive's policy and an agent's (allow | ask | deny per
action, agents/permissions.py), checked before it is stored; reading is for every signed-in
user, setting for the hive's owner and operators, like the other routes that change a hive.
Depends on the server context and access rules, the permissions and the core model.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path

from ruflo.agents.permissions import SAFE_RULES, parse_actions, policy_json
from ruflo.errors import NotFound
from ruflo.event_kinds import EventKind
from ruflo.model import Hive
from ruflo.server.access import ChangeableHive
from ruflo.server.context import ServerContext, context, current_user
from ruflo.server.schemas import ActionsBody

router = APIRouter(prefix="/api/v2/hives", tags=["actions"], dependencies=[Depends(current_user)])

Ctx = Annotated[ServerContext, Depends(context)]
User = Annotated[str, Depends(current_user)]
HiveId = Annotated[str, Path(max_length=100)]
AgentId = Annotated[str, Path(max_length=200)]


def checked_actions(raw: object, where: str) -> dict[str, object]:
    """An `actions:` block checked (PolicyError, a 422, naming each problem) and normalised."""
    return policy_json(parse_actions(raw, where))


def actions_json(ctx: ServerContext, hive: Hive) -> dict[str, Any]:
    """The hive's policy, each agent's, and the safe defaults under both."""
    return {
        "hive_id": hive.id,
        "actions": hive.config.get("actions") or {},
        "agents": {a.name: a.adapter_config.get("actions") or {}
                   for a in ctx.store.list_agents(hive.id)},
        "safe_defaults": [{"regex": r.regex, "decision": r.decision.value, "why": r.why}
                          for r in SAFE_RULES],
    }


@router.get("/{hive_id}/actions")
async def read_actions(hive_id: HiveId, ctx: Ctx) -> dict[str, Any]:
    """What each action of the hive's agents does: allow, ask or deny."""
    return actions_json(ctx, ctx.store.get_hive(hive_id))


@router.put("/{hive_id}/actions")
async def set_actions(hive: ChangeableHive, body: ActionsBody, ctx: Ctx,
                      user: User) -> dict[str, Any]:
    """Replace the hive's policy (an empty mapping: back to the defaults). A bad policy is a 422
    naming each problem; nothing is changed then. Attempts in flight read it at their next
    start."""
    actions = checked_actions(body.actions, f"hive {hive.id}")
    with ctx.store.transaction():
        updated = ctx.store.update_hive(hive.id, config={**hive.config, "actions": actions})
        ctx.store.append_event(hive.id, EventKind.ACTIONS_CHANGED,
                               data={"scope": "hive", "actions": actions, "by": user})
    return actions_json(ctx, updated)


@router.put("/{hive_id}/agents/{agent_id}/actions")
async def set_agent_actions(hive: ChangeableHive, agent_id: AgentId, body: ActionsBody,
                            ctx: Ctx, user: User) -> dict[str, Any]:
    """Replace one agent's policy (by id or name); it overrides the hive's per action."""
    agent = next((a for a in ctx.store.list_agents(hive.id) if agent_id in (a.id, a.name)), None)
    if agent is None:
        raise NotFound(f"no agent {agent_id!r} in hive {hive.id}; nothing was changed")
    actions = checked_actions(body.actions, f"agent {agent.name}")
    with ctx.store.transaction():
        ctx.store.update_agent(agent.id, adapter_config={**agent.adapter_config,
                                                         "actions": actions})
        ctx.store.append_event(hive.id, EventKind.ACTIONS_CHANGED, agent_id=agent.id,
                               data={"scope": "agent", "actions": actions, "by": user})
    return actions_json(ctx, ctx.store.get_hive(hive.id))
