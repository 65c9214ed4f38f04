"""The built-in agent: a tool-calling loop through the gateway, with every turn in the transcript.

Depends on the Executor types, the tools, memory and the Gateway and Store protocols.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from ruflo import telemetry
from ruflo.agents.asking import ActionGate
from ruflo.agents.base import Limits, OutcomeKind, RunContext, TaskOutcome, TaskTool
from ruflo.agents.tools import ToolBox, tool_schemas, truncate
from ruflo.agents.workspace import Workspace
from ruflo.errors import ConfigError
from ruflo.event_kinds import EventKind
from ruflo.gateway.base import CallContext, ChatMessage
from ruflo.memory.notes import Memory, agent_namespace, hive_namespace
from ruflo.model import Agent, CostKind, Hive, MemoryEntry, Task

if TYPE_CHECKING:
    from ruflo.store.base import Store

NUDGE = ("Use the tools to do the task. When it is done, call `complete` with what you did"
         "{others}. Do not answer in plain text.")


def learned_key(task: Task) -> str:
    """The key of the note an attempt leaves in the hive's memory."""
    return f"task:{task.id}"


class LLMExecutor:
    """Does a task by talking to a model that calls tools.

    The loop: read the relevant notes; send the system prompt (role, skills, task, notes) and
    the task; then each turn, ask the gateway for the next step — tool calls are run and their
    results (cut to a bound) sent back; a task tool (complete, abstain, post_subtasks,
    delegate, escalate) ends the attempt with its outcome; a plain-text answer gets a nudge back
    to the tools. Before a tool runs, the hive's and the agent's action policies decide (agents/
    asking.py): deny → the model reads an error; ask → the loop waits here, spending nothing,
    until a person approves (the tool runs) or rejects (an error with the reason). Every call asks for at most `completion_tokens` (the agent's `max_tokens`
    setting, else the limits'), which is also what the budget books for the answer. After
    `max_turns` calls without a task tool, the attempt fails. Each turn,
    tool call and tool result is appended to the hive's events; what was done is left as a note
    in the hive's memory.
    """

    async def run(self, task: Task, agent: Agent, hive: Hive, ctx: RunContext) -> TaskOutcome:
        if ctx.gateway is None:
            raise ConfigError("the built-in agent needs a gateway: set OPENAI_BASE_URL (or "
                              "LITELLM_BASE_URL) and OPENAI_API_KEY; the task was left as it was")
        gateway = ctx.gateway
        workspace = Workspace.open(ctx.workspace)
        memory = ctx.memory if ctx.memory is not None else Memory(ctx.store)
        transcript = Transcript(ctx.store, hive, agent, task, ctx.limits.transcript_chars)
        model = agent.model or ctx.model
        limits = ctx.limits
        max_tokens = completion_tokens(agent, limits)

        notes = memory.search_many(task_query(task),
                                   [hive_namespace(hive.id), agent_namespace(agent.id)],
                                   limit=5)
        schemas = tool_schemas(ctx.task_tools)
        transcript.add(EventKind.AGENT_STARTED, executor="llm", model=model,
                       tools=[s["function"]["name"] for s in schemas],
                       notes=[f"{n.namespace}/{n.key}" for n in notes])
        messages: list[ChatMessage] = [
            {"role": "system", "content": system_prompt(agent, hive, ctx, notes)},
            {"role": "user", "content": task_prompt(task)},
        ]
        toolbox = ToolBox(task=task, agent=agent, hive=hive, ctx=ctx, memory=memory,
                          workspace=workspace)
        gate = ActionGate(ctx.store, hive, agent, task, workspace,
                          poll_seconds=limits.approval_poll)
        call_context = CallContext(hive_id=hive.id, agent_id=agent.id, task_id=task.id,
                                   kind=CostKind.WORK)
        outcome: TaskOutcome | None = None
        turn = 0
        while outcome is None and turn < limits.max_turns:
            turn += 1
            with telemetry.span(f"turn {turn}", {"ruflo.turn": turn}):
                answer = await gateway.chat(messages, model=model, context=call_context,
                                            tools=schemas, max_tokens=max_tokens)
                messages.append(answer.as_message())
                transcript.add(EventKind.AGENT_TURN, turn=turn, content=answer.content or "",
                               tool_calls=[{"name": c.name, "arguments": c.arguments}
                                           for c in answer.tool_calls],
                               model=answer.model, finish_reason=answer.finish_reason,
                               prompt_tokens=answer.usage.prompt_tokens,
                               completion_tokens=answer.usage.completion_tokens,
                               cost=answer.cost)
                if not answer.tool_calls:
                    others = ", or another task tool" if len(ctx.task_tools) > 1 else ""
                    messages.append({"role": "user", "content": NUDGE.format(others=others)})
                    continue
                for call in answer.tool_calls:
                    transcript.add(EventKind.TOOL_CALL, turn=turn, call_id=call.id,
                                   name=call.name, arguments=call.arguments)
                    refusal = None if outcome is not None else await gate.refusal(
                        call.name, call.arguments, turn=turn)
                    if outcome is not None:
                        # Every tool call needs an answer, but the attempt has already ended.
                        content = "not run: the task already ended with an earlier call"
                        error = True
                    elif refusal is not None:  # denied by policy, or rejected by a person
                        content, error = refusal, True
                    else:
                        with telemetry.span(f"execute_tool {call.name}", {
                                "gen_ai.operation.name": "execute_tool",
                                "gen_ai.tool.name": call.name,
                                "gen_ai.tool.call.id": call.id}) as tool_span:
                            reply = await toolbox.call(call.name, call.arguments)
                            tool_span.set("ruflo.tool.ok", not reply.error)
                        content, error = reply.content, reply.error
                        if reply.outcome is not None:
                            outcome = replace(reply.outcome, turns=turn)
                    transcript.add(EventKind.TOOL_RESULT, turn=turn, call_id=call.id,
                                   name=call.name, ok=not error, content=content)
                    messages.append({"role": "tool", "tool_call_id": call.id,
                                     "content": content})

        if outcome is None:
            outcome = TaskOutcome(OutcomeKind.FAILED, turns=turn,
                                  reason=f"stopped after {limits.max_turns} turns without "
                                         "finishing the task")
        transcript.add(EventKind.AGENT_OUTCOME, kind=outcome.kind.value,
                       result=outcome.result or "", reason=outcome.reason or "",
                       turns=outcome.turns, changed_files=sorted(set(toolbox.changed_files)))
        memory.put(hive_namespace(hive.id), learned_key(task),
                   learned_note(task, agent, outcome, toolbox.changed_files),
                   tags=(*task.skills, outcome.kind.value))
        return outcome


