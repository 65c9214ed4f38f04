"""`ruflo approval list|approve|reject`: decisions that wait for a person (budget overrides,
strategy, hire). Deciding records the decision with its event (a running engine is woken by it)
and applies a budget override at once: the new cap is set and the agent or hive runs again.

Imports only typer and the standard library at module level.
"""

from __future__ import annotations

import getpass
import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from ruflo.model import Approval
    from ruflo.store.sql import SqlStore

app = typer.Typer(help="List, approve and reject the approvals hives wait on.",
                  no_args_is_help=True, add_completion=False)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
ApprovalArgument = Annotated[str, typer.Argument(help="Approval id (or a unique prefix of it).")]
ByOption = Annotated[str | None, typer.Option("--by", help="Who decides (default: your login).")]
ReasonOption = Annotated[str | None, typer.Option(
    "--reason", help="Why; an agent whose action you reject reads it.")]


def approval_json(approval: Approval) -> dict[str, Any]:
    return {"id": approval.id, "hive_id": approval.hive_id, "kind": approval.kind.value,
            "status": approval.status.value, "subject": approval.subject,
            "agent_id": approval.agent_id, "data": approval.data,
            "decided_by": approval.decided_by, "created_at": approval.created_at.isoformat(),
            "decided_at": approval.decided_at.isoformat() if approval.decided_at else None}


def find_approval(store: SqlStore, ref: str) -> Approval:
    """The approval with this id, or the only one whose id starts with it."""
    from ruflo.errors import NotFound

    ref = ref.strip()
    try:
        return store.get_approval(ref)
    except NotFound:
        pass
    matches = [a for a in store.list_approvals() if a.id.startswith(ref)] if len(ref) >= 4 \
        else []
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise NotFound(f"{len(matches)} approvals start with {ref!r}; give more of the id")
    raise NotFound(f"no approval {ref!r}; `ruflo approval list` shows the pending ones")


@app.command("list")
def list_approvals(
    hive: Annotated[str | None, typer.Option(help="Only this hive (id or prefix).")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Decided ones too.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Approvals waiting for a decision (with --all, every one)."""
    from ruflo.commands.hive import find_hive, opened
    from ruflo.model import ApprovalStatus

    with opened() as (_, store):
        hive_id = find_hive(store, hive).id if hive else None
        found = store.list_approvals(hive_id=hive_id,
                                     status=None if all_ else ApprovalStatus.PENDING)
    if as_json:
        typer.echo(json.dumps({"approvals": [approval_json(a) for a in found]}))
        return
    if not found:
        typer.echo("no approvals waiting" if not all_ else "no approvals")
        return
    for approval in found:
        by = f" by {approval.decided_by}" if approval.decided_by else ""
        typer.echo(f"{approval.id[:12]}  {approval.kind.value:<15} {approval.status.value}{by}"
                   f"  hive {approval.hive_id[:12]}: {approval.subject}")


def _decide(ref: str, approve: bool, by: str | None, as_json: bool,
            max_tokens: int | None = None, max_cost: float | None = None,
            reason: str | None = None) -> None:
    from ruflo.commands.hive import opened
    from ruflo.engine.approvals import decide
    from ruflo.model import ApprovalStatus, Budget

    budget = None
    if max_tokens is not None or max_cost is not None:
        budget = Budget(max_tokens=max_tokens, max_cost=max_cost)
    with opened() as (_, store):
        approval = find_approval(store, ref)
        decided = decide(store, approval.id,
                         ApprovalStatus.APPROVED if approve else ApprovalStatus.REJECTED,
                         decided_by=by or _login(), budget=budget, reason=reason)
        hive = store.get_hive(decided.hive_id)
    if as_json:
        typer.echo(json.dumps({**approval_json(decided), "hive_status": hive.status.value}))
        return
    typer.echo(f"approval {decided.id[:12]} {decided.status.value}: {decided.subject}")
    if hive.status.value == "running" and decided.kind.value == "budget_override" and approve:
        typer.echo(f"hive {hive.id} is running again; a running engine goes on by itself, "
                   f"otherwise `ruflo hive resume {hive.id}` drives it")


def _login() -> str:
    try:
        return f"person:{getpass.getuser()}"
    except (KeyError, OSError):
        return "person"


@app.command()
def approve(
    approval: ApprovalArgument,
    max_tokens: Annotated[int | None, typer.Option(
        min=0, help="Budget override: this token cap instead of the proposed one.")] = None,
    max_cost: Annotated[float | None, typer.Option(
        min=0, help="Budget override: this money cap (USD) instead of the proposed one.")] = None,
    by: ByOption = None,
    reason: ReasonOption = None,
    as_json: JsonOption = False,
) -> None:
    """Approve: a budget override raises the cap and lets the agent or hive go on; an agent's
    action runs and its attempt goes on at that turn."""
    _decide(approval, True, by, as_json, max_tokens, max_cost, reason)


@app.command()
def reject(approval: ApprovalArgument, by: ByOption = None, reason: ReasonOption = None,
           as_json: JsonOption = False) -> None:
    """Reject: the agent or hive stays paused (its tickets go up the chain); an agent's action
    is not run and the agent reads the reason as a tool error."""
    _decide(approval, False, by, as_json, reason=reason)
