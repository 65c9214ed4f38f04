"""Live company mode: an org chart drives a stored hive through real time. The root plans the
objective into tickets through the LLM and delegates them by capability, managers split further
(bounded depth), individual contributors do the work with the swarm's agents; blocked work
escalates up the chain. Depends on the model, the Store and Gateway protocols,
ruflo.policies.company, ruflo.agents, ruflo.engine.core (the run loop it shares with the swarm)
and the live engine's parameters.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ruflo.agents import Executor, OutcomeKind, TaskOutcome, TaskTool, executor_for
from ruflo.agents.loop import completion_tokens
from ruflo.engine.approvals import open_budget_override
from ruflo.engine.clock import REAL_CLOCK, LiveClock
from ruflo.engine.core import KILLED, AgentSlot, HiveEngine
from ruflo.engine.live import LiveEngine, LiveParams
from ruflo.engine.plan import answer_json, first_problem
from ruflo.errors import (
    BudgetExceeded,
    ConfigError,
    Conflict,
    GatewayError,
    NotFound,
    PolicyError,
    RufloError,
)
from ruflo.gateway.base import CallContext, ChatMessage
from ruflo.model import (
    JSON,
    Agent,
    AgentStatus,
    Approval,
    ApprovalKind,
    ApprovalStatus,
    CostKind,
    Event,
    Hive,
    Mode,
    Task,
    TaskState,
    new_id,
)
from ruflo.policies.company import CompanyParams, OrgChart, choose_delegate, review_delegate

if TYPE_CHECKING:
    from ruflo.gateway.base import Gateway
    from ruflo.memory.notes import Memory
    from ruflo.store.base import Store

__all__ = ["PLAN_TOOL", "CompanyEngine", "company_report", "engine_for", "parse_plan_answer"]

log = logging.getLogger(__name__)

WORK_TOOLS = frozenset({TaskTool.COMPLETE, TaskTool.ESCALATE})
"""What a company agent may end an attempt with: done, or blocked (escalated)."""

OWNING = ("ticket_assigned", "ticket_delegated", "ticket_escalated", "ticket_reassigned")
"""Events that change who owns a ticket (their data names the new `owner`)."""

FOLLOWED = frozenset({
    "task_posted", "task_cancelled", "lease_expired", "approval_decided", "hive_paused",
    "hive_running", "hive_cancelled", "hive_budget_changed", "agent_resumed",
})
"""Event kinds the engine reacts to (its own, and those written by the CLI or server)."""


# -- the planning answer -----------------------------------------------------------------------

class PlannedTicket(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    title: str = Field(min_length=1, max_length=300)
    description: str = ""
    skills: list[str] = Field(default_factory=list)
    report: str | None = None
    depends_on: list[str | int] = Field(default_factory=list)
    verify: str | None = None


class HireRequest(BaseModel):
    """Who a manager asks to add under it: a built-in LLM agent."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=80)
    title: str = Field(default="", max_length=120)
    capabilities: str = Field(min_length=1, max_length=1000)
    skills: list[str] = Field(min_length=1, max_length=20)
    model: str | None = None


