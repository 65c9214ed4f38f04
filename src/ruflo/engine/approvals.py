"""Approvals that wait for a person (or a hive's explicit auto-approval policy): opening a budget
override when a cap stops work, and applying a decision to the store wherever it was taken (CLI,
server, engine). Depends on the model, the Store protocol and ruflo.policies.company.

Applying is idempotent: the `approval_applied` event, written in the same transaction as the
change, says it was done, so a CLI in one process and an engine in another never raise a budget
twice.
"""

from __future__ import annotations

from collections.abc import Mapping

from ruflo import telemetry
from ruflo.engine.control import resume_hive
from ruflo.errors import Conflict, NotFound, PolicyError
from ruflo.event_kinds import EventKind
from ruflo.model import (
    JSON,
    AgentStatus,
    Approval,
    ApprovalKind,
    ApprovalStatus,
    Budget,
    HiveStatus,
    new_id,
)
from ruflo.policies.company import auto_decision
from ruflo.store.base import Store

__all__ = ["AUTO_POLICY", "apply_decision", "auto_decide", "decide", "decided_text",
           "open_budget_override", "pending_for"]

AUTO_POLICY = "auto-policy (hive config approvals)"
"""`decided_by` of approvals decided by a hive's explicit auto-approval policy."""

OVERRIDE_FACTOR = 2.0
"""A budget override proposes the spent cap times this (a person may approve another figure)."""


def pending_for(store: Store, hive_id: str, kind: ApprovalKind,
                scope_id: str | None = None) -> Approval | None:
    """The pending approval of this kind (for this agent or hive), if one is open."""
    for approval in store.list_approvals(hive_id=hive_id, status=ApprovalStatus.PENDING):
        if approval.kind is kind and (scope_id is None or approval.data.get("scope_id")
                                      == scope_id):
            return approval
    return None


def _proposed(budget: Budget) -> JSON:
    return {"max_tokens": None if budget.max_tokens is None
            else max(1, int(budget.max_tokens * OVERRIDE_FACTOR)),
            "max_cost": None if budget.max_cost is None
            else round(budget.max_cost * OVERRIDE_FACTOR, 6)}


def open_budget_override(store: Store, hive_id: str, *, scope: str, scope_id: str,
                         spent: str) -> Approval:
    """Open (once) the budget_override approval for a hive or agent stopped at its cap; with an
    auto-approval policy in the hive's config it is decided and applied at once."""
    existing = pending_for(store, hive_id, ApprovalKind.BUDGET_OVERRIDE, scope_id)
    if existing is not None:
        return existing
    if scope == "agent":
        agent = store.get_agent(scope_id)
        budget, who = agent.budget, f"agent {agent.name}"
    else:
        budget, who = store.get_hive(hive_id).budget, f"hive {hive_id}"
    proposed = _proposed(budget)
    approval = store.create_approval(Approval(
        id=new_id(), hive_id=hive_id, kind=ApprovalKind.BUDGET_OVERRIDE,
        agent_id=scope_id if scope == "agent" else None,
        subject=f"{who} reached its budget ({spent}); raise it to "
                + ", ".join(f"{v} {k.removeprefix('max_')}" for k, v in proposed.items()
                            if v is not None),
        data={"scope": scope, "scope_id": scope_id, "spent": spent,
              "budget": {"max_tokens": budget.max_tokens, "max_cost": budget.max_cost},
              "proposed": proposed}))
    return auto_decide(store, approval, store.get_hive(hive_id).config)


def auto_decide(store: Store, approval: Approval, config: Mapping[str, object]) -> Approval:
    """Decide a new approval at once when the hive's `config` has an auto-approval policy for
    its kind (`auto_decision`); else it stays pending for a person. Returns it as it stands."""
    auto = auto_decision(config, approval.kind.value)
    if auto is None:
        return approval
    status = ApprovalStatus.APPROVED if auto == "approve" else ApprovalStatus.REJECTED
    return decide(store, approval.id, status, decided_by=AUTO_POLICY)


