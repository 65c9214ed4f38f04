"""The built-in agent: a tool-calling loop through the gateway, with every turn in the transcript
and in the attempt's journal.

Depends on the Executor types, the tools, prompts, journal, memory and the Gateway and Store
protocols.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from ruflo import telemetry
from ruflo.agents.asking import ActionGate
from ruflo.agents.base import Limits, OutcomeKind, RunContext, TaskOutcome
from ruflo.agents.journal import FILE_WRITES, INTERRUPTED, Journal, Taken, replay_writes
from ruflo.agents.prompts import (
    system_prompt,
    takes_cache_marks,
    task_message,
    with_cache_marks,
)
from ruflo.agents.tools import TASK_TOOL_NAMES, ToolBox, ToolReply, tool_schemas, truncate
from ruflo.agents.workspace import Workspace
from ruflo.errors import ConfigError
from ruflo.event_kinds import EventKind
from ruflo.gateway.base import CallContext, ChatMessage, Gateway, ToolCall
from ruflo.memory.notes import Memory, agent_namespace, hive_namespace
from ruflo.model import Agent, CostKind, Hive, Task

if TYPE_CHECKING:
    from ruflo.store.base import Store

NUDGE = ("Use the tools to do the task. When it is done, call `complete` with what you did"
         "{others}. Do not answer in plain text.")
NOT_RUN = "not run: the task already ended with an earlier call"


def learned_key(task: Task) -> str:
    """The key of the note an attempt leaves in the hive's memory."""
    return f"task:{task.id}"


class LLMExecutor:
    """Does a task by talking to a model that calls tools.

    The loop: read the relevant notes; send the system prompt (role, skills, how to work) and
    the task with the notes; then each turn, ask the gateway for the next step — tool calls are
    run and their results (cut to a bound) sent back; a task tool (complete, abstain,
    post_subtasks, delegate, escalate) ends the attempt with its outcome; a plain-text answer
    gets a nudge back to the tools. Before a tool runs, the hive's and the agent's action
    policies decide (agents/asking.py): deny → the model reads an error; ask → the loop waits
    there, spending nothing, until a person approves (the tool runs) or rejects (an error with
    the reason); an approval cancelled meanwhile (its task, attempt or hive ended) stops the
    attempt as failed, nothing more run or recorded. Every call asks for at most
    `completion_tokens` (the agent's `max_tokens` setting, else the limits'), which is also what
    the budget books for the answer. After `max_turns` calls without a task tool, the attempt
    fails. Each turn, tool call and tool result is appended to the hive's events; what was done
    is left as a note in the hive's memory.

    Every message is also recorded in the attempt's journal as it happens (agents/journal.py):
    an attempt stopped by a crash, a pause or a budget continues from its last recorded turn
    when the task is taken up again, and its journal is closed once it ends with an outcome.
    """

    async def run(self, task: Task, agent: Agent, hive: Hive, ctx: RunContext) -> TaskOutcome:
        if ctx.gateway is None:
            raise ConfigError("the built-in agent needs a gateway: set OPENAI_BASE_URL (or "
                              "LITELLM_BASE_URL) and OPENAI_API_KEY; the task was left as it was")
        attempt = Attempt(task, agent, hive, ctx, ctx.gateway)
        await attempt.begin()
        outcome = await attempt.work()
        attempt.transcript.add(EventKind.AGENT_OUTCOME, kind=outcome.kind.value,
                               result=outcome.result or "", reason=outcome.reason or "",
                               turns=outcome.turns,
                               changed_files=sorted(set(attempt.toolbox.changed_files)))
        attempt.journal.close(f"ended: {outcome.kind.value}")
        attempt.memory.put(hive_namespace(hive.id), learned_key(task),
                           learned_note(task, agent, outcome, attempt.toolbox.changed_files),
                           tags=(*task.skills, outcome.kind.value))
        return outcome


