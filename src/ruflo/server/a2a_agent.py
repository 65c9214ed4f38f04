"""ruflo as an A2A agent: the agent card and the executor behind the JSON-RPC endpoint.

A message without a task starts a hive (its text is the objective; a data part may carry the
rest of a hive's create body: mode, agents, org, budget, tasks, config), or posts a task on the
hive named by `metadata.hive_id`. The A2A task then follows the hive (or that task) through the
store's events: notable events become `working` updates, a pending approval `input-required`
(answer "approve" or "reject" on the same task to decide it), and the end `completed`,
`failed` or `canceled` with the verified summary as the artifact, and, for a hive under git
isolation, a second artifact `diff`: its integration branch against its start commit (changed
files, diff stat, the patch cut at 64 KiB). Cancelling the A2A task
cancels the hive (or the posted task).
Depends on a2a-sdk (the optional `a2a` extra), the server's hive routes and the core model.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from a2a.auth.user import User
from a2a.helpers.proto_helpers import get_data_parts, new_data_part, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.tasks import TaskUpdater
from a2a.types.a2a_pb2 import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentProvider,
    AgentSkill,
    HTTPAuthSecurityScheme,
    SecurityRequirement,
    SecurityScheme,
    StringList,
    Task,
    TaskState,
    TaskStatus,
)
from a2a.utils.errors import (
    A2AError,
    InternalError,
    InvalidParamsError,
    InvalidRequestError,
    TaskNotCancelableError,
)
from fastapi import HTTPException
from pydantic import ValidationError

from ruflo.engine.isolation import PATCH_LIMIT, hive_diff
from ruflo.errors import (
    ConfigError,
    Conflict,
    GatewayError,
    NotFound,
    RufloError,
    StoreError,
    Unstorable,
)
from ruflo.model import ApprovalStatus, Hive, HiveStatus
from ruflo.model import TaskState as BoardState
from ruflo.server import hives
from ruflo.server.access import may_change
from ruflo.server.auth import AuthMode, Caller
from ruflo.server.context import ServerContext
from ruflo.server.hive_news import (
    NOTABLE,
    run_summary,
    summary_text,
    waits_for_a_person,
)
from ruflo.server.hive_news import describe as _describe
from ruflo.server.schemas import HiveCreate, TaskSpec

log = logging.getLogger("ruflo.server.a2a")

RPC_PATH = "/api/v2/a2a"
"""Where the JSON-RPC endpoint listens: under /api/, so the guard refuses cross-site reads too."""
CALLER_KEY = "ruflo.caller"
"""Where the authenticated caller travels in the SDK's ServerCallContext state."""
DECISIONS = {"approve": ApprovalStatus.APPROVED, "approved": ApprovalStatus.APPROVED,
             "yes": ApprovalStatus.APPROVED, "reject": ApprovalStatus.REJECTED,
             "rejected": ApprovalStatus.REJECTED, "no": ApprovalStatus.REJECTED}


def agent_card(base_url: str, settings: Any) -> AgentCard:
    """What ruflo offers over A2A, at `base_url` (the address the client reached us by), and
    how to authenticate: a bearer token as for the API, a sign-in at the proxy, or nothing."""
    from ruflo import __version__

    card = AgentCard(
        name="ruflo",
        description="A swarm orchestrator: a message starts a hive of agents that works the "
                    "objective on a shared board, each task checked by its verify command. "
                    "Send a data part with the hive's create body (mode, agents, org, budget, "
                    "tasks) to shape it, or metadata.hive_id to post a task on a running hive.",
        version=__version__,
        provider=AgentProvider(organization="ruflo", url=base_url),
        documentation_url=f"{base_url}/docs",
        supported_interfaces=[AgentInterface(url=f"{base_url}{RPC_PATH}",
                                             protocol_binding="JSONRPC", protocol_version="1.0")],
        capabilities=AgentCapabilities(streaming=True, push_notifications=False),
        default_input_modes=["text/plain", "application/json"],
        default_output_modes=["text/plain", "application/json"],
        skills=[
            AgentSkill(id="swarm", name="Swarm hive",
                       description="Alike agents claim tasks from a shared board by skill; the "
                                   "objective is the first task and may be split into subtasks.",
                       tags=["swarm", "orchestration"],
                       examples=["Write a Python module that parses ISO dates, with tests"]),
            AgentSkill(id="company", name="Company hive",
                       description="An org chart (data part `org`: agents with reports_to) "
                                   "delegates tickets down and escalates blockers up, with "
                                   "budgets and approvals.",
                       tags=["company", "org-chart", "approvals"]),
            AgentSkill(id="compare", name="Compare coordination modes",
                       description="A data part `compare` ({workloads: built-in ticket, bug, "
                                   "feature or shapes wide, deep, mixed; modes; seeds}) runs "
                                   "them in the simulator; the report is the artifact.",
                       tags=["compare", "benchmark", "workloads"],
                       examples=['{"compare": {"workloads": ["bug", "feature"], '
                                 '"modes": ["swarm", "company"]}}']),
            AgentSkill(id="task", name="Task on a running hive",
                       description="With metadata.hive_id, the message is posted as a task on "
                                   "that hive and followed until it ends.",
                       tags=["board"]),
        ])
    mode = AuthMode(str(settings.auth).lower())
    if mode is AuthMode.TOKEN:
        card.security_schemes["bearer"].CopyFrom(SecurityScheme(
            http_auth_security_scheme=HTTPAuthSecurityScheme(
                scheme="bearer", bearer_format="ruflo token",
                description="A token made with `ruflo token create`, as for the HTTP API")))
        card.security_requirements.append(SecurityRequirement(schemes={"bearer": StringList()}))
    elif mode is AuthMode.FORWARD:
        card.description += (" Requests must come through this server's sign-in proxy, which "
                             "names the user.")
    return card