def decide(store: Store, approval_id: str, status: ApprovalStatus, *, decided_by: str,
           budget: Budget | None = None, reason: str | None = None) -> Approval:
    """Record a decision and apply it. `budget` replaces the proposed one of a budget override;
    `reason` is kept with it (an agent whose action was rejected reads it).
    Raises Conflict when the approval was decided already, or cancelled because it could no
    longer take effect (nothing is changed)."""
    if status not in (ApprovalStatus.APPROVED, ApprovalStatus.REJECTED):
        raise PolicyError("an approval is decided by approving or rejecting it")
    with store.transaction():
        approval = store.get_approval(approval_id)
        if approval.status is not ApprovalStatus.PENDING:
            raise Conflict(approval.settled_text())
        if budget is not None:
            if approval.kind is not ApprovalKind.BUDGET_OVERRIDE:
                raise PolicyError("only a budget override takes a budget; nothing was changed")
            store.append_event(approval.hive_id, EventKind.APPROVAL_AMENDED,
                               agent_id=approval.agent_id,
                               data={"approval_id": approval_id, "proposed": {
                                   "max_tokens": budget.max_tokens,
                                   "max_cost": budget.max_cost}, "by": decided_by})
        decided = store.decide_approval(approval_id, status, decided_by=decided_by,
                                        reason=reason)
        if decided_by == AUTO_POLICY:
            store.append_event(decided.hive_id, EventKind.APPROVAL_AUTO_DECIDED,
                               agent_id=decided.agent_id,
                               data={"approval_id": decided.id, "kind": decided.kind.value,
                                     "status": decided.status.value})
        apply_decision(store, decided, budget=budget)
    if telemetry.tracing_on():
        hive = store.get_hive(decided.hive_id)
        telemetry.mark(hive.config.get(telemetry.TRACEPARENT), f"approval {decided.kind.value}",
                       {"ruflo.approval.id": decided.id, "ruflo.approval.kind": decided.kind.value,
                        "ruflo.approval.status": decided.status.value,
                        "ruflo.approval.decided_by": decided_by})
    return decided


def decided_text(store: Store, approval_id: str, approve: bool, who: str,
                 reason: str | None = None) -> str:
    """Decide from a surface that shows one short line back (a Telegram button or reply): what
    happened, or why nothing was (already decided, no such approval)."""
    try:
        decided = decide(store, approval_id, ApprovalStatus.APPROVED if approve
                         else ApprovalStatus.REJECTED, decided_by=who, reason=reason)
    except NotFound:
        return f"no approval {approval_id}: nothing was decided"
    except Conflict as error:
        return str(error)
    because = f" (because: {reason})" if reason else ""
    return f"{decided.status.value}: {decided.subject}{because}"


def applied(store: Store, approval: Approval) -> bool:
    return any(e.data.get("approval_id") == approval.id
               for e in store.events(approval.hive_id, kinds=[EventKind.APPROVAL_APPLIED]))


def apply_decision(store: Store, approval: Approval, *, budget: Budget | None = None) -> bool:
    """Carry out a decided budget override in the store, once: approved → the new cap is set and
    the agent (or hive) runs again; rejected → it stays paused. Other kinds are the engine's to
    act on (it is woken by `approval_decided`). Returns True when this call applied it."""
    if approval.status is ApprovalStatus.PENDING or approval.kind is not \
            ApprovalKind.BUDGET_OVERRIDE:
        return False
    with store.transaction():
        if applied(store, approval):
            return False
        data = approval.data
        scope, scope_id = str(data.get("scope", "hive")), str(data.get("scope_id", ""))
        outcome: JSON = {"approval_id": approval.id, "status": approval.status.value,
                         "scope": scope, "scope_id": scope_id}
        if approval.status is ApprovalStatus.APPROVED:
            new = budget or _budget_from(data.get("proposed"))
            outcome["budget"] = {"max_tokens": new.max_tokens, "max_cost": new.max_cost}
            if scope == "agent":
                agent = store.update_agent(scope_id, budget=new)
                if agent.status is AgentStatus.PAUSED:
                    store.update_agent(scope_id, status=AgentStatus.IDLE)
                    store.append_event(approval.hive_id, EventKind.AGENT_RESUMED, agent_id=scope_id,
                                       data={"reason": "budget override approved"})
            else:
                hive = store.get_hive(approval.hive_id)
                if hive.status is HiveStatus.PAUSED:
                    resume_hive(store, approval.hive_id, budget=new)
                elif not hive.status.terminal:
                    store.update_hive(approval.hive_id, budget=new)
                    store.append_event(approval.hive_id, EventKind.HIVE_BUDGET_CHANGED,
                                       data={"max_tokens": new.max_tokens,
                                             "max_cost": new.max_cost})
        else:
            outcome["note"] = f"the {scope} stays paused at its budget"
        store.append_event(approval.hive_id, EventKind.APPROVAL_APPLIED, agent_id=approval.agent_id,
                           data=outcome)
    return True


def _budget_from(raw: object) -> Budget:
    if not isinstance(raw, dict):
        return Budget()
    tokens, cost = raw.get("max_tokens"), raw.get("max_cost")
    return Budget(max_tokens=int(tokens) if isinstance(tokens, int | float) else None,
                  max_cost=float(cost) if isinstance(cost, int | float) else None)
