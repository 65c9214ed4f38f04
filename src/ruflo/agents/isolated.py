"""An attempt in its own git worktree (agents/gitwork.py), and its integration: wraps an executor
(the verify-deciding one) so the attempt's folder is a fresh worktree on its task branch; when the
attempt completes, ruflo commits its tree, merges it into the hive's integration branch (one merge
at a time per hive) and runs the verify commands of every task merged so far on the result (the
hive's objective verify runs at its end, on the integration branch). A conflict, or a merge
after which one of those fails although each branch passed alone, becomes work: an integration
task (the tasks' skills, the conflicting files and both sides in its description, a higher
priority; swarm mode: on the board; company mode: the engine gives it to the task owner's
manager, engine/company_board.py `_owner_for_new`), whose own
attempt starts with the merge in its worktree. Before merging, the `merge` action policy decides
(agents/asking.py): ask waits for a person; deny or a rejection fails the attempt, its commit
kept on its branch. A hive on a git remote (agents/gitremote.py) pushes each task branch and
merges across machines one at a time under the store's merge lock. Depends on the Executor
types, gitwork, the
command runner and the Store protocol.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ruflo.agents.asking import ActionGate
from ruflo.agents.base import Executor, OutcomeKind, RunContext, TaskOutcome
from ruflo.agents.commands import command_env, run_command
from ruflo.agents.gitwork import AttemptTree, Conflict, GitError, HiveRepo, shown
from ruflo.agents.permissions import Action
from ruflo.event_kinds import EventKind
from ruflo.model import Agent, Hive, Task, TaskState, new_id

if TYPE_CHECKING:
    from ruflo.store.base import Store

__all__ = ["Integrator", "Isolated", "land", "merge_commit_of"]


def merge_commit_of(store: Store, task: Task) -> str | None:
    """The task commit an integration task must merge (None for an ordinary task)."""
    for event in store.events(task.hive_id, kinds=[EventKind.INTEGRATION_POSTED]):
        if event.data.get("integration_task") == task.id:
            commit = event.data.get("commit")
            return commit if isinstance(commit, str) else None
    return None


async def held(take: Callable[[], Callable[[], None]]) -> Callable[[], None]:
    """Take a blocking lock in a thread; returns what gives it back. A wait cancelled meanwhile
    gives the lock back as soon as it comes, so a stopped engine never keeps it."""
    waiting = asyncio.ensure_future(asyncio.to_thread(take))
    try:
        return await asyncio.shield(waiting)
    except asyncio.CancelledError:
        def give_back(done: asyncio.Future[Callable[[], None]]) -> None:
            if not done.cancelled() and done.exception() is None:
                done.result()()

        waiting.add_done_callback(give_back)
        raise


PUBLISH_TRIES = 5
"""Merges of one commit in a row whose push a remote may refuse (its branch moved meanwhile)."""


class Integrator:
    """A hive's merges: one at a time in this process (an asyncio lock), on this machine (the
    repository's lock file) and, for a hive on a git remote, across machines (the store's
    merge lock)."""

    def __init__(self, repo: HiveRepo) -> None:
        self.repo = repo
        self._lock = asyncio.Lock()

    @staticmethod
    def _checks(store: Store, task: Task) -> list[str]:
        """The verify commands that must pass on the merged result: those of every task merged
        so far and this one's (each passed on its own branch)."""
        merged = {e.task_id for e in store.events(task.hive_id, kinds=[EventKind.TASK_MERGED])}
        commands = [t.verify for t in store.list_tasks(task.hive_id)
                    if t.id in merged and t.verify]
        commands += [task.verify] if task.verify else []
        return list(dict.fromkeys(c for c in commands if c and c.strip()))

    async def integrate(self, store: Store, task: Task, agent: Agent, commit: str,
                        ctx: RunContext) -> str | None:
        """Merge `commit`; returns None when merged, else the id of the integration task
        posted for it. A hive on a git remote merges on the remote branch's latest head under
        the store's merge lock (one merge at a time across machines) and pushes; a push
        refused because the branch moved meanwhile means fetch and merge again."""
        repo = self.repo
        async with self._lock:
            releases = []
            try:
                if repo.remote is not None:
                    releases.append(await held(lambda: store.merge_lock(task.hive_id)))
                releases.append(await held(self._file_lock))
                if repo.remote is not None:
                    self._still_held(store, task, agent)
                for _ in range(PUBLISH_TRIES):
                    before = await asyncio.to_thread(repo.catch_up)
                    result = await asyncio.to_thread(
                        repo.merge, commit, f"ruflo: merge task {task.id} ({task.title[:60]})")
                    if not result.merged:
                        return self._post(store, task, agent, commit,
                                          conflict=result.conflict, broken=None)
                    for command in self._checks(store, task):
                        passed, output = await self._verify(command, ctx)
                        if not passed:
                            await asyncio.to_thread(repo.undo_last_merge, before)
                            store.append_event(task.hive_id, EventKind.MERGE_CHECK_FAILED,
                                               task_id=task.id,
                                               data={"command": command, "commit": commit,
                                                     "output": output[-2000:]})
                            return self._post(store, task, agent, commit, conflict=None,
                                              broken=f"`{command}` fails:\n{output}")
                    if await asyncio.to_thread(repo.publish):
                        store.append_event(task.hive_id, EventKind.TASK_MERGED,
                                           agent_id=agent.id, task_id=task.id,
                                           data={"commit": commit, "integration": result.commit,
                                                 "branch": repo.branch, "remote": repo.remote})
                        return None
                raise GitError(f"{repo.branch} on {repo.remote} kept moving while task "
                               f"{task.id} was merged ({PUBLISH_TRIES} tries); its commit "
                               f"{commit[:12]} is kept on its branch")
            finally:
                for release in reversed(releases):
                    release()

    @staticmethod
    def _still_held(store: Store, task: Task, agent: Agent) -> None:
        """Across machines, only the task's holder merges it: an attempt that outlived its
        lease (a stalled worker) would merge a task another agent is doing again."""
        current = store.get_task(task.id)
        if current.state is not TaskState.CLAIMED or current.assignee != agent.id:
            raise GitError(f"task {task.id} is no longer held by {agent.id} (its lease ran out): "
                           "its commit was not merged; whoever holds the task now merges theirs")

    async def latest(self) -> Path:
        """The integration worktree at the integration branch's latest head (a remote's,
        fetched): where the hive's objective verify runs."""
        async with self._lock:
            release = await held(self._file_lock)
            try:
                await asyncio.to_thread(self.repo.catch_up)
            finally:
                release()
        return self.repo.integration

    def _file_lock(self) -> Callable[[], None]:
        handle = self.repo.lock()
        return lambda: self.repo.unlock(handle)

    async def _verify(self, command: str, ctx: RunContext) -> tuple[bool, str]:
        limits = ctx.limits
        done = await run_command(command, cwd=self.repo.integration,
                                 env=dict(ctx.env) if ctx.env else command_env(),
                                 time_limit=limits.verify_timeout, grace=limits.command_grace,
                                 output_limit=limits.command_output_bytes, sandbox=ctx.sandbox)
        return done.ok, done.output

    def _post(self, store: Store, task: Task, agent: Agent, commit: str, *,
              conflict: Conflict | None, broken: str | None) -> str:
        if conflict is not None:
            sides = "\n\n".join(f"--- {f}: integration branch ---\n{conflict.ours[f]}\n"
                                f"--- {f}: task {task.id} ---\n{conflict.theirs[f]}"
                                for f in conflict.files)
            why = f"merging it conflicts in {shown(list(conflict.files))}"
            detail = (f"Conflicting files: {', '.join(conflict.files)}. Your folder holds the "
                      "merge with conflict markers; resolve every one keeping BOTH sides' "
                      f"intent.\n\n{sides}")
            files: list[str] = list(conflict.files)
        else:
            why = "after merging it a merged task's verify command fails"
            detail = (f"The merge is in your folder; a check fails on it although each branch "
                      f"passed alone. Make it pass keeping both sides' intent.\n\n"
                      f"{(broken or '')[-1500:]}")
            files = []
        title = f"Integrate: {task.title}"
        posted = Task(id=new_id(), hive_id=task.hive_id, title=title[:200],
                      description=f"Task {task.id} ('{task.title}') is done on its branch, but "
                                  f"{why}.\n\n{detail}\n\nOriginal task:\n{task.description}",
                      skills=task.skills, priority=task.priority + 1, verify=task.verify,
                      parent_id=task.id)
        with store.transaction():
            store.post_tasks(task.hive_id, [posted], agent_id=agent.id)
            store.append_event(task.hive_id, EventKind.INTEGRATION_POSTED, agent_id=agent.id,
                               task_id=task.id,
                               data={"integration_task": posted.id, "commit": commit,
                                     "files": files, "reason": why})
        return posted.id


