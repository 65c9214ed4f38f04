"""The built-in agent's attempt journal: every message of an attempt recorded as it happens, and
an attempt taken up again rebuilt from it. Depends on the core model, the workspace and the
JournalStore role.

What a resumed attempt re-runs, and what it does not:
- the conversation is rebuilt from the journal, so no model call already answered is paid again
  (only one whose answer was lost with the process is asked again);
- file writes and edits are replayed onto the workspace: each file gets the text the attempt's
  writes and edits, in order, left in it (a fresh git worktree then holds what it had written);
- reads, searches, notes and commands are not run again: their recorded results stand;
- a call that had started but has no recorded result (a command running when the process died)
  is answered with INTERRUPTED, never run again; a call of the last answer that had not
  started yet is run now, as it would have been.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ruflo.errors import WorkspaceError
from ruflo.model import (
    JSON,
    Agent,
    AttemptJournal,
    JournalEntryKind,
    Task,
    utcnow,
)

if TYPE_CHECKING:
    from ruflo.agents.workspace import Workspace
    from ruflo.gateway.base import ChatMessage
    from ruflo.store.base import JournalStore

FILE_WRITES = frozenset({"write_file", "edit_file"})
"""Tools whose effect on the workspace a resumed attempt replays."""

INTERRUPTED = ("interrupted: the process running this attempt stopped while this call was "
               "running, so its result is unknown. It was not run again. Check its effects "
               "before you run it again.")
"""The tool result a resumed attempt gives a call that started but never finished."""


def task_hash(task: Task) -> str:
    """What the task asks, hashed: a journal made for another version of the task is not
    resumed."""
    what = json.dumps([task.title, task.description, task.verify or ""], ensure_ascii=False)
    return hashlib.sha256(what.encode()).hexdigest()[:32]


@dataclass
class Pending:
    """A tool call of the journal's last answer that has no recorded result."""

    call_id: str
    name: str
    arguments: str
    started: bool
    """True: it was running when the attempt stopped (answered INTERRUPTED, not re-run)."""


@dataclass
class Taken:
    """An attempt rebuilt from its journal."""

    messages: list[ChatMessage]
    """The opening messages and every recorded message since, in order."""
    turn: int
    """The last turn the journal recorded an answer for."""
    pending: list[Pending] = field(default_factory=list)
    """Calls of the last answer still without a result, in the answer's order."""
    finished_calls: list[tuple[str, str]] = field(default_factory=list)
    """(name, arguments) of every recorded successful call, in order (task tools are derived
    again from these: they have no effect but the outcome)."""
    changed_files: list[str] = field(default_factory=list)
    writes: list[tuple[str, str]] = field(default_factory=list)
    """(path, text after the write) of every recorded write or edit, in order."""


class Journal:
    """One open attempt journal, written as the attempt goes."""

    def __init__(self, store: JournalStore, journal: AttemptJournal) -> None:
        self.store, self.record = store, journal

    @classmethod
    def begin(cls, store: JournalStore, task: Task, agent: Agent,
              opening: list[ChatMessage]) -> Journal:
        journal = AttemptJournal(id=uuid.uuid4().hex, hive_id=task.hive_id, task_id=task.id,
                                 agent_id=agent.id, task_hash=task_hash(task),
                                 opening={"messages": opening}, opened_at=utcnow())
        return cls(store, store.open_journal(journal))

    @classmethod
    def take_up(cls, store: JournalStore, task: Task, agent: Agent) -> Journal | None:
        """The task's open journal if this attempt may continue it; a journal made for another
        version of the task, or by another agent, is closed (the attempt starts over)."""
        found = store.open_journal_of(task.id)
        if found is None:
            return None
        if found.task_hash != task_hash(task):
            store.close_journal(found.id, "the task changed since this attempt began")
            return None
        if found.agent_id != agent.id:
            store.close_journal(found.id, f"the task was taken up by agent {agent.name}")
            return None
        return cls(store, found)

    def rebuild(self) -> Taken:
        """The attempt as far as the journal recorded it (see the module docstring)."""
        opening = self.record.opening.get("messages")
        if not isinstance(opening, list) or not opening:
            raise ValueError(f"journal {self.record.id} has no opening messages")
        taken = Taken(messages=list(opening), turn=0)
        started: dict[str, bool] = {}
        answered: set[str] = set()
        last_calls: list[JSON] = []
        asked: dict[str, tuple[str, str]] = {}  # call id -> (name, arguments)
        for entry in self.record.entries:
            data = entry.data
            if entry.kind is JournalEntryKind.TOOL_STARTED:
                started[entry.call_id or ""] = True
                continue
            message = data["message"]
            taken.messages.append(message)
            if message.get("role") == "assistant":
                taken.turn = entry.turn
                last_calls = list(message.get("tool_calls") or [])
                answered, started = set(), {}
                asked = {c["id"]: (c["function"]["name"], c["function"]["arguments"])
                         for c in last_calls}
            elif message.get("role") == "tool":
                call_id = message.get("tool_call_id", "")
                answered.add(call_id)
                if not data.get("error") and call_id in asked:
                    taken.finished_calls.append(asked[call_id])
                path, after = data.get("path"), data.get("after")
                if isinstance(path, str) and isinstance(after, str):
                    taken.writes.append((path, after))
                    taken.changed_files.append(path)
        for call in last_calls:
            call_id = call["id"]
            if call_id not in answered:
                function = call["function"]
                taken.pending.append(Pending(call_id, function["name"], function["arguments"],
                                             started=started.get(call_id, False)))
        return taken

    def message(self, turn: int, message: ChatMessage, **details: object) -> None:
        """Record a message added to the conversation (with a tool result: the tool's name,
        whether it failed, and for a file write its path and the file's text after it)."""
        data: dict[str, object] = {"message": message, **details}
        self.store.append_journal(self.record.id, JournalEntryKind.MESSAGE, turn=turn,
                                  call_id=message.get("tool_call_id"), data=data)

    def started(self, turn: int, call_id: str, name: str, arguments: str) -> None:
        """Record that a tool call is about to run."""
        self.store.append_journal(self.record.id, JournalEntryKind.TOOL_STARTED, turn=turn,
                                  call_id=call_id, data={"name": name, "arguments": arguments})

    def close(self, reason: str) -> None:
        self.store.close_journal(self.record.id, reason)


def replay_writes(workspace: Workspace, writes: list[tuple[str, str]]) -> list[str]:
    """Leave each file the attempt wrote with the text its writes and edits, in order, last left
    in it; the paths that had to be written (a fresh worktree: all of them)."""
    final: dict[str, str] = {}
    for path, after in writes:
        final[path] = after
    replayed: list[str] = []
    for path, after in final.items():
        try:
            current: str | None = workspace.read_file(path)
        except WorkspaceError:  # not there (yet): a fresh worktree
            current = None
        if current != after:
            workspace.write_file(path, after)
            replayed.append(path)
    return replayed