class Attempt:
    """One attempt of the built-in agent at a task: its conversation, tools and journal."""

    journal: Journal
    gate: ActionGate
    """Decides each governed tool call; its approvals belong to this attempt's journal."""

    def __init__(self, task: Task, agent: Agent, hive: Hive, ctx: RunContext,
                 gateway: Gateway) -> None:
        self.task, self.agent, self.hive, self.ctx, self.gateway = task, agent, hive, ctx, gateway
        self.memory = ctx.memory if ctx.memory is not None else Memory(ctx.store)
        self.workspace = Workspace.open(ctx.workspace)
        self.transcript = Transcript(ctx.store, hive, agent, task, ctx.limits.transcript_chars)
        self.model = agent.model or ctx.model
        self.max_tokens = completion_tokens(agent, ctx.limits)
        self.cache_marks = takes_cache_marks(self.model, agent)
        self.schemas = tool_schemas(ctx.task_tools)
        self.toolbox = ToolBox(task=task, agent=agent, hive=hive, ctx=ctx, memory=self.memory,
                               workspace=self.workspace)
        self.call_context = CallContext(hive_id=hive.id, agent_id=agent.id, task_id=task.id,
                                        kind=CostKind.WORK)
        self.messages: list[ChatMessage] = []
        self.turn = 0
        self.outcome: TaskOutcome | None = None
        self.stopped = False
        """Stopped from outside: an approval it waited on was cancelled because its task, this
        attempt's journal or the hive ended. Nothing more is run or recorded."""

    async def begin(self) -> None:
        """Take up the task's open journal, or open one with the system and task messages."""
        journal = Journal.take_up(self.ctx.store, self.task, self.agent)
        if journal is not None:
            try:
                taken = journal.rebuild()
            except (ValueError, KeyError, TypeError, AttributeError) as problem:
                # A damaged journal must not block the task: it is closed, the attempt begins anew.
                journal.close(f"its journal could not be read ({problem!r}); started over")
            else:
                self._keep(journal)
                await self._resume(taken)
                return
        notes = self.memory.search_many(task_query(self.task),
                                        [hive_namespace(self.hive.id),
                                         agent_namespace(self.agent.id)], limit=5)
        self.transcript.add(EventKind.AGENT_STARTED, executor="llm", model=self.model,
                            tools=[s["function"]["name"] for s in self.schemas],
                            notes=[f"{n.namespace}/{n.key}" for n in notes])
        self.messages = [
            {"role": "system", "content": system_prompt(self.agent, self.hive, self.ctx)},
            {"role": "user", "content": task_message(self.task, notes)},
        ]
        self._keep(Journal.begin(self.ctx.store, self.task, self.agent, self.messages))

    def _keep(self, journal: Journal) -> None:
        """Write to this journal, and ask approvals as its attempt: one taken up again finds its
        own, one that starts over (a new journal) is asked afresh."""
        self.journal = journal
        self.gate = ActionGate(self.ctx.store, self.hive, self.agent, self.task, self.workspace,
                               journal_id=journal.record.id,
                               poll_seconds=self.ctx.limits.approval_poll)

    async def _resume(self, taken: Taken) -> None:
        self.messages, self.turn = taken.messages, taken.turn
        replayed = replay_writes(self.workspace, taken.writes)
        self.toolbox.changed_files.extend(taken.changed_files)
        for name, arguments in taken.finished_calls:
            if name in TASK_TOOL_NAMES and self.outcome is None:
                # A task tool has no effect but its outcome: deriving it again is safe.
                reply = await self.toolbox.call(name, arguments)
                if reply.outcome is not None:
                    self.outcome = replace(reply.outcome, turns=self.turn)
        self.transcript.add(EventKind.AGENT_STARTED, executor="llm", model=self.model,
                            tools=[s["function"]["name"] for s in self.schemas], notes=[],
                            resumed_from_turn=self.turn)
        self.transcript.add(EventKind.ATTEMPT_RESUMED, turn=self.turn,
                            messages=len(self.messages), replayed_files=replayed,
                            interrupted=[p.name for p in taken.pending if p.started],
                            run_now=[p.name for p in taken.pending if not p.started])
        for pending in taken.pending:
            call = ToolCall(pending.call_id, pending.name, pending.arguments)
            if pending.started:
                self._tool_result(call, INTERRUPTED, error=True)
            else:
                await self.answer(call)

    async def work(self) -> TaskOutcome:
        """Turns until a task tool ends the attempt or the turns run out."""
        limits = self.ctx.limits
        while self.outcome is None and self.turn < limits.max_turns:
            self.turn += 1
            with telemetry.span(f"turn {self.turn}", {"ruflo.turn": self.turn}):
                await self.step()
        if self.outcome is None:
            return TaskOutcome(OutcomeKind.FAILED, turns=self.turn,
                               reason=f"stopped after {limits.max_turns} turns without "
                                      "finishing the task")
        return self.outcome

    async def step(self) -> None:
        """One turn: ask the model, record its answer, answer each tool call it made."""
        request = with_cache_marks(self.messages) if self.cache_marks else self.messages
        answer = await self.gateway.chat(request, model=self.model, context=self.call_context,
                                         tools=self.schemas, max_tokens=self.max_tokens)
        message = answer.as_message()
        self.messages.append(message)
        self.journal.message(self.turn, message)
        self.transcript.add(EventKind.AGENT_TURN, turn=self.turn, content=answer.content or "",
                            tool_calls=[{"name": c.name, "arguments": c.arguments}
                                        for c in answer.tool_calls],
                            model=answer.model, finish_reason=answer.finish_reason,
                            prompt_tokens=answer.usage.prompt_tokens,
                            completion_tokens=answer.usage.completion_tokens,
                            cost=answer.cost)
        if not answer.tool_calls:
            others = ", or another task tool" if len(self.ctx.task_tools) > 1 else ""
            nudge: ChatMessage = {"role": "user", "content": NUDGE.format(others=others)}
            self.messages.append(nudge)
            self.journal.message(self.turn, nudge)
            return
        for call in answer.tool_calls:
            await self.answer(call)

    async def answer(self, call: ToolCall) -> None:
        """Run one tool call (or refuse it once the attempt has ended) and record its result."""
        if self.stopped:
            return
        self.transcript.add(EventKind.TOOL_CALL, turn=self.turn, call_id=call.id,
                            name=call.name, arguments=call.arguments)
        if self.outcome is not None:
            # Every tool call needs an answer, but the attempt has already ended.
            self._tool_result(call, NOT_RUN, error=True)
            return
        # The policy decides before the call counts as started: a process that dies while a
        # person decides leaves the call unstarted, and the resumed attempt asks the same
        # approval again (found by task, journal, turn, tool and arguments) instead of calling
        # it cut.
        asked = await self.gate.check(call.name, call.arguments, turn=self.turn)
        if asked is not None and asked.cancelled:
            # The task, this attempt or the hive ended while a person was asked: the journal
            # may be closed already, and nothing this attempt would do can count.
            self.stopped = True
            self.outcome = TaskOutcome(OutcomeKind.FAILED, turns=self.turn,
                                       reason=(asked.refusal or "").removeprefix("error: "))
            return
        if asked is not None and asked.refusal is not None:
            # Denied by policy, or rejected by a person.
            self._tool_result(call, asked.refusal, error=True)
            return
        self.journal.started(self.turn, call.id, call.name, call.arguments)
        reply = await self.dispatch(call)
        if reply.outcome is not None:
            self.outcome = replace(reply.outcome, turns=self.turn)
        self._tool_result(call, reply.content, error=reply.error, **self._written(call, reply))

    async def dispatch(self, call: ToolCall) -> ToolReply:
        """The one place a tool call of the model is run."""
        with telemetry.span(f"execute_tool {call.name}", {
                "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": call.name,
                "gen_ai.tool.call.id": call.id}) as tool_span:
            reply = await self.toolbox.call(call.name, call.arguments)
            tool_span.set("ruflo.tool.ok", not reply.error)
        return reply

    def _written(self, call: ToolCall, reply: ToolReply) -> dict[str, object]:
        """For a file write or edit that went through: the path and the file's text after it,
        which a resumed attempt replays."""
        if call.name not in FILE_WRITES or reply.error:
            return {}
        path = self.toolbox.changed_files[-1]
        return {"path": path, "after": self.workspace.read_file(path)}

    def _tool_result(self, call: ToolCall, content: str, *, error: bool,
                     **details: object) -> None:
        self.transcript.add(EventKind.TOOL_RESULT, turn=self.turn, call_id=call.id,
                            name=call.name, ok=not error, content=content)
        message: ChatMessage = {"role": "tool", "tool_call_id": call.id, "content": content}
        self.messages.append(message)
        self.journal.message(self.turn, message, name=call.name, error=error, **details)


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


def learned_note(task: Task, agent: Agent, outcome: TaskOutcome, changed: list[str]) -> str:
    text = f"{agent.name} worked on '{task.title}': {outcome.kind.value}."
    if outcome.result:
        text += f" Result: {outcome.result}"
    if outcome.reason:
        text += f" Reason: {outcome.reason}"
    if changed:
        text += f" Files changed: {', '.join(sorted(set(changed)))}."
    return text
