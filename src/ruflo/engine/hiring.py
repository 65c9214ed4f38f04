"""Hiring in a live company: a manager's planner asks to add a report for a ticket none of its
reports can do; a `hire` approval decides (a person, or the hive's auto-approval policy), and an
approved hire joins the org chart and the running engine with the ticket. Depends on the model,
the Store protocol, ruflo.policies.company and the company engine's board.
"""

from __future__ import annotations

from ruflo.engine.approvals import auto_decide
from ruflo.engine.company_board import CompanyBoardEngine, Ticket
from ruflo.engine.core import AgentSlot
from ruflo.engine.plan import board_id
from ruflo.engine.planning import PlanAnswer
from ruflo.errors import Conflict, NotFound
from ruflo.event_kinds import EventKind
from ruflo.model import (
    JSON,
    Agent,
    Approval,
    ApprovalKind,
    ApprovalStatus,
    Task,
    TaskState,
    new_id,
)
from ruflo.policies.base import AwaitApproval

__all__ = ["HiringEngine"]


class HiringEngine(CompanyBoardEngine):
    """The company engine's hiring: `_request_hire`, `_hire_decided`."""

    def _request_hire(self, member: AgentSlot, task: Task, plan: PlanAnswer) -> None:
        """Open a `hire` approval for the ticket, which waits on it (the manager's claim is
        released); a decision carries it out (`_hire_decided`)."""
        assert plan.hire is not None
        request = plan.hire
        taken = {a.name for a in self.org.agents.values()}
        name, n = request.name, 1
        while name in taken:  # names are how managers and people tell agents apart
            n += 1
            name = f"{request.name} ({n})"
        skills = sorted({s.strip() for s in request.skills if s.strip()})
        hire: JSON = {"name": name, "title": request.title, "capabilities": request.capabilities,
                      "skills": skills, "model": request.model or member.agent.model}
        approval = Approval(
            id=new_id(), hive_id=self.hive_id, kind=ApprovalKind.HIRE, agent_id=member.id,
            subject=f"{member.agent.name} asks to hire {name} ({request.title or 'no title'}; "
                    f"skills: {', '.join(skills)}) for {task.title!r}: {plan.reason}. Approve "
                    f"to add them under {member.agent.name} and hand them the ticket; reject "
                    f"and {member.agent.name} decides without a new hire.",
            data={"task_id": task.id, "manager": member.id, "hire": hire,
                  "reason": plan.reason})
        try:
            with self.store.transaction():
                self._still_held(member, task)
                self.store.create_approval(approval)
                self.store.release_task(task.id, member.id, reason="waits on a hire approval")
                self.store.update_task(task.id, state=TaskState.BLOCKED, assignee=member.id,
                                       blocked_on=f"approval {approval.id}: hire {name}")
                self.store.append_event(self.hive_id, EventKind.HIRE_REQUESTED, agent_id=member.id,
                                        task_id=task.id, data={
                                            "approval_id": approval.id, "name": name,
                                            "skills": skills, "reason": plan.reason})
        except Conflict as error:
            self._discarded(member, task, str(error))
            return
        self.tickets.setdefault(task.id, Ticket(member.id)).approval = approval.id
        self._record(member.id, AwaitApproval(task.id, approval.id))
        auto_decide(self.store, approval, self.hive.config)

    def _hire_decided(self, approval: Approval) -> None:
        """Approved: the new agent joins under the manager and gets the ticket. Rejected: the
        ticket goes back to its owner, who decides without a hire."""
        task_id = str(approval.data.get("task_id"))
        ticket = self.tickets.get(task_id)
        if ticket is None or ticket.approval != approval.id or not self._waits_on(task_id,
                                                                                 approval):
            return
        ticket.approval = None
        manager = str(approval.data.get("manager"))
        if approval.status is ApprovalStatus.APPROVED:
            hired = self._hire(approval)
            ticket.escalated = None
            with self.store.transaction():
                self.store.update_task(task_id, state=TaskState.OPEN, blocked_on=None)
                self.store.append_event(self.hive_id, EventKind.TICKET_UNBLOCKED, task_id=task_id,
                                        data={
                    "approval_id": approval.id, "by": approval.decided_by,
                    "how": f"hired {hired.name}"})
            manager_name = self.org.agents[manager].name if manager in self.org.agents \
                else manager
            self._own(task_id, hired.id, EventKind.TICKET_DELEGATED, by=manager,
                      reason="hired for it",
                      data={"from": manager, "from_name": manager_name, "chosen_by": "hire"})
            return
        ticket.hire_rejected = True
        task = self.store.get_task(task_id)
        with self.store.transaction():
            self.store.update_task(task_id, state=TaskState.OPEN, blocked_on=None,
                                   assignee=ticket.owner, description=(
                f"{task.description}\n\nHiring for this ticket was rejected by "
                f"{approval.decided_by}: decide without a new hire.").strip())
            self.store.append_event(self.hive_id, EventKind.TICKET_UNBLOCKED, task_id=task_id,
                                    data={
                "approval_id": approval.id, "by": approval.decided_by, "how": "hire rejected"})
        owner = self._working_owner(ticket.owner)
        if owner != ticket.owner:
            self._own(task_id, owner, EventKind.TICKET_REASSIGNED, by=None,
                      reason="its owner is gone",
                      data={"from": ticket.owner})
        else:
            self._wake(owner, "approval decided", task_id)

    def _hire(self, approval: Approval) -> Agent:
        """Add the approved hire to the hive (once: its id comes from the approval), the org
        chart and this engine, its loop started when the engine already runs."""
        hire = approval.data.get("hire")
        assert isinstance(hire, dict)
        agent_id = board_id(self.hive_id, f"hire-{approval.id[:12]}")
        try:
            agent = self.store.get_agent(agent_id)
        except NotFound:
            model = hire.get("model")
            with self.store.transaction():
                agent = self.store.add_agent(Agent(
                    id=agent_id, hive_id=self.hive_id, name=str(hire["name"]),
                    title=str(hire.get("title") or "new hire"),
                    capabilities=str(hire["capabilities"]),
                    skills=tuple(str(s) for s in hire.get("skills") or ()),
                    model=model if isinstance(model, str) and model else None,
                    reports_to=str(approval.data.get("manager"))))
                self.store.append_event(self.hive_id, EventKind.AGENT_HIRED, agent_id=agent_id,
                                        task_id=str(approval.data.get("task_id")), data={
                                            "approval_id": approval.id, "name": agent.name,
                                            "reports_to": agent.reports_to,
                                            "skills": list(agent.skills)})
        self._set_org(self.store.list_agents(self.hive_id))
        if agent_id not in self.slots:
            slot = self._host(agent)
            budgets = getattr(self.gateway, "budgets", None)
            if budgets is not None:
                budgets.refresh(agent_id=agent_id)
            if self._helpers:  # running: the loops of the rest have started already
                self._start_loop(slot)
        return agent