class PlanAnswer(BaseModel):
    """A manager's decision on one ticket."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    action: Literal["split", "assign", "self", "escalate", "hire"]
    tickets: list[PlannedTicket] = Field(default_factory=list)
    report: str | None = None
    hire: HireRequest | None = None
    note: str = ""
    reason: str = ""


HIRE_SCHEMA: JSON = {
    "type": "object", "required": ["name", "capabilities", "skills"],
    "additionalProperties": False,
    "properties": {"name": {"type": "string"}, "title": {"type": "string"},
                   "capabilities": {"type": "string"},
                   "skills": {"type": "array", "items": {"type": "string"}},
                   "model": {"type": "string"}}}


def plan_tool(*, may_hire: bool) -> JSON:
    """The plan tool as offered to one manager for one ticket: with `hire` only while hiring is
    open to it (the hive has hires left and people have not rejected one for the ticket)."""
    actions = ["split", "assign", "self", "escalate"] + (["hire"] if may_hire else [])
    description = ("Decide how this ticket gets done. action=split: child tickets, each for "
                   "one of your reports; assign: hand the whole ticket to one report; self: "
                   "do it yourself; escalate: you cannot resolve it, pass it up with a reason.")
    if may_hire:
        description += (" hire: none of your reports can do it; ask people to approve a new "
                        "report for it.")
    properties: JSON = {
        "action": {"type": "string", "enum": actions},
        "tickets": {"type": "array", "items": {
            "type": "object", "required": ["title", "report"], "additionalProperties": False,
            "properties": {
                "title": {"type": "string"},
                "description": {"type": "string"},
                "skills": {"type": "array", "items": {"type": "string"}},
                "report": {"type": "string"},
                "depends_on": {"type": "array", "items": {"type": ["string", "integer"]}},
                "verify": {"type": "string"}}}},
        "report": {"type": "string"},
        "note": {"type": "string"},
        "reason": {"type": "string"}}
    if may_hire:
        properties["hire"] = HIRE_SCHEMA
    return {"type": "function", "function": {
        "name": "plan", "description": description,
        "parameters": {"type": "object", "required": ["action"], "additionalProperties": False,
                       "properties": properties}}}


PLAN_TOOL = plan_tool(may_hire=True)
"""The plan tool with every action."""


def parse_plan_answer(text: str, *, max_tickets: int, may_hire: bool = False) -> PlanAnswer:
    """A planning answer (the plan tool's arguments, or JSON in the content) as a PlanAnswer.
    Raises PolicyError saying what is wrong, for the model to correct."""
    try:
        data = answer_json(text)
    except json.JSONDecodeError as error:
        raise PolicyError(f"the answer is not JSON ({error.msg})") from None
    try:
        answer = PlanAnswer.model_validate(data)
    except ValidationError as error:
        raise PolicyError(first_problem(error)) from None
    if answer.action == "split" and not 1 <= len(answer.tickets) <= max_tickets:
        raise PolicyError(f"split needs between 1 and {max_tickets} tickets, not "
                          f"{len(answer.tickets)}")
    if answer.action == "assign" and not answer.report:
        raise PolicyError("assign needs the report who takes the ticket")
    if answer.action == "escalate" and not answer.reason:
        raise PolicyError("escalate needs the reason")
    if answer.action == "hire":
        if not may_hire:
            raise PolicyError("hiring is not open for this ticket: split, assign, do it "
                              "yourself or escalate")
        if answer.hire is None:
            raise PolicyError("hire needs the hire object: name, capabilities and skills")
        if not any(skill.strip() for skill in answer.hire.skills):
            raise PolicyError("hire needs at least one skill the new report has")
        if not answer.reason:
            raise PolicyError("hire needs the reason none of your reports can do it")
    titles = [t.title for t in answer.tickets]
    for n, ticket in enumerate(answer.tickets):
        for ref in ticket.depends_on:
            index = ref if isinstance(ref, int) else (int(ref) if ref.isdigit() else None)
            if index is None and ref not in titles:
                raise PolicyError(f"ticket {n} depends on {ref!r}, not a ticket of this plan")
            if index is not None and not (0 <= index < len(titles) and index != n):
                raise PolicyError(f"ticket {n} depends on index {index}, not another ticket")
    return answer


# -- the engine --------------------------------------------------------------------------------

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


class CompanyEngine(HiveEngine):
    """Drives one stored company hive: see `run` for the loop."""

    FOLLOWED = FOLLOWED
    NAME = "ruflo-company"
    OBJECTIVE_FAILED = "not every ticket of the objective succeeded"

    def __init__(self, store: Store, hive_id: str, *, gateway: Gateway | None = None,
                 params: LiveParams | None = None, company: CompanyParams | None = None,
                 executors: Callable[[Agent], Executor] = executor_for,
                 model: str = "gpt-4o-mini", env: dict[str, str] | None = None,
                 memory: Memory | None = None,
                 on_change: Callable[[], None] | None = None,
                 clock: LiveClock = REAL_CLOCK) -> None:
        super().__init__(store, hive_id, gateway=gateway, params=params or LiveParams(),
                         executors=executors, model=model, env=env, memory=memory,
                         on_change=on_change, clock=clock)
        self.company = company or CompanyParams(max_depth=2, batch=8, max_attempts=3)
        """Bounds: delegation depth, tickets per plan (batch), escalations per ticket
        (max_attempts), hires per hive. Without `company`, the hive config's `max_depth` and
        `max_hires` are honoured."""
        self._company_given = company is not None
        self.tickets: dict[str, Ticket] = {}
        self.org: OrgChart
        self._tools = WORK_TOOLS

    # -- the run ---------------------------------------------------------------------------------
    async def run(self) -> Hive:
        """Drive the company until the hive ends, or (by default) pauses.

        The run loop (`HiveEngine.run` starts the agent loops, the event consumer and the lease
        timer, follows pause, resume and cancel, and ends the hive when every ticket is
        terminal; this engine says who owns which ticket and what an agent does with it):
        1. Load the org chart (a tree, validated) and every ticket's owner from the event log.
           An empty board gets the objective as one ticket owned by the root.
        2. Each agent sleeps on its wake flag. It is woken only by an event that concerns it:
           a ticket assigned (delegated, escalated or reassigned) to it, its tickets' blockers
           resolved, all children of its ticket finished, an approval decided, a resume. Woken,
           it claims its most urgent ready ticket with a lease (renewed while it works).
        3. A manager whose ticket may still be delegated (it has live reports and the ticket is
           under the depth bound) makes one metered coordination call with the plan tool:
           split → child tickets for reports (each choice checked against capabilities), the
           ticket blocked on them; assign → the whole ticket goes to a report; escalate → up
           the chain; self → it does the ticket. Everyone else does the ticket with the swarm's
           agent runtime: complete (the verify command decides) or escalate (blocked: the
           ticket names what it waits on and goes to the manager, who decides).
        4. A ticket done wakes the owners of tickets that waited on it; the last child finished
           reopens the parent for its owner to integrate and close (its verify decides).
        5. A budget cap reached pauses the agent (or hive) and opens a budget_override approval
           (decided by a person, or the hive's explicit auto-approval policy); deciding it wakes
           the agent. A root's escalation goes to people as a strategy approval.
        6. A dead agent's claim reopens when its lease expires; its tickets go to its nearest
           live manager (or the acting root), who delegates them again.
        7. When every ticket has ended the hive is done if the objective's tickets succeeded
           (and the hive's verify command passes, unless the objective ticket already ran it);
           with no agent left that can work and no approval pending, it pauses.
        """
        return await super().run()

    def _check_runnable(self, hive: Hive) -> None:
        if hive.mode is not Mode.COMPANY:
            raise ConfigError(f"hive {hive.id} is a {hive.mode.value} hive, not a company; "
                              "nothing was run")
        super()._check_runnable(hive)

    def _started_data(self) -> JSON:
        return {"mode": "company", "agents": sorted(self.slots), "root": self.org.root,
                "max_depth": self.company.max_depth, "max_tickets": self.company.batch,
                "lease_seconds": self.params.lease_seconds,
                "approvals": self.hive.config.get("approvals")}

    def _wake_all(self, why: str) -> None:
        for agent_id in self._owners_of_ready_work():
            self._wake(agent_id, why)

    # -- loading ---------------------------------------------------------------------------------
    def _load_work(self, agents: Sequence[Agent]) -> None:
        if not self._company_given:
            bounds = {key: value for key in ("max_depth", "max_hires")
                      if isinstance(value := self.hive.config.get(key), int)
                      and not isinstance(value, bool)}
            self.company = replace(self.company, **bounds)
        self.org = OrgChart(agents)
        for agent in agents:
            self._host(agent)
        self._load_tickets()

    def _load_tickets(self) -> None:
        for event in self.store.events(self.hive_id, kinds=[*OWNING, "ticket_unblocked",
                                                            "approval_requested"]):
            task_id = event.task_id
            if task_id is None:
                continue
            owner = event.data.get("owner")
            if event.kind in OWNING and isinstance(owner, str):
                ticket = self.tickets.setdefault(task_id, Ticket(owner))
                ticket.owner = owner
                if event.kind == "ticket_escalated":
                    ticket.escalations += 1
                    ticket.escalated = str(event.data.get("reason", ""))
                    ticket.escalated_by = event.agent_id
                elif event.kind in ("ticket_assigned", "ticket_delegated"):
                    ticket.escalated = None
            elif event.kind == "ticket_unblocked" and task_id in self.tickets:
                self.tickets[task_id].escalated = None
                self.tickets[task_id].approval = None
        decided_later: list[Approval] = []
        for approval in self.store.list_approvals(hive_id=self.hive_id):
            task_id = approval.data.get("task_id")
            if not isinstance(task_id, str) or task_id not in self.tickets:
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
        tasks = self.store.list_tasks(self.hive_id)
        if not tasks:
            tasks = [self._post_objective()]
        for task in tasks:
            if task.state is TaskState.CLAIMED and task.assignee in self.slots:
                # The previous run of this agent is gone; this process hosts it now.
                self.store.release_task(task.id, task.assignee,
                                        reason="the run that held it stopped")
                self._restore_owner(task.id)
            if task.id not in self.tickets and not task.state.terminal:
                owner = self._owner_for_new(task)
                self._own(task.id, owner, "ticket_assigned", by=None, reason="posted")
        for task in self.store.list_tasks(self.hive_id, states=[TaskState.BLOCKED]):
            self._maybe_reopen_parent(task.id)
        self._apply_decided()
        self._rejected_approvals()
        for approval in decided_later:  # by the CLI or the server's store-only runner
            if approval.kind is ApprovalKind.HIRE:
                self._hire_decided(approval)
            else:
                self._strategy_decided(approval)

    def _apply_decided(self) -> None:
        """Budget overrides decided while no engine ran (e.g. through the server's store-only
        runner) are carried out now."""
        from ruflo.engine.approvals import apply_decision

        for status in (ApprovalStatus.APPROVED, ApprovalStatus.REJECTED):
            for approval in self.store.list_approvals(hive_id=self.hive_id, status=status):
                if apply_decision(self.store, approval):
                    scope_id = approval.data.get("scope_id")
                    member = self.slots.get(scope_id) if isinstance(scope_id, str) else None
                    if member is not None and status is ApprovalStatus.APPROVED:
                        member.paused = None

    def _post_objective(self) -> Task:
        hive = self.hive
        verify = hive.config.get("verify")
        title = hive.objective.strip().splitlines()[0][:200] if hive.objective.strip() \
            else hive.name
        task = Task(id=f"{hive.id[:8]}.objective", hive_id=hive.id, title=title,
                    description=hive.objective, verify=verify if isinstance(verify, str)
                    and verify.strip() else None, assignee=self.org.root)
        return self.store.post_tasks(hive.id, [task])[0]

    def _owner_for_new(self, task: Task) -> str:
        if task.parent_id is not None and task.parent_id in self.tickets:
            return self._working_owner(self.tickets[task.parent_id].owner)
        return self._acting_root()

    def _acting_root(self) -> str:
        live = [a for a in self.org.agents if self._alive(a)]
        if self._alive(self.org.root) or not live:
            return self.org.root
        return min(live, key=lambda a: (self.org.depth[a], a))

    def _alive(self, agent_id: str) -> bool:
        member = self.slots.get(agent_id)
        return member is not None and member.alive

    def _working_owner(self, agent_id: str) -> str:
        """The agent itself if alive, else its nearest live manager, else the acting root."""
        for member in self.org.chain(agent_id):
            if self._alive(member):
                return member
        return self._acting_root()

    # -- ownership and wake-ups ------------------------------------------------------------------
    def _own(self, task_id: str, owner: str, kind: str, *, by: str | None, reason: str,
             data: JSON | None = None) -> None:
        """Record who owns a ticket (the event and the row's assignee) and wake them."""
        ticket = self.tickets.setdefault(task_id, Ticket(owner))
        ticket.owner = owner
        if kind in ("ticket_assigned", "ticket_delegated"):
            ticket.escalated = None
        with self.store.transaction():
            task = self.store.get_task(task_id)
            if task.state is not TaskState.CLAIMED:
                self.store.update_task(task_id, assignee=owner)
            self.store.append_event(self.hive_id, kind, agent_id=by, task_id=task_id, data={
                "owner": owner, "owner_name": self.org.agents[owner].name, "reason": reason,
                "depth": task.depth, "parent": task.parent_id, **(data or {})})
        self._wake(owner, "escalated" if kind == "ticket_escalated" else "assigned", task_id)

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
        self.store.append_event(self.hive_id, "agent_woken", agent_id=agent_id, task_id=task_id,
                                data={"reason": reason})
        member.wake.set()

    def _owners_of_ready_work(self) -> list[str]:
        owners = {t.owner for tid, t in self.tickets.items()}
        return sorted(o for o in owners if o in self.slots)

    # -- agent loops -----------------------------------------------------------------------------
    async def _next_task(self, member: AgentSlot) -> Task | None:
        """Claim the agent's most urgent ticket that is ready (open, blockers done), turning an
        escalated ticket that waits for this manager's decision into an open one first."""
        mine = self.store.list_tasks(self.hive_id, states=[TaskState.OPEN, TaskState.BLOCKED],
                                     assignee=member.id)
        mine.sort(key=lambda t: (-t.priority, t.created_at))
        for task in mine:
            ticket = self.tickets.get(task.id)
            if ticket is None or ticket.owner != member.id or ticket.approval is not None:
                continue
            if task.state is TaskState.BLOCKED:
                if ticket.escalated is None:
                    continue  # waiting on its children
                self.store.update_task(task.id, state=TaskState.OPEN)
            claimed = self.store.claim_task(self.hive_id, member.id,
                                            lease_seconds=self.params.lease_seconds,
                                            task_id=task.id, now=self.clock.utcnow())
            if claimed is not None:
                self._claims_changed.set()
                return claimed
        return None

    # -- one ticket ------------------------------------------------------------------------------
    async def _attempt(self, member: AgentSlot, task: Task) -> None:
        member.task_id = task.id
        self.store.update_agent(member.id, status=AgentStatus.WORKING, current_task=task.id,
                                heartbeat_at=self.clock.utcnow())
        renewal = asyncio.create_task(self._renew(member, task.id))
        try:
            try:
                if self._delegable(member, task):
                    answer = await self._plan(member, task)
                    if answer.action != "self":
                        self._carry_out(member, task, answer)
                        return
                    self._unblock(member, task, "the manager does it itself")
                agent = self.store.get_agent(member.id)
                outcome = await member.executor.run(task, agent, self.hive,
                                                    self._context(member))
            except asyncio.CancelledError:
                if member.stop_reason in (None, KILLED):
                    raise
                self._give_back(member, task, member.stop_reason)
                return
            except GatewayError as error:
                if error.pauses_hive:
                    self._give_back(member, task, f"hive paused: {error.pause_reason}")
                    self._pause_hive(error.pause_reason, str(error))
                else:
                    self._give_back(member, task, f"gateway: {error}")
                    self._escalate(member, task, f"the gateway failed: {error}")
                return
            except BudgetExceeded as error:
                self._give_back(member, task, str(error).split(";")[0])
                self._over_budget(member, error)
                return
            except RufloError as error:
                self._give_back(member, task, f"agent error: {error}")
                self._pause_agent(member, str(error))
                return
            except Exception as error:
                log.exception("agent %s crashed on ticket %s", member.agent.name, task.id)
                self._give_back(member, task, f"agent crashed: {error!r}")
                self._pause_agent(member, f"crashed: {error!r}")
                return
            self._apply(member, task, outcome)
        finally:
            renewal.cancel()
            if member.stop_reason != KILLED:
                member.task_id = None
                status = AgentStatus.IDLE if member.paused is None else AgentStatus.PAUSED
                self.store.update_agent(member.id, status=status, current_task=None)

    def _give_back(self, member: AgentSlot, task: Task, reason: str) -> None:
        try:
            self.store.release_task(task.id, member.id, reason=reason)
        except Conflict:
            return  # not ours any more (expired, cancelled): the events say what it is
        self._restore_owner(task.id)

    # -- delegation ------------------------------------------------------------------------------
    def _delegable(self, member: AgentSlot, task: Task) -> bool:
        if not self.org.live_reports(member.id, self._alive):
            return False
        ticket = self.tickets.get(task.id)
        if ticket is not None and ticket.escalated is not None:
            return True  # the manager decides what happens to a blocked ticket, at any depth
        if task.depth >= self.company.max_depth:
            return False
        return not any(t.parent_id == task.id for t in self.store.list_tasks(self.hive_id))

    async def _plan(self, member: AgentSlot, task: Task) -> PlanAnswer:
        """Ask the manager's model how the ticket gets done (metered as coordination). A bad
        answer is sent back once with the reason; a second one falls back to the capability
        heuristic, so the work never stalls on a confused planner."""
        if self.gateway is None:
            raise ConfigError("company mode needs a gateway for its managers: set "
                              "OPENAI_BASE_URL and OPENAI_API_KEY; the ticket was left as it was")
        may_hire = self._may_hire(task)
        messages: list[ChatMessage] = [
            {"role": "system", "content": self._plan_prompt(member, may_hire=may_hire)},
            {"role": "user", "content": self._ticket_prompt(task)}]
        context = CallContext(hive_id=self.hive_id, agent_id=member.id, task_id=task.id,
                              kind=CostKind.COORDINATION)
        model = member.agent.model or self.model
        max_tokens = completion_tokens(member.agent, self.params.limits)
        problem = ""
        for attempt in (1, 2):
            answer = await self.gateway.chat(messages, model=model, context=context,
                                             tools=[plan_tool(may_hire=may_hire)],
                                             max_tokens=max_tokens)
            call = next((c for c in answer.tool_calls if c.name == "plan"), None)
            raw = call.arguments if call is not None else (answer.content or "")
            try:
                plan = parse_plan_answer(raw, max_tickets=self.company.batch,
                                         may_hire=may_hire)
            except PolicyError as error:
                problem = str(error)
                self.store.append_event(self.hive_id, "plan_refused", agent_id=member.id,
                                        task_id=task.id, data={"attempt": attempt,
                                                               "error": problem,
                                                               "answer": raw[:2000]})
                messages.append(answer.as_message())
                if call is not None:
                    messages.append({"role": "tool", "tool_call_id": call.id,
                                     "content": f"error: {problem}; call plan again"})
                else:
                    messages.append({"role": "user", "content": f"That answer was not usable: "
                                     f"{problem}. Call the plan tool."})
                continue
            self.store.append_event(self.hive_id, "ticket_planned", agent_id=member.id,
                                    task_id=task.id, data={
                                        "action": plan.action, "tickets": len(plan.tickets),
                                        "tokens": answer.usage.total_tokens,
                                        "answer": raw[:2000]})
            return plan
        target = choose_delegate(self.org, member.id, task.skills, self._workload(), self._alive)
        self.store.append_event(self.hive_id, "plan_fallback", agent_id=member.id,
                                task_id=task.id, data={"error": problem, "to": target})
        return PlanAnswer(action="assign", report=target,
                          note="assigned by capability match (the planner's answer was unusable)")

    def _plan_prompt(self, member: AgentSlot, *, may_hire: bool) -> str:
        agent = member.agent
        reports = self.org.live_reports(member.id, self._alive)
        lines = [f"You are {agent.name}, {agent.title or agent.role} of a company of agents "
                 f"working on: {self.hive.objective}.",
                 "You manage these direct reports (choose by what they can do):"]
        for report_id in reports:
            report = self.org.agents[report_id]
            skills = ", ".join(sorted(self.org.subtree_skills[report_id])) or "general"
            lines.append(f"- {report.name} ({getattr(report, 'title', '') or report.role}): "
                         f"{report.capabilities or 'no description'}; skills: {skills}")
        lines += [
            "Decide how the ticket gets done and answer with the plan tool only:",
            f"- split: at most {self.company.batch} child tickets, each for the report whose "
            "capabilities fit; depends_on names other tickets of the list by 0-based index; "
            "give a verify shell command when one can prove the ticket done;",
            "- assign: the whole ticket to one report, with a note;",
            "- self: do it yourself (only if it is small and within your own skills);",
            "- escalate: you cannot resolve it; say why."]
        if may_hire:
            lines.append("- hire: none of your reports has the skills it needs: ask to add one "
                         "under you (name, title, capabilities, skills) and say why; people "
                         "approve or reject, and if approved the ticket goes to the new hire.")
        lines += [
            "Do not file tickets that only review, audit or report: every ticket must produce "
            "part of the result."]
        return "\n".join(lines)

    def _ticket_prompt(self, task: Task) -> str:
        lines = [f"Ticket: {task.title}"]
        if task.description and task.description != task.title:
            lines += ["", task.description]
        if task.skills:
            lines += ["", f"Skills: {', '.join(task.skills)}"]
        if task.verify:
            lines += ["", f"Done when this passes: `{task.verify}`"]
        ticket = self.tickets.get(task.id)
        if ticket is not None and ticket.escalated is not None:
            by = self.org.agents[ticket.escalated_by].name if ticket.escalated_by in \
                self.org.agents else "a report"
            lines += ["", f"Blocked: {by} escalated it: {ticket.escalated}. Resolve it: assign it "
                          "to someone who can, split it, do it yourself, or escalate."]
        return "\n".join(lines)

    def _workload(self) -> dict[str, float]:
        """Open tickets per agent's part of the org (what least-loaded compares)."""
        load = dict.fromkeys(self.org.agents, 0.0)
        for task in self.store.list_tasks(self.hive_id, states=[
                TaskState.OPEN, TaskState.CLAIMED, TaskState.BLOCKED]):
            ticket = self.tickets.get(task.id)
            if ticket is not None:
                for member in self.org.chain(ticket.owner):
                    load[member] += task.effort
        return load

    def _carry_out(self, member: AgentSlot, task: Task, plan: PlanAnswer) -> None:
        if plan.action == "hire":
            self._request_hire(member, task, plan)
        elif plan.action == "escalate":
            self._give_back(member, task, "escalated by its manager")
            self._escalate(member, task, plan.reason)
        elif plan.action == "assign":
            self._assign(member, task, plan)
        elif plan.action == "split":
            self._split(member, task, plan.tickets)
        else:
            raise AssertionError(plan.action)

    def _pick(self, member: AgentSlot, task: Task, named: str | None,
              skills: Sequence[str]) -> tuple[str | None, str | None]:
        ticket = self.tickets.get(task.id)
        exclude = ticket.escalated_by if ticket is not None else None
        return review_delegate(self.org, member.id, named, skills, self._workload(), self._alive,
                               exclude=exclude)

    def _assign(self, member: AgentSlot, task: Task, plan: PlanAnswer) -> None:
        target, correction = self._pick(member, task, plan.report, task.skills)
        if target is None:
            self._escalate(member, task, "no report left to take it")
            return
        note = f"\n\nNote from {member.agent.name}: {plan.note}" if plan.note else ""
        try:
            with self.store.transaction():
                self._still_held(member, task)
                self.store.release_task(task.id, member.id, reason="delegated")
                self._unblock(member, task, f"assigned to {self.org.agents[target].name}")
                # A hand-over down the tree, not a new level of split: the depth stays (the
                # org's height and the escalation cap bound how often it can move).
                self.store.update_task(task.id, description=(task.description + note).strip())
                self._own(task.id, target, "ticket_delegated", by=member.id, reason="assigned",
                          data=self._delegation_data(member, plan.report, correction))
        except Conflict as error:
            self._discarded(member, task, str(error))

    def _unblock(self, member: AgentSlot, task: Task, how: str) -> None:
        """The manager resolved an escalated ticket: it no longer waits on its blocker."""
        ticket = self.tickets.get(task.id)
        if ticket is None or ticket.escalated is None:
            return
        ticket.escalated = None
        with self.store.transaction():
            self.store.update_task(task.id, blocked_on=None)
            self.store.append_event(self.hive_id, "ticket_unblocked", agent_id=member.id,
                                    task_id=task.id, data={"how": how})

    def _delegation_data(self, member: AgentSlot, named: str | None,
                         correction: str | None) -> JSON:
        data: JSON = {"from": member.id, "from_name": member.agent.name,
                      "chosen_by": "llm" if correction is None else "capability check"}
        if correction is not None:
            data["asked_for"] = named
            data["correction"] = correction
        return data

    def _split(self, member: AgentSlot, task: Task, planned: Sequence[PlannedTicket]) -> None:
        existing = [t for t in self.store.list_tasks(self.hive_id) if t.parent_id == task.id]
        start = len(existing) + 1
        ids = [f"{task.id}.{start + n}" for n in range(len(planned))]
        titles = {p.title: ids[n] for n, p in enumerate(planned)}
        children: list[Task] = []
        owners: list[tuple[str, str | None, str | None]] = []
        for n, part in enumerate(planned):
            skills = tuple(part.skills) or task.skills
            target, correction = self._pick(member, task, part.report, skills)
            if target is None:
                target, correction = member.id, "no report left"
            deps = []
            for ref in part.depends_on:
                deps.append(ids[ref] if isinstance(ref, int) else
                            ids[int(ref)] if ref.isdigit() else titles[ref])
            children.append(Task(id=ids[n], hive_id=self.hive_id, title=part.title,
                                 description=part.description, parent_id=task.id,
                                 skills=skills, priority=task.priority,
                                 effort=max(0.1, task.effort / len(planned)),
                                 depends_on=tuple(deps), verify=part.verify or None,
                                 depth=task.depth + 1, assignee=target))
            owners.append((target, part.report, correction))
        try:
            with self.store.transaction():
                self._still_held(member, task)
                self._unblock(member, task, f"split into {len(children)} tickets")
                self.store.post_tasks(self.hive_id, children, agent_id=member.id)
                self.store.update_task(task.id, state=TaskState.BLOCKED, assignee=member.id,
                                       lease_until=None,
                                       blocked_on=f"its {len(children)} child tickets")
                self.store.append_event(self.hive_id, "ticket_blocked", agent_id=member.id,
                                        task_id=task.id, data={
                                            "blocked_on": [c.id for c in children]})
                ticket = self.tickets.setdefault(task.id, Ticket(member.id))
                ticket.owner = member.id
                for child, (target, named, correction) in zip(children, owners, strict=True):
                    self.tickets[child.id] = Ticket(target)
                    self._own(child.id, target, "ticket_delegated", by=member.id,
                              reason="assigned",
                              data=self._delegation_data(member, named, correction))
        except Conflict as error:
            self._discarded(member, task, str(error))
        except PolicyError as error:
            self._give_back(member, task, f"its plan could not be posted: {error}")
            self._escalate(member, task, f"its plan could not be posted: {error}")

    def _still_held(self, member: AgentSlot, task: Task) -> None:
        current = self.store.get_task(task.id)
        if current.state is not TaskState.CLAIMED or current.assignee != member.id:
            raise Conflict(f"ticket {task.id} is no longer held by {member.agent.name}")

    # -- outcomes --------------------------------------------------------------------------------
    def _apply(self, member: AgentSlot, task: Task, outcome: TaskOutcome) -> None:
        kind = outcome.kind
        if kind is OutcomeKind.COMPLETE:
            self._done(member, task, outcome)
        elif kind is OutcomeKind.ESCALATE:
            reason = outcome.reason or "no reason given"
            self._give_back(member, task, f"blocked: {reason}")
            self._escalate(member, task, reason)
        elif kind is OutcomeKind.FAILED:
            reason = outcome.reason or "the attempt failed"
            self._give_back(member, task, f"attempt failed: {reason}")
            self._escalate(member, task, f"attempt failed: {reason}")
        else:
            # Not offered here (an outside agent may still answer it): up to the manager.
            self._give_back(member, task, f"{kind.value} is not how company agents end a ticket")
            self._escalate(member, task, f"answered {kind.value}: "
                                         f"{outcome.reason or outcome.delegate_to or ''}")

    def _done(self, member: AgentSlot, task: Task, outcome: TaskOutcome) -> None:
        try:
            done = self.store.finish_task(task.id, member.id, state=TaskState.DONE,
                                          result=outcome.result, verified=outcome.verified,
                                          data={"turns": outcome.turns})
        except Conflict as error:
            self._discarded(member, task, str(error))
            return
        self._after_end(done)

    def _after_end(self, task: Task) -> None:
        """A ticket ended: wake the owners of tickets that waited on it, and the parent's owner
        when it was the last child."""
        unfinished = self.store.list_tasks(self.hive_id, states=[TaskState.OPEN,
                                                                 TaskState.BLOCKED])
        if task.state is TaskState.DONE:
            for other in unfinished:
                if task.id in other.depends_on and other.id in self.tickets and all(
                        self.store.get_task(d).state is TaskState.DONE
                        for d in other.depends_on):
                    self._wake(self.tickets[other.id].owner, "blocker resolved", other.id)
        else:
            self._cancel_dependents(task)
        if task.parent_id is not None:
            self._maybe_reopen_parent(task.parent_id)

    def _cancel_dependents(self, task: Task) -> None:
        unfinished = {t.id: t for t in self.store.list_tasks(self.hive_id, states=[
            TaskState.OPEN, TaskState.CLAIMED, TaskState.BLOCKED])}
        doomed = [task.id]
        for current in doomed:
            for other in unfinished.values():
                if current in other.depends_on and other.id not in doomed:
                    doomed.append(other.id)
        for task_id in doomed[1:]:
            for member in self.slots.values():
                self._stop_work(member, task_id, "a ticket it waits on did not succeed")
            with contextlib.suppress(Conflict):
                ended = self.store.finish_task(task_id, None, state=TaskState.CANCELLED,
                                               result=f"cancelled: {task.id} did not succeed")
                if ended.parent_id is not None:
                    self._maybe_reopen_parent(ended.parent_id)

    def _maybe_reopen_parent(self, parent_id: str) -> None:
        """When every child of a blocked ticket has ended, the ticket reopens for its owner to
        integrate the parts and close it (its verify command decides)."""
        try:
            parent = self.store.get_task(parent_id)
        except NotFound:
            return
        ticket = self.tickets.get(parent_id)
        if parent.state is not TaskState.BLOCKED or ticket is None or \
                ticket.escalated is not None or ticket.approval is not None:
            return
        children = [t for t in self.store.list_tasks(self.hive_id) if t.parent_id == parent_id]
        if not children or not all(t.state.terminal for t in children):
            return
        lines = "\n".join(f"- [{t.state.value}] {t.title}: {(t.result or '').strip()[:300]}"
                          for t in children)
        owner = self._working_owner(ticket.owner)
        with self.store.transaction():
            self.store.update_task(parent_id, state=TaskState.OPEN, blocked_on=None,
                                   assignee=owner,
                                   description=f"{parent.description}\n\nIts child tickets have "
                                               f"ended:\n{lines}\nIntegrate the results, check "
                                               "them, and complete this ticket (or escalate if "
                                               "it cannot be finished).".strip())
            self.store.append_event(self.hive_id, "children_completed", agent_id=owner,
                                    task_id=parent_id, data={
                                        "done": sum(t.state is TaskState.DONE for t in children),
                                        "ended": len(children)})
        if owner != ticket.owner:
            self._own(parent_id, owner, "ticket_reassigned", by=None,
                      reason="its owner is gone", data={"from": ticket.owner})
        else:
            self._wake(owner, "children completed", parent_id)

    def _escalate(self, member: AgentSlot, task: Task, reason: str) -> None:
        """Blocked: the ticket names what it waits on and goes to the manager, who decides.
        A root's ticket goes to people (a strategy approval); a ticket escalated too often
        fails for good."""
        ticket = self.tickets.setdefault(task.id, Ticket(member.id))
        current = self.store.get_task(task.id)
        if current.state.terminal:
            return
        if ticket.escalations >= self.company.max_attempts:
            with contextlib.suppress(Conflict):
                failed = self.store.finish_task(task.id, None, state=TaskState.CANCELLED,
                                                result=f"gave up after {ticket.escalations} "
                                                       f"escalations; last: {reason}")
                self.store.append_event(self.hive_id, "ticket_given_up", agent_id=member.id,
                                        task_id=task.id, data={"reason": reason})
                self._after_end(failed)
            return
        ticket.escalations += 1
        ticket.escalated, ticket.escalated_by = reason, member.id
        manager = self.org.manager.get(member.id)
        boss = self._working_owner(manager) if manager is not None else None
        if current.state is TaskState.OPEN:
            self.store.update_task(task.id, state=TaskState.BLOCKED, blocked_on=reason)
        if boss is None or boss == member.id:
            self._to_people(member, task, reason)
            return
        self._own(task.id, boss, "ticket_escalated", by=member.id, reason="escalated",
                  data={"blocked_on": reason, "from": member.id, "from_name": member.agent.name})
        ticket.escalated, ticket.escalated_by = reason, member.id

    def _to_people(self, member: AgentSlot, task: Task, reason: str) -> None:
        approval = self.store.create_approval(Approval(
            id=new_id(), hive_id=self.hive_id, kind=ApprovalKind.STRATEGY,
            agent_id=member.id,
            subject=f"{member.agent.name} (the root) is blocked on {task.title!r}: {reason}. "
                    "Approve to have it try again, reject to drop the ticket.",
            data={"task_id": task.id, "reason": reason}))
        self.tickets[task.id].approval = approval.id
        self.store.update_task(task.id, blocked_on=f"approval {approval.id}: {reason}")
        self._auto_decide(approval)

    def _auto_decide(self, approval: Approval) -> None:
        from ruflo.engine.approvals import AUTO_POLICY, decide
        from ruflo.policies.company import auto_decision

        auto = auto_decision(self.hive.config, approval.kind.value)
        if auto is not None:
            decide(self.store, approval.id, ApprovalStatus.APPROVED if auto == "approve"
                   else ApprovalStatus.REJECTED, decided_by=AUTO_POLICY)

    # -- hiring ----------------------------------------------------------------------------------
    def _may_hire(self, task: Task) -> bool:
        """Hiring is offered while the hive has hires left (pending and approved ones count)
        and people have not rejected a hire for this ticket."""
        ticket = self.tickets.get(task.id)
        if ticket is not None and ticket.hire_rejected:
            return False
        used = sum(a.kind is ApprovalKind.HIRE and a.status is not ApprovalStatus.REJECTED
                   for a in self.store.list_approvals(hive_id=self.hive_id))
        return used < self.company.max_hires

    def _waits_on(self, task_id: str, approval: Approval) -> bool:
        """The ticket is still blocked on this approval (its decision not yet carried out)."""
        task = self.store.get_task(task_id)
        return task.state is TaskState.BLOCKED and \
            (task.blocked_on or "").startswith(f"approval {approval.id}")

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
                self.store.append_event(self.hive_id, "hire_requested", agent_id=member.id,
                                        task_id=task.id, data={
                                            "approval_id": approval.id, "name": name,
                                            "skills": skills, "reason": plan.reason})
        except Conflict as error:
            self._discarded(member, task, str(error))
            return
        self.tickets.setdefault(task.id, Ticket(member.id)).approval = approval.id
        self._auto_decide(approval)

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
                self.store.append_event(self.hive_id, "ticket_unblocked", task_id=task_id, data={
                    "approval_id": approval.id, "by": approval.decided_by,
                    "how": f"hired {hired.name}"})
            manager_name = self.org.agents[manager].name if manager in self.org.agents \
                else manager
            self._own(task_id, hired.id, "ticket_delegated", by=manager, reason="hired for it",
                      data={"from": manager, "from_name": manager_name, "chosen_by": "hire"})
            return
        ticket.hire_rejected = True
        task = self.store.get_task(task_id)
        with self.store.transaction():
            self.store.update_task(task_id, state=TaskState.OPEN, blocked_on=None,
                                   assignee=ticket.owner, description=(
                f"{task.description}\n\nHiring for this ticket was rejected by "
                f"{approval.decided_by}: decide without a new hire.").strip())
            self.store.append_event(self.hive_id, "ticket_unblocked", task_id=task_id, data={
                "approval_id": approval.id, "by": approval.decided_by, "how": "hire rejected"})
        owner = self._working_owner(ticket.owner)
        if owner != ticket.owner:
            self._own(task_id, owner, "ticket_reassigned", by=None, reason="its owner is gone",
                      data={"from": ticket.owner})
        else:
            self._wake(owner, "approval decided", task_id)

    def _hire(self, approval: Approval) -> Agent:
        """Add the approved hire to the hive (once: its id comes from the approval), the org
        chart and this engine, its loop started when the engine already runs."""
        from ruflo.engine.plan import board_id

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
                self.store.append_event(self.hive_id, "agent_hired", agent_id=agent_id,
                                        task_id=str(approval.data.get("task_id")), data={
                                            "approval_id": approval.id, "name": agent.name,
                                            "reports_to": agent.reports_to,
                                            "skills": list(agent.skills)})
        self.org = OrgChart(self.store.list_agents(self.hive_id))
        if agent_id not in self.slots:
            slot = self._host(agent)
            budgets = getattr(self.gateway, "budgets", None)
            if budgets is not None:
                budgets.refresh(agent_id=agent_id)
            if self._helpers:  # running: the loops of the rest have started already
                self._start_loop(slot)
        return agent

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
        from ruflo.engine.approvals import apply_decision

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
                self.store.append_event(self.hive_id, "ticket_unblocked", task_id=task_id,
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

    def _hand_on(self, member: AgentSlot, why: str) -> None:
        """A paused or lost agent's unfinished tickets go to its nearest live manager."""
        heir = None
        for boss in self.org.chain(member.id)[1:]:
            candidate = self.slots.get(boss)
            if candidate is not None and candidate.can_work:
                heir = boss
                break
        if heir is None:
            live = [m for m in self.slots.values() if m.can_work and m.id != member.id]
            if not live:
                return
            heir = min(live, key=lambda m: (self.org.depth[m.id], m.id)).id
        for task_id, ticket in list(self.tickets.items()):
            if ticket.owner != member.id:
                continue
            task = self.store.get_task(task_id)
            if task.state.terminal:
                continue
            if task.state is TaskState.BLOCKED and ticket.escalated is None \
                    and ticket.approval is None:
                ticket.owner = heir  # waits on children: the heir integrates them later
                self._own(task_id, heir, "ticket_reassigned", by=None, reason=why,
                          data={"from": member.id})
                self._maybe_reopen_parent(task_id)
                continue
            self._own(task_id, heir, "ticket_reassigned", by=None, reason=why,
                      data={"from": member.id})

    # -- following the event log -----------------------------------------------------------------
    def _follow(self, event: Event) -> None:
        kind, task_id = event.kind, event.task_id
        if kind == "task_posted" and task_id is not None and task_id not in self.tickets:
            task = self.store.get_task(task_id)
            if not task.state.terminal:
                self._own(task_id, self._owner_for_new(task), "ticket_assigned", by=None,
                          reason="posted")
        elif kind == "task_cancelled" and task_id is not None:
            for member in self.slots.values():
                self._stop_work(member, task_id, "ticket cancelled")
            with contextlib.suppress(NotFound):
                task = self.store.get_task(task_id)
                if task.parent_id is not None:
                    self._maybe_reopen_parent(task.parent_id)
        elif kind == "lease_expired" and task_id is not None:
            self._expired(task_id, event.agent_id)
        elif kind == "approval_decided":
            approval_id = event.data.get("approval_id")
            if isinstance(approval_id, str):
                self._decided(approval_id)
        elif kind == "agent_resumed" and event.agent_id in self.slots:
            member = self.slots[event.agent_id]
            if member.alive and member.paused is not None:
                member.paused = None
                self._refresh_budgets()
                self._wake(member.id, "agent resumed")
        else:
            super()._follow(event)

    def _expired(self, task_id: str, holder: str | None) -> None:
        member = self.slots.get(holder or "")
        if member is not None and not member.alive:
            member.task_id = None
            self._lose_agent(member, "its lease expired and its loop is gone")
        elif member is not None and member.task_id == task_id:
            self._stop_work(member, task_id, "lost the lease")
        ticket = self.tickets.get(task_id)
        if ticket is not None:
            owner = self._working_owner(ticket.owner)
            if owner != ticket.owner:
                self._own(task_id, owner, "ticket_reassigned", by=None,
                          reason="its owner is gone", data={"from": ticket.owner})
            else:
                self._restore_owner(task_id)
                self._wake(owner, "lease expired", task_id)

    def _lost(self, member: AgentSlot, why: str) -> None:
        self._hand_on(member, f"{member.agent.name} is gone ({why})")

    # -- pausing and ending ----------------------------------------------------------------------
    def _board_finished(self) -> bool:
        counts = self.store.count_tasks(self.hive_id)
        unfinished = sum(n for state, n in counts.items() if not state.terminal)
        return bool(sum(counts.values())) and not unfinished

    def _may_stall(self) -> bool:
        # A pending approval may yet give an agent its work back.
        return not self.store.list_approvals(hive_id=self.hive_id,
                                             status=ApprovalStatus.PENDING)

    def _objective_checked(self, tasks: Sequence[Task], command: str) -> bool:
        # The objective ticket carries the hive's verify command and ran it to close.
        return any(t.verify == command for t in tasks if t.parent_id is None)


# -- the report ----------------------------------------------------------------------------------

def engine_for(store: Store, hive_id: str, **options: Any) -> LiveEngine | CompanyEngine:
    """The engine that drives this hive: the company engine for a company hive, the live
    engine (swarm, round robin, solo) otherwise. Both run with `await engine.run()`."""
    if store.get_hive(hive_id).mode is Mode.COMPANY:
        options.pop("hosted", None)
        return CompanyEngine(store, hive_id, **options)
    return LiveEngine(store, hive_id, **options)


def company_report(store: Store, hive_id: str) -> JSON:
    """What a company run cost and how it was organised: work and coordination spend apart,
    delegations, escalations, corrections of managers' choices, hires, and every approval with
    who decided it (an auto-approval policy is named as such)."""
    work = store.spend(hive_id=hive_id, kind=CostKind.WORK)
    coordination = store.spend(hive_id=hive_id, kind=CostKind.COORDINATION)
    events = store.events(hive_id, kinds=["ticket_delegated", "ticket_escalated",
                                          "ticket_reassigned", "plan_refused", "plan_fallback"])
    count = {kind: sum(e.kind == kind for e in events) for kind in
             ("ticket_delegated", "ticket_escalated", "ticket_reassigned", "plan_refused",
              "plan_fallback")}
    hive = store.get_hive(hive_id)
    return {
        "work": {"tokens": work.tokens, "cost": work.cost, "calls": work.calls},
        "coordination": {"tokens": coordination.tokens, "cost": coordination.cost,
                         "calls": coordination.calls},
        "delegations": count["ticket_delegated"],
        "corrected_delegations": sum(e.kind == "ticket_delegated"
                                     and e.data.get("chosen_by") == "capability check"
                                     for e in events),
        "escalations": count["ticket_escalated"],
        "reassignments": count["ticket_reassigned"],
        "plans_refused": count["plan_refused"], "plan_fallbacks": count["plan_fallback"],
        "hires": len(store.events(hive_id, kinds=["agent_hired"])),
        "auto_approval_policy": hive.config.get("approvals"),
        "approvals": [{"id": a.id, "kind": a.kind.value, "status": a.status.value,
                       "decided_by": a.decided_by, "subject": a.subject}
                      for a in store.list_approvals(hive_id=hive_id)],
    }