def completion_tokens(agent: Agent, limits: Limits) -> int:
    """The most tokens one answer of this agent may take: its `max_tokens` setting, else the
    limits'."""
    setting = agent.adapter_config.get("max_tokens")
    if setting is None:
        return limits.completion_tokens
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 1:
        raise ConfigError(f"agent {agent.name}: max_tokens must be a whole number of tokens "
                          f"above 0, not {setting!r}; the task was left as it was")
    return setting


class Transcript:
    """Appends an attempt's events to the hive's log, each text field cut to a bound."""

    def __init__(self, store: Store, hive: Hive, agent: Agent, task: Task, limit: int) -> None:
        self.store, self.hive, self.agent, self.task, self.limit = store, hive, agent, task, limit

    def add(self, kind: EventKind, /, **data: object) -> None:
        self.store.append_event(self.hive.id, kind, agent_id=self.agent.id, task_id=self.task.id,
                                data={k: self._bound(v) for k, v in data.items()})

    def _bound(self, value: object) -> object:
        if isinstance(value, str):
            return truncate(value, self.limit)
        if isinstance(value, list):
            return [self._bound(v) for v in value]
        if isinstance(value, dict):
            return {k: self._bound(v) for k, v in value.items()}
        return value


def task_query(task: Task) -> str:
    return f"{task.title}\n{task.description}".strip()


def task_prompt(task: Task) -> str:
    lines = [f"Task: {task.title}"]
    if task.description:
        lines += ["", task.description]
    if task.skills:
        lines += ["", f"Skills: {', '.join(task.skills)}"]
    if task.verify:
        lines += ["", f"When you call complete, this command will be run in the workspace and "
                      f"its exit code decides success: `{task.verify}`. Run it yourself first."]
    return "\n".join(lines)


def system_prompt(agent: Agent, hive: Hive, ctx: RunContext, notes: list[MemoryEntry]) -> str:
    who = f"You are {agent.name}, a {agent.title or agent.role} in a hive of agents"
    lines = [f"{who} working on: {hive.objective}." if hive.objective else f"{who}."]
    if agent.skills:
        lines.append(f"Your skills: {', '.join(agent.skills)}.")
    if agent.capabilities:
        lines.append(agent.capabilities)
    lines += [
        "You work in a shared workspace folder: every path is relative to it, and you cannot "
        "leave it. Read before you edit; edit_file needs the exact text to replace. Run the "
        "tests (or the task's verify command) before you call complete.",
        "Leave notes with memory_store when you learn something the others will need.",
    ]
    if TaskTool.ABSTAIN in ctx.task_tools:
        lines.append("If the task does not fit your skills, call abstain with the reason.")
    if TaskTool.POST_SUBTASKS in ctx.task_tools:
        lines.append("If the task is too big for one agent, split it with post_subtasks.")
    if TaskTool.DELEGATE in ctx.task_tools and ctx.reports:
        reports = "; ".join(f"{a.name} ({a.title or a.role}): {a.capabilities or ', '.join(a.skills)}"
                            for a in ctx.reports)
        lines.append(f"Your reports, to whom you may delegate: {reports}.")
    if TaskTool.ESCALATE in ctx.task_tools:
        lines.append("If you are blocked, escalate to your manager with the reason.")
    if notes:
        lines.append("Notes from the hive that may help:")
        lines += [f"- [{n.key}] {truncate(n.content, 800)}" for n in notes]
    return "\n".join(lines)


def learned_note(task: Task, agent: Agent, outcome: TaskOutcome, changed: list[str]) -> str:
    text = f"{agent.name} worked on '{task.title}': {outcome.kind.value}."
    if outcome.result:
        text += f" Result: {outcome.result}"
    if outcome.reason:
        text += f" Reason: {outcome.reason}"
    if changed:
        text += f" Files changed: {', '.join(sorted(set(changed)))}."
    return text
