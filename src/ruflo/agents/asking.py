"""The gate before an agent's action: the hive's and the agent's policies decide (agents/
permissions.py); "ask" opens an `action` approval showing the exact action and waits for a person.
Depends on the permissions, the workspace, the model and the Store protocol.

While it waits, no gateway call is made (the loop is parked before the tool runs) and the engine
keeps renewing the task's lease. An approval is found again by its key (task, attempt journal,
turn, tool, arguments): the attempt taken up again after the process died finds it pending (and
waits on it again) or decided, and never opens a second one; an attempt that starts over (a new
journal) is asked afresh. The store cancels an approval whose task, attempt journal or hive ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ruflo.agents.permissions import (
    ACTION_OF_TOOL,
    Action,
    ActionPolicy,
    Decision,
    Verdict,
    decide_action,
    parse_actions,
)
from ruflo.agents.workspace import Workspace
from ruflo.errors import ConfigError, PolicyError, WorkspaceError
from ruflo.model import Agent, Approval, ApprovalKind, ApprovalStatus, Hive, Task, new_id

if TYPE_CHECKING:
    from ruflo.store.base import Store

__all__ = ["ActionGate", "Asked", "action_key", "find_action_approval", "policies_of",
           "subject_of"]

DIFF_CHARS = 20_000
"""Longest diff kept in an approval (the person sees it cut with a marker beyond)."""


def policies_of(hive: Hive, agent: Agent | None) -> tuple[ActionPolicy, ActionPolicy]:
    """The hive's and the agent's stored policies. A stored policy that no longer reads (it was
    validated when set) is a ConfigError: the agent pauses rather than act unguarded."""
    try:
        hive_policy = parse_actions(hive.config.get("actions"), f"hive {hive.id}")
        agent_policy = parse_actions(agent.adapter_config.get("actions"),
                                     f"agent {agent.name}") if agent else ActionPolicy()
    except PolicyError as error:
        raise ConfigError(f"{error}; the task was left as it was") from None
    return hive_policy, agent_policy


def subject_of(action: Action, arguments: Mapping[str, object]) -> str:
    """What a policy's rules match for this action: the command, the path, the note's key..."""
    def text(name: str, default: str = "") -> str:
        value = arguments.get(name, default)
        return value if isinstance(value, str) else json.dumps(value)

    if action is Action.RUN_COMMAND:
        return text("command")
    if action in (Action.READ, Action.WRITE, Action.EDIT):
        return text("path", ".")
    if action is Action.MEMORY:
        return text("key") or text("query")
    if action is Action.POST_SUBTASKS:
        items = arguments.get("subtasks")
        titles = [str(i.get("title", "")) for i in items if isinstance(i, dict)] \
            if isinstance(items, list) else []
        return "; ".join(titles)
    return text("branch")


def action_key(task_id: str | None, journal_id: str | None, step: int | str, tool: str,
               arguments: Mapping[str, object]) -> str:
    """The same action at the same step (an attempt's turn, an outside agent's tool-use id) of
    the same attempt (its journal: the same when the attempt is taken up again, a new one when
    it starts over) has the same key, in any process."""
    canonical = json.dumps([task_id, journal_id, step, tool, arguments], sort_keys=True,
                           default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def find_action_approval(store: Store, hive_id: str, key: str) -> Approval | None:
    """The newest action approval with this key: pending, or decided while nobody waited."""
    found = [a for a in store.list_approvals(hive_id=hive_id)
             if a.kind is ApprovalKind.ACTION and a.data.get("key") == key
             and a.status is not ApprovalStatus.CANCELLED]
    return found[-1] if found else None


@dataclass(frozen=True, slots=True)
class Asked:
    """How the gate answered one action: run it (`refusal` None) or the error the model reads."""

    verdict: Verdict
    refusal: str | None = None
    approval: Approval | None = None

    @property
    def cancelled(self) -> bool:
        """The approval was cancelled while it waited: its task, attempt or hive ended."""
        return self.approval is not None and self.approval.status is ApprovalStatus.CANCELLED


class ActionGate:
    """Decides each governed tool call of one attempt (or of an outside agent that asks through
    MCP: `agent` and `task` may then be unknown); waits on a person for "ask". `journal_id` is
    the attempt's journal (None outside the built-in agent's loop)."""

    def __init__(self, store: Store, hive: Hive, agent: Agent | None, task: Task | None,
                 workspace: Workspace | None, *, journal_id: str | None = None,
                 poll_seconds: float = 1.0) -> None:
        self.store, self.hive, self.agent, self.task = store, hive, agent, task
        self.workspace, self.journal_id = workspace, journal_id
        self.poll_seconds = poll_seconds
        self.hive_policy, self.agent_policy = policies_of(hive, agent)

    async def check(self, tool: str, raw_arguments: str, *, turn: int) -> Asked | None:
        """None when the tool is not governed or its arguments don't read (the toolbox answers
        those); else the verdict, and the refusal text when the tool must not run."""
        action = ACTION_OF_TOOL.get(tool)
        if action is None:
            return None
        try:
            arguments = json.loads(raw_arguments or "{}")
        except json.JSONDecodeError:
            return None
        if not isinstance(arguments, dict):
            return None
        return await self.decide(action, tool, arguments, turn=turn)

    async def decide(self, action: Action, tool: str, arguments: Mapping[str, object], *,
                     turn: int | None = None, step: str | None = None) -> Asked:
        """Decide one action; "ask" waits here until a person decides. `turn` (the loop's) or
        `step` (an outside agent's tool-use id) makes the approval's key."""
        subject = subject_of(action, arguments)
        verdict = decide_action(action, subject, hive=self.hive_policy, agent=self.agent_policy)
        if verdict.decision is Decision.ALLOW:
            return Asked(verdict)
        if verdict.decision is Decision.DENY:
            return Asked(verdict, f"error: {tool} was not run: denied by policy ({verdict.reason})."
                                  " Do the task another way, or abstain/escalate if you can't.")
        approval = await asyncio.to_thread(self._open, action, tool, arguments, subject, verdict,
                                           turn, step)
        approval = await self._wait(approval)
        if approval.status is ApprovalStatus.APPROVED:
            return Asked(verdict, None, approval)
        reason = approval.data.get("reason") or "no reason given"
        if approval.status is ApprovalStatus.CANCELLED:
            return Asked(verdict, f"error: {tool} was not run: its approval was cancelled "
                                  f"({reason}).", approval)
        return Asked(verdict, f"error: {tool} was not run: a person rejected it "
                              f"({approval.decided_by or 'someone'}: {reason}). Do the task "
                              "another way, or abstain/escalate if you can't.", approval)

    def _open(self, action: Action, tool: str, arguments: Mapping[str, object], subject: str,
              verdict: Verdict, turn: int | None, step: str | None) -> Approval:
        task_id = self.task.id if self.task else None
        key = action_key(task_id, self.journal_id, step if step is not None else turn or 0,
                         tool, arguments)
        existing = find_action_approval(self.store, self.hive.id, key)
        if existing is not None:
            return existing
        shown = f"`{subject}`" if action is Action.RUN_COMMAND else subject or "(nothing)"
        verb = {Action.RUN_COMMAND: "run", Action.WRITE: "write", Action.EDIT: "edit",
                Action.READ: "read", Action.MEMORY: f"{tool} on",
                Action.POST_SUBTASKS: "post the subtasks", Action.MERGE: "merge"}[action]
        who = self.agent.name if self.agent else "an outside agent"
        where = f" (task {self.task.title!r})" if self.task else ""
        return self.store.create_approval(Approval(
            id=new_id(), hive_id=self.hive.id, kind=ApprovalKind.ACTION,
            agent_id=self.agent.id if self.agent else None,
            subject=f"{who} wants to {verb} {shown}{where}; {verdict.reason}",
            data={"key": key, "task_id": task_id, "journal_id": self.journal_id,
                  "turn": turn, "step": step,
                  "action": action.value,
                  "tool": tool, "subject": subject, "arguments": dict(arguments),
                  "diff": self._diff(action, arguments), "rule": verdict.reason}))

    def _diff(self, action: Action, arguments: Mapping[str, object]) -> str | None:
        """For write and edit, the change as a unified diff; None for other actions."""
        if action not in (Action.WRITE, Action.EDIT):
            return None
        path = arguments.get("path")
        if not isinstance(path, str):
            return None
        try:
            target = self.workspace.resolve(path) if self.workspace else Path(path)
            before = target.read_text(errors="replace") if target.is_file() else ""
        except (WorkspaceError, OSError):
            before = ""
        if action is Action.WRITE:
            after = str(arguments.get("content", ""))
        else:
            old, new = str(arguments.get("old", "")), str(arguments.get("new", ""))
            after = before.replace(old, new, 1) if old and before.count(old) == 1 else before
            if after == before:
                return f"--- {path}: `old` not found once; the edit would fail\n-{old}\n+{new}"
        diff = "".join(difflib.unified_diff(before.splitlines(keepends=True),
                                            after.splitlines(keepends=True),
                                            f"a/{path}", f"b/{path}"))
        return diff if len(diff) <= DIFF_CHARS else diff[:DIFF_CHARS] + "\n… (diff cut)"

    async def _wait(self, approval: Approval) -> Approval:
        """Until the approval is decided: woken by the store's commit hints (this process, or any
        on Postgres), else looking again every `poll_seconds` (another process on SQLite)."""
        loop = asyncio.get_running_loop()
        woken = asyncio.Event()

        def hint(_hive_id: str | None) -> None:
            loop.call_soon_threadsafe(woken.set)

        listening = self.store.listen(hint, hives=[self.hive.id])
        try:
            while approval.status is ApprovalStatus.PENDING:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), timeout=self.poll_seconds)
                woken.clear()
                approval = await asyncio.to_thread(self.store.get_approval, approval.id)
        finally:
            await asyncio.to_thread(listening.stop)
        return approval
