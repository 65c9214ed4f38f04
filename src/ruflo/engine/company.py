"""Live company mode: an org chart drives a stored hive through real time. Every decision comes
from `CompanyPolicy` (the simulator's company rules) asked over the stored board; a delegation
is resolved by the planner (one metered LLM call, engine/planning.py), individual contributors
do the work with the swarm's agents, blocked work escalates up the chain. Hiring and approvals
are layers of their own (engine/hiring.py, engine/company_approvals.py) over the ticket board
(engine/company_board.py). Depends on the model, the Store and Gateway protocols,
ruflo.policies.company, ruflo.agents and ruflo.engine.core (the run loop it shares with the
swarm).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ruflo.agents import OutcomeKind, TaskOutcome
from ruflo.agents.loop import completion_tokens
from ruflo.engine.board_engine import BoardEngine
from ruflo.engine.company_approvals import CompanyApprovalsEngine
from ruflo.engine.company_board import Ticket
from ruflo.engine.core import KILLED, AgentSlot
from ruflo.engine.dispatch import carry_out
from ruflo.engine.planning import (
    PLAN_TOOL,
    PlanAnswer,
    PlannedTicket,
    Planner,
    parse_plan_answer,
    plan_tool,
)
from ruflo.errors import (
    BudgetExceeded,
    ConfigError,
    Conflict,
    GatewayError,
    NotFound,
    PolicyError,
    RufloError,
)
from ruflo.event_kinds import EventKind
from ruflo.model import (
    JSON,
    Agent,
    AgentStatus,
    ApprovalKind,
    ApprovalStatus,
    CostKind,
    Event,
    Hive,
    Mode,
    Task,
    TaskState,
)
from ruflo.policies.base import AwaitApproval, Decompose, Delegate, Escalate, Idle, Take
from ruflo.policies.company import nearest_live_manager, review_delegate

if TYPE_CHECKING:
    from ruflo.store.base import Store

__all__ = ["PLAN_TOOL", "CompanyEngine", "company_report", "engine_for", "parse_plan_answer",
           "plan_tool"]

log = logging.getLogger(__name__)

FOLLOWED = frozenset({
    EventKind.TASK_POSTED, EventKind.TASK_CANCELLED, EventKind.LEASE_EXPIRED,
    EventKind.APPROVAL_DECIDED, EventKind.HIVE_PAUSED,
    EventKind.HIVE_RUNNING, EventKind.HIVE_CANCELLED, EventKind.HIVE_BUDGET_CHANGED,
    EventKind.AGENT_RESUMED,
})
"""Event kinds the engine reacts to (its own, and those written by the CLI or server)."""


class CompanyEngine(CompanyApprovalsEngine):
    """Drives one stored company hive: see `run` for the loop."""

    FOLLOWED = FOLLOWED
    NAME = "ruflo-company"
    OBJECTIVE_FAILED = "not every ticket of the objective succeeded"

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
           it claims its most urgent ready ticket that the policy does not leave waiting on a
           person (`AwaitApproval`), with a lease (renewed while it works).
        3. The policy's decision (`CompanyPolicy.decide_ticket`) is carried out through the
           shared dispatch. Delegate (a manager whose ticket may still be handed on): the
           planner resolves the proposed report with one metered coordination call, the plan
           tool:
           split → child tickets for reports (each choice checked against capabilities), the
           ticket blocked on them; assign → the whole ticket goes to a report; escalate → up
           the chain; self → it does the ticket. Everyone else does the ticket with the swarm's
           agent runtime (Take): complete (the verify command decides) or escalate (blocked:
           the ticket names what it waits on and goes where `CompanyPolicy.escalation` says).
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
        self._set_org(agents)
        self.planner = Planner(self.gateway, self.store, self.hive_id,
                               objective=self.hive.objective, model=self.model,
                               max_tickets=self.company.batch)
        self._chosen: dict[str, Take | Delegate] = {}
        """The policy's decision for the ticket each agent just claimed."""
        for agent in agents:
            self._host(agent)
        self._load_tickets()

    def _load_tickets(self) -> None:
        self._load_owners()
        decided_later = self._pending_on()
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
                self._own(task.id, owner, EventKind.TICKET_ASSIGNED, by=None, reason="posted")
        for task in self.store.list_tasks(self.hive_id, states=[TaskState.BLOCKED]):
            self._maybe_reopen_parent(task.id)
        self._apply_decided()
        self._rejected_approvals()
        for approval in decided_later:  # by the CLI or the server's store-only runner
            if approval.kind is ApprovalKind.HIRE:
                self._hire_decided(approval)
            else:
                self._strategy_decided(approval)

    # -- agent loops -----------------------------------------------------------------------------
    async def _next_task(self, member: AgentSlot) -> Task | None:
        """Claim the agent's most urgent ticket that is ready (open, blockers done) and not left
        waiting on a person by the policy, turning an escalated ticket that waits for this
        manager's decision into an open one first. `_attempt` carries out the policy's
        decision for it."""
        board = self.store.list_tasks(self.hive_id)
        mine = [t for t in board if t.assignee == member.id
                and t.state in (TaskState.OPEN, TaskState.BLOCKED)]
        mine.sort(key=lambda t: (-t.priority, t.created_at))
        for task in mine:
            ticket = self.tickets.get(task.id)
            if ticket is None or ticket.owner != member.id:
                continue
            if task.state is TaskState.BLOCKED and ticket.escalated is None \
                    and ticket.approval is None:
                continue  # waiting on its children
            decision = self._decide(member.id, task, board)
            if isinstance(decision, AwaitApproval):
                continue
            if task.state is TaskState.BLOCKED:
                self.store.update_task(task.id, state=TaskState.OPEN)
            claimed = self.store.claim_task(self.hive_id, member.id,
                                            lease_seconds=self.params.lease_seconds,
                                            task_id=task.id, now=self.clock.utcnow())
            if claimed is not None:
                self._chosen[member.id] = decision
                self._claims_changed.set()
                return claimed
        return None

    # -- one ticket ------------------------------------------------------------------------------
    async def _attempt(self, member: AgentSlot, task: Task) -> None:
        decision = self._chosen.pop(member.id)
        member.task_id = task.id
        self.store.update_agent(member.id, status=AgentStatus.WORKING, current_task=task.id,
                                heartbeat_at=self.clock.utcnow())
        renewal = asyncio.create_task(self._renew(member, task.id))
        try:
            try:
                outcome = await carry_out(self, (member, task), decision)
            except asyncio.CancelledError:
                if member.stop_reason in (None, KILLED):
                    raise
                self._give_back(member, task, member.stop_reason)
                return
            except GatewayError as error:
                if error.pauses_hive:
                    self._give_back(member, task, f"hive paused: {error.pause_reason}")
                    self._pause_hive(error.pause_reason, str(error),
                                     paused_before=error.hive_paused)
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
            if outcome is not None:
                self._apply(member, task, outcome)
        finally:
            renewal.cancel()
            if member.stop_reason != KILLED:
                member.task_id = None
                status = AgentStatus.IDLE if member.paused is None else AgentStatus.PAUSED
                self.store.update_agent(member.id, status=status, current_task=None)

    # -- carrying out a decision (`carry_out` calls these) ---------------------------------------
    def take(self, held: tuple[AgentSlot, Task], decision: Take) -> Awaitable[TaskOutcome | None]:
        """The holder does the ticket with the agent runtime."""
        self._record(held[0].id, decision)
        return self._work(*held)

    def delegate(self, held: tuple[AgentSlot, Task],
                 decision: Delegate) -> Awaitable[TaskOutcome | None]:
        """The planner resolves the policy's proposal; it is carried out here (None), or the
        manager keeps the ticket and does it."""
        return self._delegate(*held, decision)

    def decompose(self, held: tuple[AgentSlot, Task], decision: Decompose) -> Awaitable[None]:
        raise PolicyError("a company splits a ticket through its planner, not by the policy")

    def escalate(self, held: tuple[AgentSlot, Task], decision: Escalate) -> Awaitable[None]:
        raise PolicyError("a company escalates on an attempt's outcome, not when claiming")

    def await_approval(self, held: tuple[AgentSlot, Task],
                       decision: AwaitApproval) -> Awaitable[None]:
        raise PolicyError(f"ticket {decision.task_id} waits on approval "
                          f"{decision.approval_id}; it should not have been claimed")

    def idle(self, held: tuple[AgentSlot, Task], decision: Idle) -> Awaitable[None]:
        raise PolicyError("a claimed ticket has a decision to carry out, not Idle")

    async def _work(self, member: AgentSlot, task: Task) -> TaskOutcome:
        agent = self.store.get_agent(member.id)
        return await member.executor.run(task, agent, self.hive, self._context(member))

    async def _delegate(self, member: AgentSlot, task: Task,
                        decision: Delegate) -> TaskOutcome | None:
        ticket = self.tickets.get(task.id)
        blocked = (ticket.escalated, ticket.escalated_by) \
            if ticket is not None and ticket.escalated is not None else None
        plan = await self.planner.resolve(
            self.org, member.agent, task, proposed=decision.assignments[0][1],
            reports=self.org.live_reports(member.id, self._alive), may_hire=decision.may_hire,
            max_tokens=completion_tokens(member.agent, self.params.limits), blocked=blocked)
        if plan.action != "self":
            self._carry_out(member, task, plan)
            return None
        self._unblock(member, task, "the manager does it itself")
        self._record(member.id, Take(task.id))
        return await self._work(member, task)

    def _give_back(self, member: AgentSlot, task: Task, reason: str) -> None:
        try:
            self.store.release_task(task.id, member.id, reason=reason)
        except Conflict:
            return  # not ours any more (expired, cancelled): the events say what it is
        self._restore_owner(task.id)


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
                self._own(task.id, target, EventKind.TICKET_DELEGATED, by=member.id,
                          reason="assigned",
                          data=self._delegation_data(member, plan.report, correction))
        except Conflict as error:
            self._discarded(member, task, str(error))
            return
        self._record(member.id, Delegate(((task.id, target),)))

    def _unblock(self, member: AgentSlot, task: Task, how: str) -> None:
        """The manager resolved an escalated ticket: it no longer waits on its blocker."""
        ticket = self.tickets.get(task.id)
        if ticket is None or ticket.escalated is None:
            return
        ticket.escalated = None
        with self.store.transaction():
            self.store.update_task(task.id, blocked_on=None)
            self.store.append_event(self.hive_id, EventKind.TICKET_UNBLOCKED, agent_id=member.id,
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
                self.store.append_event(self.hive_id, EventKind.TICKET_BLOCKED, agent_id=member.id,
                                        task_id=task.id, data={
                                            "blocked_on": [c.id for c in children]})
                ticket = self.tickets.setdefault(task.id, Ticket(member.id))
                ticket.owner = member.id
                for child, (target, named, correction) in zip(children, owners, strict=True):
                    self.tickets[child.id] = Ticket(target)
                    self._own(child.id, target, EventKind.TICKET_DELEGATED, by=member.id,
                              reason="assigned",
                              data=self._delegation_data(member, named, correction))
        except Conflict as error:
            self._discarded(member, task, str(error))
            return
        except PolicyError as error:
            self._give_back(member, task, f"its plan could not be posted: {error}")
            self._escalate(member, task, f"its plan could not be posted: {error}")
            return
        self._record(member.id, Decompose(task.id, len(children)))
        self._record(member.id, Delegate(tuple((c.id, owner) for c, (owner, _, _)
                                               in zip(children, owners, strict=True))))

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
        """When every child of a blocked ticket (and every task below them: an integration task
        posted for a child's merge) has ended, the ticket reopens for its owner to integrate the
        parts and close it (its verify command decides)."""
        try:
            parent = self.store.get_task(parent_id)
        except NotFound:
            return
        ticket = self.tickets.get(parent_id)
        if parent.state is TaskState.DONE and parent.parent_id is not None:
            self._maybe_reopen_parent(parent.parent_id)  # a done child's integration task ended
        if parent.state is not TaskState.BLOCKED or ticket is None or \
                ticket.escalated is not None or ticket.approval is not None:
            return
        tasks = self.store.list_tasks(self.hive_id)
        children = [t for t in tasks if t.parent_id == parent_id]
        # Every descendant: a done child's integration task (git isolation) is part of it.
        below, found = {parent_id}, True
        while found:
            found = False
            for t in tasks:
                if t.parent_id in below and t.id not in below:
                    below.add(t.id)
                    found = True
        if not children or not all(t.state.terminal for t in tasks if t.id in below - {parent_id}):
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
            self.store.append_event(self.hive_id, EventKind.CHILDREN_COMPLETED, agent_id=owner,
                                    task_id=parent_id, data={
                                        "done": sum(t.state is TaskState.DONE for t in children),
                                        "ended": len(children)})
        if owner != ticket.owner:
            self._own(parent_id, owner, EventKind.TICKET_REASSIGNED, by=None,
                      reason="its owner is gone", data={"from": ticket.owner})
        else:
            self._wake(owner, "children completed", parent_id)

    def _escalate(self, member: AgentSlot, task: Task, reason: str) -> None:
        """Blocked: the ticket names what it waits on and goes where the policy says
        (`CompanyPolicy.escalation`): up to the nearest live manager, who decides; to people
        (a strategy approval) from the top; given up when escalated too often."""
        ticket = self.tickets.setdefault(task.id, Ticket(member.id))
        current = self.store.get_task(task.id)
        if current.state.terminal:
            return
        decision = self.policy.escalation(member.id, self._view(current, split=False),
                                          self._alive)
        self._record(member.id, decision)
        if decision.give_up:
            with contextlib.suppress(Conflict):
                failed = self.store.finish_task(task.id, None, state=TaskState.CANCELLED,
                                                result=f"gave up after {ticket.escalations} "
                                                       f"escalations; last: {reason}")
                self.store.append_event(self.hive_id, EventKind.TICKET_GIVEN_UP, agent_id=member.id,
                                        task_id=task.id, data={"reason": reason})
                self._after_end(failed)
            return
        ticket.escalations += 1
        ticket.escalated, ticket.escalated_by = reason, member.id
        if current.state is TaskState.OPEN:
            self.store.update_task(task.id, state=TaskState.BLOCKED, blocked_on=reason)
        if decision.to is None:
            self._to_people(member, task, reason)
            return
        self._own(task.id, decision.to, EventKind.TICKET_ESCALATED, by=member.id,
                  reason="escalated",
                  data={"blocked_on": reason, "from": member.id, "from_name": member.agent.name})
        ticket.escalated, ticket.escalated_by = reason, member.id

    def _hand_on(self, member: AgentSlot, why: str) -> None:
        """A paused or lost agent's unfinished tickets go to its nearest working manager, else
        the acting root (`nearest_live_manager`)."""
        heir = nearest_live_manager(self.org, member.id, lambda agent_id: agent_id != member.id
                                    and agent_id in self.slots and self.slots[agent_id].can_work)
        if heir is None:
            return
        for task_id, ticket in list(self.tickets.items()):
            if ticket.owner != member.id:
                continue
            task = self.store.get_task(task_id)
            if task.state.terminal:
                continue
            if task.state is TaskState.BLOCKED and ticket.escalated is None \
                    and ticket.approval is None:
                ticket.owner = heir  # waits on children: the heir integrates them later
                self._own(task_id, heir, EventKind.TICKET_REASSIGNED, by=None, reason=why,
                          data={"from": member.id})
                self._maybe_reopen_parent(task_id)
                continue
            self._own(task_id, heir, EventKind.TICKET_REASSIGNED, by=None, reason=why,
                      data={"from": member.id})

    # -- following the event log -----------------------------------------------------------------
    def _follow(self, event: Event) -> None:
        kind, task_id = event.kind, event.task_id
        if kind == EventKind.TASK_POSTED and task_id is not None and task_id not in self.tickets:
            task = self.store.get_task(task_id)
            if not task.state.terminal:
                self._own(task_id, self._owner_for_new(task), EventKind.TICKET_ASSIGNED, by=None,
                          reason="posted")
        elif kind == EventKind.TASK_CANCELLED and task_id is not None:
            for member in self.slots.values():
                self._stop_work(member, task_id, "ticket cancelled")
            with contextlib.suppress(NotFound):
                task = self.store.get_task(task_id)
                if task.parent_id is not None:
                    self._maybe_reopen_parent(task.parent_id)
        elif kind == EventKind.LEASE_EXPIRED and task_id is not None:
            self._expired(task_id, event.agent_id)
        elif kind == EventKind.APPROVAL_DECIDED:
            approval_id = event.data.get("approval_id")
            if isinstance(approval_id, str):
                self._decided(approval_id)
        elif kind == EventKind.AGENT_RESUMED and event.agent_id in self.slots:
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
                self._own(task_id, owner, EventKind.TICKET_REASSIGNED, by=None,
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

def engine_for(store: Store, hive_id: str, **options: Any) -> BoardEngine | CompanyEngine:
    """The engine that drives this hive: the company engine for a company hive, the live
    engine (swarm, round robin, solo) otherwise. Both run with `await engine.run()`."""
    if store.get_hive(hive_id).mode is Mode.COMPANY:
        options.pop("hosted", None)
        return CompanyEngine(store, hive_id, **options)
    return BoardEngine(store, hive_id, **options)


def company_report(store: Store, hive_id: str) -> JSON:
    """What a company run cost and how it was organised: work and coordination spend apart,
    delegations, escalations, corrections of managers' choices, hires, and every approval with
    who decided it (an auto-approval policy is named as such)."""
    work = store.spend(hive_id=hive_id, kind=CostKind.WORK)
    coordination = store.spend(hive_id=hive_id, kind=CostKind.COORDINATION)
    events = store.events(hive_id, kinds=[EventKind.TICKET_DELEGATED, EventKind.TICKET_ESCALATED,
                                          EventKind.TICKET_REASSIGNED, EventKind.PLAN_REFUSED,
                                          EventKind.PLAN_FALLBACK])
    count = {kind: sum(e.kind == kind for e in events) for kind in
             (EventKind.TICKET_DELEGATED, EventKind.TICKET_ESCALATED, EventKind.TICKET_REASSIGNED,
              EventKind.PLAN_REFUSED,
              EventKind.PLAN_FALLBACK)}
    hive = store.get_hive(hive_id)
    return {
        "work": {"tokens": work.tokens, "cost": work.cost, "calls": work.calls},
        "coordination": {"tokens": coordination.tokens, "cost": coordination.cost,
                         "calls": coordination.calls},
        "delegations": count[EventKind.TICKET_DELEGATED],
        "corrected_delegations": sum(e.kind == EventKind.TICKET_DELEGATED
                                     and e.data.get("chosen_by") == "capability check"
                                     for e in events),
        "escalations": count[EventKind.TICKET_ESCALATED],
        "reassignments": count[EventKind.TICKET_REASSIGNED],
        "plans_refused": count[EventKind.PLAN_REFUSED],
        "plan_fallbacks": count[EventKind.PLAN_FALLBACK],
        "hires": len(store.events(hive_id, kinds=[EventKind.AGENT_HIRED])),
        "auto_approval_policy": hive.config.get("approvals"),
        "approvals": [{"id": a.id, "kind": a.kind.value, "status": a.status.value,
                       "decided_by": a.decided_by, "subject": a.subject}
                      for a in store.list_approvals(hive_id=hive_id)],
    }

