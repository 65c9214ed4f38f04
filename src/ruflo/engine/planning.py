"""The company's planner: how a manager's delegation is resolved live, with one metered LLM
call per ticket (the plan tool), and the shape of its answer. The policy proposes a report
(`Delegate`); the planner's answer may accept it, name another report, split the ticket, hire,
escalate or keep it. Depends on the model, the Gateway protocol and ruflo.policies.company.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ruflo import telemetry
from ruflo.engine.plan import answer_json, first_problem
from ruflo.errors import ConfigError, PolicyError
from ruflo.event_kinds import EventKind
from ruflo.gateway.base import CallContext, ChatMessage
from ruflo.model import JSON, Agent, CostKind, Task
from ruflo.policies.company import OrgChart

if TYPE_CHECKING:
    from ruflo.gateway.base import Gateway
    from ruflo.store.base import Store

__all__ = ["PLAN_TOOL", "PlanAnswer", "PlannedTicket", "Planner", "parse_plan_answer",
           "plan_tool"]

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



class Planner:
    """Resolves a manager's delegation with one metered coordination call (the plan tool). A
    bad answer is sent back once with the reason; a second one falls back to the policy's
    proposal, so the work never stalls on a confused planner."""

    def __init__(self, gateway: Gateway | None, store: Store, hive_id: str, *, objective: str,
                 model: str, max_tickets: int) -> None:
        self.gateway = gateway
        self.store = store
        self.hive_id = hive_id
        self.objective = objective
        self.model = model
        self.max_tickets = max_tickets

    async def resolve(self, org: OrgChart, manager: Agent, task: Task, *, proposed: str | None,
                      reports: Sequence[str], may_hire: bool, max_tokens: int,
                      blocked: tuple[str, str | None] | None = None) -> PlanAnswer:
        """How `manager` has the ticket done. `proposed`: the policy's report for it;
        `reports`: the manager's working reports; `blocked`: (the blocker, who escalated it)
        while it waits on the manager's decision. A span of the hive's trace when traced."""
        with telemetry.span(f"delegate {task.title[:60]}", {
                "ruflo.agent.id": manager.id, "ruflo.task.id": task.id,
                "ruflo.delegation.proposed": proposed}) as delegation:
            plan = await self._resolve(org, manager, task, proposed=proposed, reports=reports,
                                       may_hire=may_hire, max_tokens=max_tokens,
                                       blocked=blocked)
            delegation.set("ruflo.delegation.action", plan.action)
            delegation.set("ruflo.delegation.report", plan.report)
            return plan

    async def _resolve(self, org: OrgChart, manager: Agent, task: Task, *,
                       proposed: str | None, reports: Sequence[str], may_hire: bool,
                       max_tokens: int, blocked: tuple[str, str | None] | None) -> PlanAnswer:
        if self.gateway is None:
            raise ConfigError("company mode needs a gateway for its managers: set "
                              "OPENAI_BASE_URL and OPENAI_API_KEY; the ticket was left as it was")
        messages: list[ChatMessage] = [
            {"role": "system", "content": self.plan_prompt(org, manager, reports,
                                                           may_hire=may_hire)},
            {"role": "user", "content": self.ticket_prompt(org, task, blocked)}]
        context = CallContext(hive_id=self.hive_id, agent_id=manager.id, task_id=task.id,
                              kind=CostKind.COORDINATION)
        model = manager.model or self.model
        problem = ""
        event = self.store.append_event
        for attempt in (1, 2):
            answer = await self.gateway.chat(messages, model=model, context=context,
                                             tools=[plan_tool(may_hire=may_hire)],
                                             max_tokens=max_tokens)
            call = next((c for c in answer.tool_calls if c.name == "plan"), None)
            raw = call.arguments if call is not None else (answer.content or "")
            try:
                plan = parse_plan_answer(raw, max_tickets=self.max_tickets, may_hire=may_hire)
            except PolicyError as error:
                problem = str(error)
                event(self.hive_id, EventKind.PLAN_REFUSED, agent_id=manager.id, task_id=task.id,
                      data={"attempt": attempt, "error": problem, "answer": raw[:2000]})
                messages.append(answer.as_message())
                if call is not None:
                    messages.append({"role": "tool", "tool_call_id": call.id,
                                     "content": f"error: {problem}; call plan again"})
                else:
                    messages.append({"role": "user", "content": f"That answer was not usable: "
                                     f"{problem}. Call the plan tool."})
                continue
            event(self.hive_id, EventKind.TICKET_PLANNED, agent_id=manager.id, task_id=task.id,
                  data={
                "action": plan.action, "tickets": len(plan.tickets),
                "tokens": answer.usage.total_tokens, "answer": raw[:2000]})
            return plan
        event(self.hive_id, EventKind.PLAN_FALLBACK, agent_id=manager.id, task_id=task.id,
              data={"error": problem, "to": proposed})
        return PlanAnswer(action="assign", report=proposed,
                          note="assigned by capability match (the planner's answer was unusable)")

    def plan_prompt(self, org: OrgChart, manager: Agent, reports: Sequence[str], *,
                    may_hire: bool) -> str:
        lines = [f"You are {manager.name}, {manager.title or manager.role} of a company of "
                 f"agents working on: {self.objective}.",
                 "You manage these direct reports (choose by what they can do):"]
        for report_id in reports:
            report = org.agents[report_id]
            skills = ", ".join(sorted(org.subtree_skills[report_id])) or "general"
            lines.append(f"- {report.name} ({getattr(report, 'title', '') or report.role}): "
                         f"{report.capabilities or 'no description'}; skills: {skills}")
        lines += [
            "Decide how the ticket gets done and answer with the plan tool only:",
            f"- split: at most {self.max_tickets} child tickets, each for the report whose "
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

    def ticket_prompt(self, org: OrgChart, task: Task,
                      blocked: tuple[str, str | None] | None) -> str:
        lines = [f"Ticket: {task.title}"]
        if task.description and task.description != task.title:
            lines += ["", task.description]
        if task.skills:
            lines += ["", f"Skills: {', '.join(task.skills)}"]
        if task.verify:
            lines += ["", f"Done when this passes: `{task.verify}`"]
        if blocked is not None:
            reason, escalated_by = blocked
            by = org.agents[escalated_by].name if escalated_by in org.agents else "a report"
            lines += ["", f"Blocked: {by} escalated it: {reason}. Resolve it: assign it "
                          "to someone who can, split it, do it yourself, or escalate."]
        return "\n".join(lines)
