"""Outside clients' claims in a git hive (MCP's claim_next_task, the REST board's claim): each
claim gets its attempt's worktree as ruflo's own attempts do (agents/gitwork.py open_attempt),
recorded with the commit it was cut at (`worktree_opened`), after the claim is committed (a
claim whose worktree git cannot open is given back); completing it runs the verify there,
then lands it through agents/isolated.py `land` (ruflo's commit with its checks, the `merge`
action, the hive's Integrator: one merge at a time, a conflict posts an integration task); a
finished or released claim's worktree is removed, and one left by a killed process is removed
at the next engine start (engine/isolation.py open_isolation). Depends on the model, the Store
protocol, agents/gitwork.py + agents/isolated.py and engine/isolation.py.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from ruflo.agents.base import RunContext
from ruflo.agents.gitwork import AttemptTree
from ruflo.agents.isolated import Integrator, land, merge_commit_of
from ruflo.engine.isolation import isolation_of, open_isolation
from ruflo.errors import WorkspaceError
from ruflo.event_kinds import EventKind
from ruflo.model import JSON, Agent, AgentStatus, Hive, Task, utcnow

if TYPE_CHECKING:
    from ruflo.store.base import Store

__all__ = ["ClaimWorktrees", "Landed"]


class Landed:
    """How a completed claim's worktree ended: `refused` (why it was not committed or merged:
    the task fails) or `integration_task` (posted for a conflict), else merged."""

    def __init__(self, branch: str, refused: str | None, integration_task: str | None) -> None:
        self.branch = branch
        self.refused = refused
        self.integration_task = integration_task

    def json(self) -> JSON:
        return {"merged": self.refused is None and self.integration_task is None,
                "integration_task": self.integration_task, "refused": self.refused,
                "branch": self.branch}

    def note(self) -> str:
        if self.refused is not None:
            return f"(not merged: {self.refused})"
        if self.integration_task is not None:
            return f"(integration pending: task {self.integration_task} merges it)"
        return ""


class ClaimWorktrees:
    """The git hives' integrators in this process, one per hive (its merges one at a time
    here; the repository's lock file serializes them across processes)."""

    def __init__(self) -> None:
        self.integrators: dict[str, Integrator] = {}
        self._opening = threading.Lock()

    @staticmethod
    def isolated(hive: Hive) -> bool:
        """Whether the hive's claims get worktrees of their own (a git hive)."""
        return isolation_of(hive) == "git"

    def integrator(self, store: Store, hive: Hive) -> Integrator | None:
        """The git hive's integrator (its integration branch made ready and a killed process's
        leftover worktrees removed, once per hive here, even when claims open worktrees from
        several threads at once); None for a hive sharing its folder."""
        if not self.isolated(hive):
            return None
        with self._opening:
            if hive.id not in self.integrators:
                integrator = open_isolation(store, hive)
                if integrator is None:
                    return None
                self.integrators[hive.id] = integrator
            return self.integrators[hive.id]

    def open(self, store: Store, hive: Hive, task: Task, agent: Agent) -> AttemptTree | None:
        """A git hive: the claim's fresh worktree, recorded; blocking (git). None otherwise."""
        integrator = self.integrator(store, hive)
        if integrator is None:
            return None
        tree = integrator.repo.open_attempt(task.id, merge=merge_commit_of(store, task))
        store.append_event(hive.id, EventKind.WORKTREE_OPENED, agent_id=agent.id,
                           task_id=task.id,
                           data={"path": str(tree.path), "branch": tree.branch,
                                 "base": tree.base, "merge": tree.extra_parent})
        return tree

    def open_for_claim(self, store: Store, hive: Hive, task: Task,
                       agent: Agent) -> AttemptTree | None:
        """`open` for a claim already committed (so no transaction waits on git); blocking.
        When the worktree cannot be opened, the claim is given back (the task open again, the
        agent idle) and WorkspaceError says so; other errors are raised as they are, after the
        same giving back."""
        try:
            return self.open(store, hive, task, agent)
        except Exception as error:
            with store.transaction():
                store.release_task(task.id, agent.id,
                                   reason=f"its worktree could not be opened: {error}")
                store.update_agent(agent.id, status=AgentStatus.IDLE, current_task=None,
                                   heartbeat_at=utcnow())
            if isinstance(error, WorkspaceError):
                raise WorkspaceError(f"task {task.id} could not get a worktree of its own "
                                     f"({error}); the claim was given back, nothing is held") \
                    from None
            raise

    def tree(self, store: Store, hive: Hive, task: Task) -> AttemptTree | None:
        """The worktree the task's claim was given (None: none, or it is gone)."""
        integrator = self.integrator(store, hive)
        if integrator is None:
            return None
        opened = [e for e in store.events(hive.id, kinds=[EventKind.WORKTREE_OPENED])
                  if e.task_id == task.id]
        if not opened:
            return None
        data = opened[-1].data
        merge = data.get("merge")
        return integrator.repo.attempt_tree(task.id, str(data["base"]),
                                            merge=merge if isinstance(merge, str) else None)

    async def land(self, store: Store, hive: Hive, task: Task, agent: Agent,
                   tree: AttemptTree) -> Landed:
        """Commit and integrate a passing claim's worktree (agents/isolated.py `land`)."""
        integrator = self.integrators[hive.id]
        refused, posted = await land(integrator, tree, task, agent, hive,
                                     RunContext(store=store, workspace=tree.path))
        return Landed(integrator.repo.branch, refused, posted)

    def drop(self, store: Store, hive: Hive, task: Task) -> None:
        """Remove the claim's worktree (a finished or released claim); blocking (git)."""
        integrator = self.integrator(store, hive)
        if integrator is not None:
            integrator.repo.remove_attempt(task.id)
