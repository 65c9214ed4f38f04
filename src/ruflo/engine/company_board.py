"""The live company engine's board: tickets and who owns them, kept in line with the store and
its event log, and the company rules (`CompanyPolicy`) asked over that board. Depends on the
model, the Store protocol, ruflo.policies.company and ruflo.engine.core.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from ruflo.agents import Executor, TaskTool, executor_for
from ruflo.agents.isolated import merge_commit_of
from ruflo.engine.clock import REAL_CLOCK, LiveClock
from ruflo.engine.core import AgentSlot, HiveEngine
from ruflo.engine.params import LiveParams
from ruflo.engine.start import objective_task
from ruflo.errors import Conflict
from ruflo.event_kinds import EventKind
from ruflo.model import (
    JSON,
    Agent,
    Approval,
    ApprovalKind,
    ApprovalStatus,
    Task,
    TaskState,
)
from ruflo.policies.base import AwaitApproval, Decision, Delegate, Take
from ruflo.policies.company import (
    CompanyParams,
    CompanyPolicy,
    OrgChart,
    TicketView,
    acting_root,
    nearest_live_manager,
    part_load,
    working_owner,
)

if TYPE_CHECKING:
    from ruflo.gateway.base import Gateway
    from ruflo.memory.notes import Memory
    from ruflo.store.base import Store

WORK_TOOLS = frozenset({TaskTool.COMPLETE, TaskTool.ESCALATE})
"""What a company agent may end an attempt with: done, or blocked (escalated)."""

OWNING = (EventKind.TICKET_ASSIGNED, EventKind.TICKET_DELEGATED, EventKind.TICKET_ESCALATED,
          EventKind.TICKET_REASSIGNED)
"""Events that change who owns a ticket (their data names the new `owner`)."""


@dataclass(slots=True)
class Ticket:
    """What the engine remembers about a ticket beyond the store row."""

    owner: str
    escalations: int = 0
    escalated: str | None = None
    """The blocker's description while the ticket waits for its owner (a manager) to decide."""
    escalated_by: str | None = None
    approval: str | None = None
    """The approval it waits on (a root's escalation goes to people; a hire)."""
    hire_rejected: bool = False
    """People rejected a hire for it: its manager decides without one."""
    notes: list[str] = field(default_factory=list)


