"""Approvals in a live company: a spent budget opens a budget override (the agent or the hive
pauses until it is decided), a root's escalation goes to people as a strategy approval, and a
decision made here, by the CLI or by the server is carried out. Depends on the model, the Store
protocol, ruflo.engine.approvals and the company engine's hiring layer.
"""

from __future__ import annotations

import contextlib

from ruflo.engine.approvals import apply_decision, auto_decide, open_budget_override
from ruflo.engine.core import AgentSlot
from ruflo.engine.hiring import HiringEngine
from ruflo.errors import BudgetExceeded, Conflict, NotFound
from ruflo.event_kinds import EventKind
from ruflo.model import Approval, ApprovalKind, ApprovalStatus, Task, TaskState, new_id

__all__ = ["CompanyApprovalsEngine"]


class CompanyApprovalsEngine(HiringEngine):
    """The company engine's approvals: budget overrides and strategy decisions."""

    def _apply_decided(self) -> None:
        """Budget overrides decided while no engine ran (e.g. through the server's store-only
        runner) are carried out now."""
        for status in (ApprovalStatus.APPROVED, ApprovalStatus.REJECTED):
            for approval in self.store.list_approvals(hive_id=self.hive_id, status=status):
                if apply_decision(self.store, approval):
                    scope_id = approval.data.get("scope_id")
                    member = self.slots.get(scope_id) if isinstance(scope_id, str) else None
                    if member is not None and status is ApprovalStatus.APPROVED:
                        member.paused = None

    def _to_people(self, member: AgentSlot, task: Task, reason: str) -> None:
        approval = self.store.create_approval(Approval(
            id=new_id(), hive_id=self.hive_id, kind=ApprovalKind.STRATEGY,
            agent_id=member.id,
            subject=f"{member.agent.name} (the root) is blocked on {task.title!r}: {reason}. "
                    "Approve to have it try again, reject to drop the ticket.",
            data={"task_id": task.id, "reason": reason}))
        self.tickets[task.id].approval = approval.id
        self.store.update_task(task.id, blocked_on=f"approval {approval.id}: {reason}")
        auto_decide(self.store, approval, self.hive.config)

    # -- budgets and approvals -------------------------------------------------------------------
    def _over_budget(self, member: AgentSlot, error: BudgetExceeded) -> None:
        """A cap was reached: open the budget override (an auto-approval policy may decide it at
        once, and work goes on); otherwise the agent, or the whole hive, pauses until decided."""
        text = str(error)
        spent = text.split("(", 1)[1].split(")", 1)[0] if "(" in text else "its cap"
        agent_scope = error.scope == "agent"
        scope_id = (error.scope_id or member.id) if agent_scope else self.hive_id
        approval = open_budget_override(self.store, self.hive_id,
                                        scope="agent" if agent_scope else "hive",
                                        scope_id=scope_id, spent=spent)
        if approval.status is ApprovalStatus.APPROVED:
            self._refresh_budgets()
            self._wake(member.id, "approval decided")
        elif agent_scope:
            self._pause_agent(self.slots.get(scope_id, member), text.split(";")[0])
        else:
            self._pause_hive("budget exceeded", text)

    def _decided(self, approval_id: str) -> None:
        """An approval was decided (here, by the CLI or by the server): act on it and wake the
        agent concerned."""
        try:
            approval = self.store.get_approval(approval_id)
        except NotFound:
            return
        if approval.kind is ApprovalKind.BUDGET_OVERRIDE:
            apply_decision(self.store, approval)
            self._refresh_budgets()
            scope_id = approval.data.get("scope_id")
            if approval.data.get("scope") == "agent" and isinstance(scope_id, str):
                member = self.slots.get(scope_id)
                if member is None:
                    return
                if approval.status is ApprovalStatus.APPROVED:
                    member.paused = None
                    self._wake(member.id, "approval decided")
                else:
                    self._hand_on(member, "its budget override was rejected")
            return
        if approval.kind is ApprovalKind.ACTION:
            return  # the agent's attempt waits on it itself (agents/asking.py)
        if approval.kind is ApprovalKind.HIRE:
            self._hire_decided(approval)
        else:
            self._strategy_decided(approval)
        self._check_end()

    def _strategy_decided(self, approval: Approval) -> None:
        """A root's escalation decided: approved, it tries again; rejected, the ticket is
        dropped."""
        task_id = approval.data.get("task_id")
        if not isinstance(task_id, str) or task_id not in self.tickets:
            return
        ticket = self.tickets[task_id]
        ticket.approval = None
        if approval.status is ApprovalStatus.APPROVED:
            ticket.escalated = None
            with self.store.transaction():
                self.store.update_task(task_id, state=TaskState.OPEN, blocked_on=None)
                self.store.append_event(self.hive_id, EventKind.TICKET_UNBLOCKED, task_id=task_id,
                                        data={"approval_id": approval.id,
                                              "by": approval.decided_by})
            self._wake(ticket.owner, "approval decided", task_id)
        else:
            with contextlib.suppress(Conflict):
                ended = self.store.finish_task(task_id, None, state=TaskState.CANCELLED,
                                               result=f"dropped: approval {approval.id} "
                                                      f"rejected by {approval.decided_by}")
                self._after_end(ended)

    def _rejected_approvals(self) -> None:
        """Budget overrides rejected while no engine ran: their agents' tickets move on."""
        for approval in self.store.list_approvals(hive_id=self.hive_id,
                                                  status=ApprovalStatus.REJECTED):
            scope_id = approval.data.get("scope_id")
            member = self.slots.get(scope_id) if isinstance(scope_id, str) else None
            if member is not None and member.paused is not None and any(
                    t.owner == member.id for t in self.tickets.values()):
                self._hand_on(member, "its budget override was rejected")

