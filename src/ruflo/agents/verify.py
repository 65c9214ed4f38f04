"""Verification: a task's `verify` command, run in the workspace and in the sandbox (its folder
writable, no network), decides success — not the agent's word. Depends on the Executor types,
the command runner, memory and the Store protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ruflo.agents.base import Executor, OutcomeKind, RunContext, TaskOutcome
from ruflo.agents.commands import command_env, run_command
from ruflo.agents.tools import truncate
from ruflo.event_kinds import EventKind
from ruflo.memory.notes import Memory, hive_namespace
from ruflo.model import Agent, Hive, Task, TaskState

if TYPE_CHECKING:
    from ruflo.store.base import Store


@dataclass(frozen=True, slots=True)
class Verdict:
    passed: bool
    exit_code: int | None
    output: str
    timed_out: bool = False


async def verify_task(task: Task, ctx: RunContext) -> Verdict | None:
    """Run the task's verify command in the workspace; None when it has none."""
    if not task.verify:
        return None
    limits = ctx.limits
    result = await run_command(task.verify, cwd=ctx.workspace,
                               env=dict(ctx.env) if ctx.env else command_env(),
                               time_limit=limits.verify_timeout, grace=limits.command_grace,
                               output_limit=limits.command_output_bytes,
                               sandbox=ctx.sandbox)
    return Verdict(passed=result.ok, exit_code=result.exit_code, output=result.output,
                   timed_out=result.timed_out)


class Verified:
    """Wraps an executor: when it reports a task complete and the task has a `verify` command,
    the command runs and its exit code decides. A failing verdict turns the outcome into FAILED
    (the agent's result is kept beside it). Event: task_verified, with the command's output."""

    def __init__(self, inner: Executor) -> None:
        self.inner = inner

    async def run(self, task: Task, agent: Agent, hive: Hive, ctx: RunContext) -> TaskOutcome:
        outcome = await self.inner.run(task, agent, hive, ctx)
        if outcome.kind is not OutcomeKind.COMPLETE or not task.verify:
            return outcome
        verdict = await verify_task(task, ctx)
        assert verdict is not None
        ctx.store.append_event(hive.id, EventKind.TASK_VERIFIED, agent_id=agent.id, task_id=task.id,
                               data={"command": task.verify, "passed": verdict.passed,
                                     "exit_code": verdict.exit_code,
                                     "timed_out": verdict.timed_out,
                                     "output": truncate(verdict.output,
                                                        ctx.limits.transcript_chars)})
        if verdict.passed:
            return replace(outcome, verified=True)
        why = ("timed out" if verdict.timed_out else f"exited with {verdict.exit_code}")
        memory = ctx.memory if ctx.memory is not None else Memory(ctx.store)
        memory.put(hive_namespace(hive.id), f"verify:{task.id}",
                   f"'{task.title}' was reported done by {agent.name} but its verify command "
                   f"`{task.verify}` {why}:\n{truncate(verdict.output, 1500)}",
                   tags=(*task.skills, "verify-failed"))
        return replace(outcome, kind=OutcomeKind.FAILED, verified=False,
                       reason=f"the verify command `{task.verify}` {why}")


def store_outcome(store: Store, task: Task, agent: Agent, outcome: TaskOutcome) -> Task | None:
    """Record a finished attempt on the board: complete → done, failed → failed (result and
    verdict stored), abstain → the claim is released. Decompose, delegate and escalate belong
    to the engine's mode and return None here."""
    match outcome.kind:
        case OutcomeKind.COMPLETE:
            return store.finish_task(task.id, agent.id, state=TaskState.DONE,
                                     result=outcome.result, verified=outcome.verified,
                                     data={"turns": outcome.turns})
        case OutcomeKind.FAILED:
            result = outcome.result or outcome.reason
            return store.finish_task(task.id, agent.id, state=TaskState.FAILED, result=result,
                                     verified=outcome.verified,
                                     data={"reason": outcome.reason, "turns": outcome.turns})
        case OutcomeKind.ABSTAIN:
            return store.release_task(task.id, agent.id, reason=outcome.reason or "abstained")
        case OutcomeKind.DECOMPOSE | OutcomeKind.DELEGATE | OutcomeKind.ESCALATE:
            return None