class CompanyBoardEngine(HiveEngine):
    """Tickets, their owners and the company rules over them; `CompanyEngine` drives them."""

    def __init__(self, store: Store, hive_id: str, *, gateway: Gateway | None = None,
                 params: LiveParams | None = None, company: CompanyParams | None = None,
                 executors: Callable[[Agent], Executor] = executor_for,
                 model: str = "gpt-4o-mini", env: dict[str, str] | None = None,
                 memory: Memory | None = None,
                 on_change: Callable[[], None] | None = None,
                 on_decision: Callable[[str, Decision], None] | None = None,
                 clock: LiveClock = REAL_CLOCK) -> None:
        super().__init__(store, hive_id, gateway=gateway, params=params or LiveParams(),
                         executors=executors, model=model, env=env, memory=memory,
                         on_change=on_change, clock=clock)
        self.on_decision = on_decision
        self.company = company or CompanyParams(max_depth=2, batch=8, max_attempts=3)
        """Bounds: delegation depth, tickets per plan (batch), escalations per ticket
        (max_attempts), hires per hive. Without `company`, the hive config's `max_depth` and
        `max_hires` are honoured."""
        self._company_given = company is not None
        self.tickets: dict[str, Ticket] = {}
        self.org: OrgChart
        self.policy: CompanyPolicy
        """The company rules every decision of this engine comes from."""
        self._tools = WORK_TOOLS

    def _set_org(self, agents: Sequence[Agent]) -> None:
        self.org = OrgChart(agents)
        self.policy = CompanyPolicy(self.org, self.company)

    # -- the rules over this board -----------------------------------------------------------
    def _alive(self, agent_id: str) -> bool:
        member = self.slots.get(agent_id)
        return member is not None and member.alive

    def _acting_root(self) -> str:
        return acting_root(self.org, self._alive) or self.org.root

    def _working_owner(self, agent_id: str) -> str:
        """The agent itself if alive, else its nearest live manager, else the acting root."""
        return working_owner(self.org, agent_id, self._alive)

    def _workload(self, tasks: Sequence[Task] | None = None) -> dict[str, float]:
        """Unfinished effort per agent's part of the org (what least-loaded compares)."""
        if tasks is None:
            tasks = self.store.list_tasks(self.hive_id, states=[
                TaskState.OPEN, TaskState.CLAIMED, TaskState.BLOCKED])
        return part_load(self.org, ((self.tickets[t.id].owner, t.effort) for t in tasks
                                    if not t.state.terminal and t.id in self.tickets))

    def _view(self, task: Task, *, split: bool) -> TicketView:
        ticket = self.tickets.get(task.id)
        if ticket is None:
            return TicketView(task.id, task.skills, task.depth, split=split)
        return TicketView(task.id, task.skills, task.depth, split=split,
                          escalated=ticket.escalated is not None,
                          escalated_by=ticket.escalated_by, escalations=ticket.escalations,
                          approval=ticket.approval, hire_rejected=ticket.hire_rejected)

    def _hires_used(self) -> int:
        """Hires asked for in this hive (pending and approved ones count)."""
        return sum(a.kind is ApprovalKind.HIRE and a.status is not ApprovalStatus.REJECTED
                   for a in self.store.list_approvals(hive_id=self.hive_id))

    def _decide(self, agent_id: str, task: Task, tasks: Sequence[Task],
                ) -> Take | Delegate | AwaitApproval:
        """The policy's decision for the holder of one ticket, over the board `tasks`."""
        split = any(t.parent_id == task.id for t in tasks)
        view = self._view(task, split=split)
        if view.approval is not None:
            return self.policy.decide_ticket(agent_id, view, self._alive, {})
        return self.policy.decide_ticket(agent_id, view, self._alive, self._workload(tasks),
                                         self._hires_used())

    def _record(self, agent_id: str, decision: Decision) -> None:
        if self.on_decision is not None:
            self.on_decision(agent_id, decision)

    # -- tickets posted ----------------------------------------------------------------------
    def _post_objective(self) -> Task:
        """The objective as the root's first ticket (`objective_task`, under a stable id)."""
        task = replace(objective_task(self.hive), id=f"{self.hive_id[:8]}.objective",
                       assignee=self.org.root)
        return self.store.post_tasks(self.hive_id, [task])[0]

    def _owner_for_new(self, task: Task) -> str:
        """A sub-ticket goes to its parent's owner; an integration ticket (its parent's merge
        conflicted or broke a check, agents/isolated.py) to that owner's nearest working
        manager, who integrates; anything else to the acting root."""
        if task.parent_id is not None and task.parent_id in self.tickets:
            owner = self.tickets[task.parent_id].owner
            if merge_commit_of(self.store, task) is not None:
                manager = nearest_live_manager(self.org, owner, self._alive)
                return manager if manager is not None else self._working_owner(owner)
            return self._working_owner(owner)
        return self._acting_root()

    def _load_owners(self) -> None:
        """Every ticket's owner, escalation and approval as the event log and approvals say."""
        for event in self.store.events(self.hive_id, kinds=[*OWNING, EventKind.TICKET_UNBLOCKED,
                                                            EventKind.APPROVAL_REQUESTED]):
            task_id = event.task_id
            if task_id is None:
                continue
            owner = event.data.get("owner")
            if event.kind in OWNING and isinstance(owner, str):
                ticket = self.tickets.setdefault(task_id, Ticket(owner))
                ticket.owner = owner
                if event.kind == EventKind.TICKET_ESCALATED:
                    ticket.escalations += 1
                    ticket.escalated = str(event.data.get("reason", ""))
                    ticket.escalated_by = event.agent_id
                elif event.kind in (EventKind.TICKET_ASSIGNED, EventKind.TICKET_DELEGATED):
                    ticket.escalated = None
            elif event.kind == EventKind.TICKET_UNBLOCKED and task_id in self.tickets:
                self.tickets[task_id].escalated = None
                self.tickets[task_id].approval = None

    def _pending_on(self) -> list[Approval]:
        """Mark tickets waiting on approvals; returns those decided while no engine ran whose
        decision is still to be carried out."""
        decided_later: list[Approval] = []
        for approval in self.store.list_approvals(hive_id=self.hive_id):
            task_id = approval.data.get("task_id")
            if not isinstance(task_id, str) or task_id not in self.tickets or \
                    approval.kind is ApprovalKind.ACTION:  # waited on inside an attempt
                continue
            if approval.status is ApprovalStatus.PENDING:
                self.tickets[task_id].approval = approval.id
                continue
            if approval.kind is ApprovalKind.HIRE:
                self.tickets[task_id].hire_rejected |= \
                    approval.status is ApprovalStatus.REJECTED
            if self._waits_on(task_id, approval):  # decided while no engine ran
                self.tickets[task_id].approval = approval.id
                decided_later.append(approval)
        return decided_later

    def _waits_on(self, task_id: str, approval: Approval) -> bool:
        """The ticket is still blocked on this approval (its decision not yet carried out)."""
        task = self.store.get_task(task_id)
        return task.state is TaskState.BLOCKED and \
            (task.blocked_on or "").startswith(f"approval {approval.id}")

    # -- ownership and wake-ups --------------------------------------------------------------
    def _own(self, task_id: str, owner: str, kind: str, *, by: str | None, reason: str,
             data: JSON | None = None) -> None:
        """Record who owns a ticket (the event and the row's assignee) and wake them."""
        ticket = self.tickets.setdefault(task_id, Ticket(owner))
        ticket.owner = owner
        if kind in (EventKind.TICKET_ASSIGNED, EventKind.TICKET_DELEGATED):
            ticket.escalated = None
        with self.store.transaction():
            task = self.store.get_task(task_id)
            if task.state is not TaskState.CLAIMED:
                self.store.update_task(task_id, assignee=owner)
            self.store.append_event(self.hive_id, kind, agent_id=by, task_id=task_id, data={
                "owner": owner, "owner_name": self.org.agents[owner].name, "reason": reason,
                "depth": task.depth, "parent": task.parent_id, **(data or {})})
        self._wake(owner, "escalated" if kind == EventKind.TICKET_ESCALATED else "assigned",
                   task_id)

    def _restore_owner(self, task_id: str) -> None:
        """A claim ended (released, expired): the row's assignee is the owner again."""
        ticket = self.tickets.get(task_id)
        if ticket is None:
            return
        task = self.store.get_task(task_id)
        if task.state is TaskState.OPEN and task.assignee != ticket.owner:
            self.store.update_task(task_id, assignee=ticket.owner)

    def _wake(self, agent_id: str, reason: str, task_id: str | None = None) -> None:
        member = self.slots.get(agent_id)
        if member is None or not member.alive:
            return
        self.store.append_event(self.hive_id, EventKind.AGENT_WOKEN, agent_id=agent_id,
                                task_id=task_id,
                                data={"reason": reason})
        member.wake.set()

    def _still_held(self, member: AgentSlot, task: Task) -> None:
        current = self.store.get_task(task.id)
        if current.state is not TaskState.CLAIMED or current.assignee != member.id:
            raise Conflict(f"ticket {task.id} is no longer held by {member.agent.name}")

    # -- what the engine on top says -----------------------------------------------------------
    @abstractmethod
    def _after_end(self, task: Task) -> None:
        """A ticket ended: wake who waited on it, reopen its parent when it was the last."""

    @abstractmethod
    def _hand_on(self, member: AgentSlot, why: str) -> None:
        """A paused or lost agent's unfinished tickets go to its nearest live manager."""

    def _owners_of_ready_work(self) -> list[str]:
        owners = {t.owner for tid, t in self.tickets.items()}
        return sorted(o for o in owners if o in self.slots)