class CallerUser(User):
    """ruflo's caller as the SDK's user: its name scopes the A2A tasks it may see."""

    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def user_name(self) -> str:
        return self._name


def caller_of(context: RequestContext) -> Caller:
    caller = context.call_context.state.get(CALLER_KEY)
    if not isinstance(caller, Caller):
        raise InvalidRequestError(message="the request was not authenticated")
    return caller


def _refusal(error: HTTPException | RufloError | ValidationError) -> A2AError:
    """A refusal of the hive routes as the protocol's invalid-params error, in its words (the
    server's own failure, a hive stored but not started, as an internal error)."""
    if isinstance(error, HTTPException):
        if error.status_code >= 500:
            return InternalError(message=str(error.detail))
        return InvalidParamsError(message=str(error.detail))
    if isinstance(error, ValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in item['loc']) or 'message'}: "
                             f"{item['msg']}" for item in error.errors()[:5])
        return InvalidParamsError(message=f"the message does not describe a hive: {problems}")
    if isinstance(error, NotFound | Conflict | Unstorable) or not isinstance(
            error, StoreError | GatewayError | ConfigError):
        return InvalidParamsError(message=str(error))
    return InternalError(message=str(error))


def _fields(struct: Any) -> dict[str, Any]:
    """A protobuf Struct's top-level fields as a dict (strings stay strings)."""
    return {key: struct[key] for key in struct.keys()}  # noqa: SIM118 - a Struct, not a dict


