"""Attempt journals: what each attempt of the built-in agent began with and every message since,
so a process taking the task up again continues it; closing one cancels the approvals its attempt
left pending. Depends on the core model, ruflo.store.core and ruflo.store.approvals.
"""

from __future__ import annotations

import json
import time
from typing import Any

from ruflo.model import JSON, AttemptJournal, JournalEntry, JournalEntryKind
from ruflo.store.approvals import SqlApprovalEnds
from ruflo.store.rows import dt, dt_req, dumps, epoch, refuse_nul

_JOURNAL_COLS = ("id, hive_id, task_id, agent_id, task_hash, opening, opened_at, closed_at, "
                 "close_reason")


class SqlJournal(SqlApprovalEnds):
    """Attempt journals, in SQL."""

    def open_journal(self, journal: AttemptJournal) -> AttemptJournal:
        refuse_nul("journal", {"id": journal.id, "task_id": journal.task_id,
                               "agent_id": journal.agent_id})
        with self.transaction():
            self._exec(f"INSERT INTO attempt_journals ({_JOURNAL_COLS}) VALUES "
                       "(?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
                       (journal.id, journal.hive_id, journal.task_id, journal.agent_id,
                        journal.task_hash, dumps(journal.opening), epoch(journal.opened_at)))
        return journal

    def open_journal_of(self, task_id: str) -> AttemptJournal | None:
        row = self._one(f"SELECT {_JOURNAL_COLS} FROM attempt_journals WHERE task_id = ? AND "
                        "closed_at IS NULL ORDER BY opened_at DESC LIMIT 1", (task_id,))
        return None if row is None else self._with_entries(row)

    def task_journals(self, task_id: str) -> list[AttemptJournal]:
        return [self._with_entries(row) for row in self._read(
            f"SELECT {_JOURNAL_COLS} FROM attempt_journals WHERE task_id = ? "
            "ORDER BY opened_at", (task_id,))]

    def append_journal(self, journal_id: str, kind: JournalEntryKind, *, turn: int,
                       call_id: str | None, data: JSON) -> int:
        # One attempt writes its journal from one place at a time, so MAX + 1 is not raced;
        # the primary key would refuse a second writer rather than interleave it.
        with self.transaction():
            row = self._one("SELECT closed_at, (SELECT COALESCE(MAX(seq), 0) + 1 FROM "
                            "attempt_entries WHERE journal_id = ?) FROM attempt_journals "
                            "WHERE id = ?", (journal_id, journal_id))
            if row is None or row[0] is not None:
                raise ValueError(f"journal {journal_id!r} is not open; nothing was recorded")
            seq = int(row[1])
            self._exec("INSERT INTO attempt_entries (journal_id, seq, kind, turn, call_id, "
                       "data, ts) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (journal_id, seq, kind.value, turn, call_id, dumps(data), time.time()))
        return seq

    def close_journal(self, journal_id: str, reason: str) -> bool:
        now = time.time()
        with self.transaction():
            row = self._exec("UPDATE attempt_journals SET closed_at = ?, close_reason = ? "
                             "WHERE id = ? AND closed_at IS NULL RETURNING hive_id",
                             (now, reason, journal_id)).fetchone()
            if row is None:
                return False
            # The attempt will not be taken up again: nothing waits on what it asked.
            self._cancel_approvals(row[0], f"its attempt's journal was closed: {reason}",
                                   journal_id=journal_id, now=now)
            return True

    def _with_entries(self, row: Any) -> AttemptJournal:
        entries = tuple(
            JournalEntry(seq=int(seq), kind=JournalEntryKind(kind), turn=int(turn),
                         call_id=call_id, data=json.loads(data))
            for seq, kind, turn, call_id, data in self._read(
                "SELECT seq, kind, turn, call_id, data FROM attempt_entries "
                "WHERE journal_id = ? ORDER BY seq", (row[0],)))
        return AttemptJournal(id=row[0], hive_id=row[1], task_id=row[2], agent_id=row[3],
                              task_hash=row[4], opening=json.loads(row[5]),
                              opened_at=dt_req(row[6]), closed_at=dt(row[7]),
                              close_reason=row[8], entries=entries)
