"""Attempt journals in the store, on SQLite and Postgres: entries kept in order, one open journal
per task found, a closed or unknown journal refuses entries (nothing recorded), finishing the
task closes its journal."""

from __future__ import annotations

from typing import Any

import pytest

from ruflo.model import (
    Agent,
    AttemptJournal,
    Hive,
    JournalEntryKind,
    Mode,
    Task,
    TaskState,
    utcnow,
)


def journal(task: Task, number: int) -> AttemptJournal:
    return AttemptJournal(id=f"j{number}", hive_id=task.hive_id, task_id=task.id,
                          agent_id="sj-a", task_hash="h",
                          opening={"messages": [{"role": "system", "content": "hi ✓"}]},
                          opened_at=utcnow())


def board(store: Any) -> Task:
    hive = Hive(id="sj", name="journal", mode=Mode.SWARM, objective="o")
    task = Task(id="sj-t", hive_id=hive.id, title="t")
    store.create_hive(hive, agents=[Agent(id="sj-a", hive_id=hive.id, name="ada")],
                      tasks=[task])
    return task


def test_journal_entries_in_order_and_closing(store: Any) -> None:
    task = board(store)
    store.open_journal(journal(task, 1))
    assert store.append_journal("j1", JournalEntryKind.MESSAGE, turn=1, call_id=None,
                                data={"message": {"role": "assistant", "content": "a\x00b"}}) == 1
    assert store.append_journal("j1", JournalEntryKind.TOOL_STARTED, turn=1, call_id="c1",
                                data={"name": "run_command", "arguments": "{}"}) == 2
    found = store.open_journal_of(task.id)
    assert found is not None
    assert [e.kind for e in found.entries] == [JournalEntryKind.MESSAGE,
                                               JournalEntryKind.TOOL_STARTED]
    assert found.entries[0].data["message"]["content"] == "a\x00b"
    assert found.entries[1].call_id == "c1"
    assert found.opening["messages"][0]["content"] == "hi ✓"

    assert store.close_journal("j1", "ended: complete") is True
    assert store.close_journal("j1", "again") is False
    assert store.open_journal_of(task.id) is None
    with pytest.raises(ValueError, match="not open; nothing was recorded"):
        store.append_journal("j1", JournalEntryKind.MESSAGE, turn=2, call_id=None, data={})
    with pytest.raises(ValueError, match="not open"):
        store.append_journal("nope", JournalEntryKind.MESSAGE, turn=1, call_id=None, data={})
    (closed,) = store.task_journals(task.id)
    assert closed.close_reason == "ended: complete"
    assert len(closed.entries) == 2


def test_finishing_the_task_closes_its_journal(store: Any) -> None:
    task = board(store)
    store.open_journal(journal(task, 2))
    claimed = store.claim_task(task.hive_id, "sj-a", lease_seconds=60, task_id=task.id)
    assert claimed is not None
    store.finish_task(task.id, "sj-a", state=TaskState.DONE, result="done elsewhere")
    assert store.open_journal_of(task.id) is None
    assert store.task_journals(task.id)[0].close_reason == "the task is done"