def _plain_numbers(value: Any) -> Any:
    """JSON from a protobuf Value, whole floats back to ints (Value keeps every number as a
    double, and the hive's create body wants integers for counts and token caps)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_plain_numbers(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain_numbers(item) for key, item in value.items()}
    return value


def _body_of(context: RequestContext) -> dict[str, Any]:
    """The text parts (the objective or the task) and the first data part (more fields)."""
    message = context.message
    if message is None or not message.parts:
        raise InvalidParamsError(message="the message has no parts; send the objective as text")
    data = [_plain_numbers(part) for part in get_data_parts(message.parts)]
    if len(data) > 1 or (data and not isinstance(data[0], dict)):
        raise InvalidParamsError(message="at most one data part, a JSON object, may shape the "
                                         "hive")
    body: dict[str, Any] = dict(data[0]) if data else {}
    text = context.get_user_input().strip()
    if text:
        body.setdefault("objective", text)
    return body


class HiveExecutor(AgentExecutor):
    """Runs A2A tasks as hives (or tasks of hives) of this server."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        caller = caller_of(context)
        assert context.task_id is not None
        assert context.context_id is not None
        current = context.current_task
        # A follow-up names the task; the context is the task's, whatever the message said.
        updater = TaskUpdater(event_queue, context.task_id,
                              current.context_id if current is not None else context.context_id)
        if current is None:
            body = _body_of(context)
            if "compare" in body:
                await self._compare(context, body, updater, event_queue)
                return
            hive_id, board_task = await self._begin(context, caller, body)
            task = Task(id=context.task_id, context_id=context.context_id,
                        status=TaskStatus(state=TaskState.TASK_STATE_SUBMITTED))
            if context.message is not None:
                task.history.append(context.message)
            task.metadata.update({"hive_id": hive_id, "task_id": board_task or ""})
            await event_queue.enqueue_event(task)
            after = 0
        else:
            found = _fields(current.metadata)
            hive_id, board_task = str(found.get("hive_id", "")), str(found.get("task_id", ""))
            after = self.ctx.store.last_seq(hive_id)
            if not await self._answer(hive_id, caller, context, updater):
                return
        await self._follow(updater, hive_id, board_task or None, after)

    async def _compare(self, context: RequestContext, body: dict[str, Any],
                       updater: TaskUpdater, event_queue: EventQueue) -> None:
        """Run the simulated comparison the data part's `compare` asks for; its report is the
        artifact (and is stored for the reports page)."""
        from ruflo.server.a2a_compare import (
            CompareSpec,
            compare_plan,
            report_digest,
            report_text,
            run_comparison,
        )
        from ruflo.server.pages import reports_dir

        try:
            plan = compare_plan(CompareSpec.model_validate(body["compare"]))
        except (RufloError, ValidationError) as error:
            raise _refusal(error) from None
        assert context.task_id is not None
        assert context.context_id is not None
        task = Task(id=context.task_id, context_id=context.context_id,
                    status=TaskStatus(state=TaskState.TASK_STATE_SUBMITTED))
        task.metadata.update({"compare": "simulated"})
        await event_queue.enqueue_event(task)
        await updater.start_work(updater.new_agent_message([new_text_part(
            f"running {plan.total} simulated runs")]))
        report = await asyncio.to_thread(run_comparison, plan, reports_dir(self.ctx))
        await updater.add_artifact([new_text_part(report_text(report)),
                                    new_data_part(report_digest(report))], name="compare report")
        await updater.complete()

    async def _begin(self, context: RequestContext, caller: Caller,
                     body: dict[str, Any]) -> tuple[str, str | None]:
        """Start the hive (or post the task) the first message asks for: (hive id, task id)."""
        hive_id = context.metadata.get("hive_id")
        message = context.message
        if hive_id is None and message is not None and message.metadata:
            hive_id = _fields(message.metadata).get("hive_id")
        try:
            if hive_id is not None:
                return str(hive_id), self._post(str(hive_id), body, caller)
            created = await hives.create_hive(HiveCreate.model_validate(body), self.ctx, caller)
        except (HTTPException, RufloError, ValidationError) as error:
            raise _refusal(error) from None
        return str(created["id"]), None

    def _post(self, hive_id: str, body: dict[str, Any], caller: Caller) -> str:
        """Post the message as a task on a running hive the caller may change."""
        hive = self.ctx.store.get_hive(hive_id)
        if not may_change(caller, hive):
            raise InvalidParamsError(message=f"user {caller.name!r} may not post to hive "
                                             f"{hive.id}: only its owner or an operator may")
        objective = str(body.pop("objective", "")).strip()
        body.setdefault("title", objective.splitlines()[0][:500] if objective else "")
        body.setdefault("description", objective)
        return hives.add_task(self.ctx, hive, caller, TaskSpec.model_validate(body)).id

    async def _answer(self, hive_id: str, caller: Caller, context: RequestContext,
                      updater: TaskUpdater) -> bool:
        """A message on an input-required task decides the hive's pending approvals; an answer
        that is neither leaves the task waiting, with the question again (False)."""
        word = context.get_user_input().strip().lower()
        pending = self.ctx.store.list_approvals(hive_id=hive_id, status=ApprovalStatus.PENDING)
        hive = self.ctx.store.get_hive(hive_id)
        if not pending:
            if word == "resume" and waits_for_a_person(hive) and may_change(caller, hive):
                await self.ctx.runner.resume(hive_id)
            return True
        decision = DECISIONS.get(word)
        if decision is None or not may_change(caller, hive):
            why = (f"user {caller.name!r} may not decide for hive {hive_id}" if decision
                   else f"{word[:40]!r} is not an answer")
            await updater.requires_input(updater.new_agent_message([new_text_part(
                f"{why}; an approval still waits: answer \"approve\" or \"reject\"")]))
            return False
        for approval in pending:
            await self.ctx.runner.decide_approval(approval.id, decision, decided_by=caller.name)
        return True

    async def _follow(self, updater: TaskUpdater, hive_id: str, board_task: str | None,
                      after: int) -> None:
        """Pass the hive's news on until it (or the posted task) ends or an approval waits."""
        store = self.ctx.store
        async for batch in self.ctx.hub.batches(hive_id, after):
            for event in batch:
                if event.kind in NOTABLE and (board_task is None or event.task_id in
                                              (None, board_task)):
                    await updater.update_status(
                        TaskState.TASK_STATE_WORKING,
                        updater.new_agent_message([new_text_part(_describe(event.kind,
                                                                           event.data))]),
                        metadata={"hive_event": event.kind, "seq": event.seq})
            hive = store.get_hive(hive_id)
            if await self._ended(updater, hive, board_task):
                return
            pending = store.list_approvals(hive_id=hive_id, status=ApprovalStatus.PENDING)
            if pending:
                subjects = "; ".join(a.subject for a in pending)
                await updater.requires_input(updater.new_agent_message([
                    new_text_part(f"waiting for a decision: {subjects}. Answer \"approve\" or "
                                  "\"reject\" on this task."),
                    new_data_part({"approvals": [{"id": a.id, "kind": a.kind.value,
                                                  "subject": a.subject} for a in pending]})]))
                return
            if board_task is None and waits_for_a_person(hive):
                await updater.requires_input(updater.new_agent_message([new_text_part(
                    f"hive {hive.id} is paused ({hive.pause_reason or 'by a person'}); answer "
                    "\"resume\" on this task to resume it")]))
                return
        await updater.failed(updater.new_agent_message([new_text_part(
            "the server is shutting down; the hive goes on, follow it with tasks/get or the "
            "hive's page")]))

    async def _ended(self, updater: TaskUpdater, hive: Hive, board_task: str | None) -> bool:
        """Finish the A2A task when what it follows has ended: the artifact, then the state."""
        if board_task is not None:
            task = self.ctx.store.get_task(board_task)
            if not task.state.terminal:
                return await self._hive_over(updater, hive)
            await updater.add_artifact([new_text_part(task.result or "(no result)"),
                                        new_data_part(hives.task_json(task))], name="task")
            await _finish(updater, {BoardState.DONE: HiveStatus.DONE,
                                    BoardState.FAILED: HiveStatus.FAILED}.get(
                                        task.state, HiveStatus.CANCELLED),
                          f"task {task.id} {task.state.value}")
            return True
        if not hive.status.terminal:
            return False
        summary = run_summary(self.ctx, hive.id)
        await updater.add_artifact([new_text_part(summary_text(summary)),
                                    new_data_part(summary)], name="summary")
        changes = await asyncio.to_thread(hive_diff, hive)
        if changes is not None:
            await updater.add_artifact([new_text_part(diff_text(changes)),
                                        new_data_part(changes)], name="diff")
        await _finish(updater, hive.status, hive.pause_reason or f"hive {hive.id} "
                                                                 f"{hive.status.value}")
        return True

    async def _hive_over(self, updater: TaskUpdater, hive: Hive) -> bool:
        """A posted task whose hive ended under it ends with the hive."""
        if not hive.status.terminal:
            return False
        await _finish(updater, hive.status, f"hive {hive.id} {hive.status.value} before the "
                                            "task ended")
        return True

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        caller = caller_of(context)
        current = context.current_task
        if current is None:
            raise TaskNotCancelableError(message="no such task")
        found = _fields(current.metadata)
        assert context.task_id is not None
        updater = TaskUpdater(event_queue, context.task_id, current.context_id)
        if not found.get("hive_id"):  # a comparison: its runs finish in their thread, unread
            await updater.cancel(updater.new_agent_message([new_text_part(
                "cancelled; the comparison's report is not sent")]))
            return
        hive = self.ctx.store.get_hive(str(found["hive_id"]))
        if not may_change(caller, hive):
            raise TaskNotCancelableError(message=f"user {caller.name!r} may not cancel hive "
                                                 f"{hive.id}")
        board_task = str(found.get("task_id", ""))
        if board_task:
            task = self.ctx.store.get_task(board_task)
            if not task.state.terminal:
                self.ctx.store.finish_task(task.id, None, state=BoardState.CANCELLED,
                                           result="cancelled over A2A")
        elif not hive.status.terminal:
            await self.ctx.runner.cancel(hive.id)
        await updater.cancel(updater.new_agent_message([new_text_part(
            f"cancelled {'task ' + board_task if board_task else 'hive ' + hive.id}")]))


def diff_text(changes: dict[str, Any]) -> str:
    """The diff artifact's text: what the hive changed on its integration branch, the patch
    cut at PATCH_LIMIT bytes (said when it is)."""
    files = changes["files"]
    head = (f"{changes['branch']} against {str(changes['start_commit'])[:12]}: "
            f"{len(files)} file(s) changed" + (f" ({', '.join(files[:20])})" if files else ""))
    cut = (f"\n[the patch was cut at {PATCH_LIMIT} bytes: `ruflo hive diff` shows it whole]"
           if changes["patch_truncated"] else "")
    return f"{head}\n\n{changes['patch']}{cut}"


async def _finish(updater: TaskUpdater, status: HiveStatus, note: str) -> None:
    message = updater.new_agent_message([new_text_part(note)])
    if status is HiveStatus.DONE:
        await updater.complete(message)
    elif status is HiveStatus.CANCELLED:
        await updater.cancel(message)
    else:
        await updater.failed(message)