class Isolated:
    """Runs each attempt of the inner executor in its own worktree, then integrates it."""

    def __init__(self, inner: Executor, integrator: Integrator) -> None:
        self.inner = inner
        self.integrator = integrator

    async def run(self, task: Task, agent: Agent, hive: Hive, ctx: RunContext) -> TaskOutcome:
        repo = self.integrator.repo
        merge = await asyncio.to_thread(merge_commit_of, ctx.store, task)
        tree = await asyncio.to_thread(repo.open_attempt, task.id, merge=merge)
        try:
            outcome = await self.inner.run(task, agent, hive, replace(ctx, workspace=tree.path))
            if outcome.kind is not OutcomeKind.COMPLETE:
                return outcome
            failed, posted = await land(self.integrator, tree, task, agent, hive, ctx)
            if failed is not None:
                return replace(outcome, kind=OutcomeKind.FAILED, reason=failed)
            if posted is None:
                return outcome
            note = f"(integration pending: task {posted} merges it)"
            return replace(outcome, result=f"{outcome.result or ''}\n{note}".strip())
        finally:
            await asyncio.to_thread(repo.remove_attempt, task.id)


async def land(integrator: Integrator, tree: AttemptTree, task: Task, agent: Agent, hive: Hive,
               ctx: RunContext) -> tuple[str | None, str | None]:
    """A completed attempt's tree, committed by ruflo (outside any sandbox: gitwork's checks
    refuse an oversized file, an outward symlink, conflict markers left), the `merge` action
    decided and the commit integrated. Returns (why it failed, None) or (None, the id of the
    integration task posted, None when merged). Ruflo's own attempts (`Isolated`) and outside
    clients' claims (mcp/desk.py) both land here; the caller removes the worktree."""
    repo = integrator.repo
    try:
        commit, changed = await asyncio.to_thread(
            repo.commit_attempt, tree, f"ruflo: task {task.id}: {task.title[:60]}")
    except GitError as error:
        return str(error), None
    ctx.store.append_event(hive.id, EventKind.TASK_COMMITTED, agent_id=agent.id,
                           task_id=task.id,
                           data={"branch": tree.branch, "commit": commit,
                                 "base": tree.base, "files": changed[:200],
                                 "remote": repo.remote})
    # The merge is an action too: a policy may ask a person first, or refuse it.
    gate = ActionGate(ctx.store, hive, agent, task, None, poll_seconds=ctx.limits.approval_poll)
    asked = await gate.decide(Action.MERGE, "merge", {
        "branch": tree.branch, "commit": commit, "files": changed[:50]},
        step=f"merge:{commit}")
    if asked.refusal is not None:
        return asked.refusal.removeprefix("error: "), None
    try:
        return None, await integrator.integrate(ctx.store, task, agent, commit, ctx)
    except GitError as error:
        return f"integrating its commit failed: {error}", None
