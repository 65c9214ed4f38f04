"""The board: tasks, their dependencies, claims and leases. The claim and finish path is the
store's hottest: one statement each, plus the event (a finish also cancels the task's pending
approvals). Depends on the core model, ruflo.store.core and ruflo.store.approvals.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from ruflo.errors import Conflict, NotFound, PolicyError
from ruflo.event_kinds import EventKind
from ruflo.model import JSON, Task, TaskOutline, TaskState, find_cycle
from ruflo.store.approvals import SqlApprovalEnds
from ruflo.store.base import iter_batches
from ruflo.store.rows import (
    OUTLINE_COLS,
    TASK_COLS,
    dt,
    dumps,
    epoch,
    outline_reader,
    read_task,
    refuse_nul,
)

_FINISHED = ", ".join(f"'{state}'" for state in TaskState if state.terminal)


class SqlBoard(SqlApprovalEnds):
    """The board, in SQL."""

    def _insert_tasks(self, hive_id: str, tasks: Sequence[Task],
                      agent_id: str | None) -> list[Task]:
        for task in tasks:
            # One look over the task's text first: boards are posted by the thousand.
            if "\x00" in "".join((task.id, task.title, task.description, task.parent_id or "",
                                   task.verify or "", task.result or "", task.assignee or "",
                                   task.blocked_on or "", *task.skills, *task.depends_on)):
                refuse_nul("task", {"id": task.id, "title": task.title,
                                     "description": task.description,
                                     "parent_id": task.parent_id, "skills": task.skills,
                                     "depends_on": task.depends_on, "verify": task.verify,
                                     "result": task.result, "assignee": task.assignee,
                                     "blocked_on": task.blocked_on})
        batch = {task.id for task in tasks}
        cycle = find_cycle({task.id: [dep for dep in task.depends_on if dep in batch]
                            for task in tasks})
        if cycle:
            titles = {task.id: task.title for task in tasks}
            raise PolicyError("tasks would wait for each other forever: dependency cycle "
                              + " → ".join(repr(titles[task_id]) for task_id in cycle)
                              + "; nothing was posted")
        wanted = sorted({dep for task in tasks for dep in task.depends_on} - batch)
        known: dict[str, str] = {}
        for chunk in iter_batches(wanted, 500):
            for dep_id, state in self._read(
                    f"SELECT id, state FROM tasks WHERE hive_id = ? AND id IN "
                    f"({', '.join('?' * len(chunk))})", [hive_id, *chunk]):
                known[dep_id] = state
        missing = [dep for dep in wanted if dep not in known]
        if missing:
            raise PolicyError(f"tasks depend on unknown tasks {', '.join(missing[:5])} in hive "
                              f"{hive_id}; nothing was posted")
        base = time.time_ns() // 1000
        now = time.time()
        stored: list[Task] = []
        rows: list[tuple[Any, ...]] = []
        deps: list[tuple[str, str]] = []
        for i, task in enumerate(tasks):
            if task.hive_id != hive_id:
                task = replace(task, hive_id=hive_id)
            unique_deps = tuple(dict.fromkeys(task.depends_on))
            pending = sum(1 for dep in unique_deps if known.get(dep) != "done")
            rows.append((task.id, hive_id, task.title, task.description, task.parent_id,
                         dumps(list(task.skills)), task.priority, task.effort,
                         dumps(list(unique_deps)), str(task.state), task.assignee,
                         epoch(task.lease_until), task.attempts, 0.0, task.verify,
                         task.result, task.verified, task.blocked_on, task.depth,
                         epoch(task.created_at) or now, epoch(task.updated_at) or now,
                         epoch(task.claimed_at), epoch(task.finished_at), pending, base + i))
            deps += [(task.id, dep) for dep in unique_deps]
            stored.append(task)
        self._many(f"INSERT INTO tasks ({TASK_COLS}, pending_deps, ord) "
                   f"VALUES ({', '.join('?' * 25)})", rows)
        self._many("INSERT INTO task_deps (task_id, depends_on) VALUES (?, ?)", deps)
        self._append(hive_id, [(EventKind.TASK_POSTED, agent_id, task.id,
                                {"title": task.title, "priority": task.priority,
                                 "parent_id": task.parent_id,
                                 "depends_on": list(task.depends_on)})
                               for task in stored])
        return stored

    def post_tasks(self, hive_id: str, tasks: Sequence[Task], *,
                   agent_id: str | None = None) -> list[Task]:
        with self.transaction():
            return self._insert_tasks(hive_id, tasks, agent_id)

    def get_task(self, task_id: str) -> Task:
        row = self._one(f"SELECT {TASK_COLS} FROM tasks WHERE id = ?", (task_id,))
        if row is None:
            raise NotFound(f"no task {task_id!r}")
        return read_task(row)

    def list_tasks(self, hive_id: str, *, states: Sequence[TaskState] | None = None,
                   assignee: str | None = None, limit: int | None = None,
                   offset: int = 0) -> list[Task]:
        sql = f"SELECT {TASK_COLS} FROM tasks WHERE hive_id = ?"
        params: list[Any] = [hive_id]
        if states:
            sql += f" AND state IN ({', '.join('?' * len(states))})"
            params += [str(state) for state in states]
        if assignee is not None:
            sql += " AND assignee = ?"
            params.append(assignee)
        sql += " ORDER BY ord, id"
        if limit is not None or offset:
            sql += " LIMIT ? OFFSET ?"
            params += [limit if limit is not None else 2**62, offset]
        return [read_task(row) for row in self._read(sql, params)]

    def list_task_rows(self, hive_id: str, *, states: Sequence[TaskState] | None = None,
                       limit: int, offset: int = 0) -> list[Sequence[Any]]:
        """`list_tasks` as raw rows, one value per name of TASK_FIELDS (timestamps as epoch
        seconds, lists as JSON text): a page of the board can go to JSON without building a
        Task and four datetimes per row."""
        sql = f"SELECT {TASK_COLS} FROM tasks WHERE hive_id = ?"
        params: list[Any] = [hive_id]
        if states:
            sql += f" AND state IN ({', '.join('?' * len(states))})"
            params += [str(state) for state in states]
        return self._read(sql + " ORDER BY ord, id LIMIT ? OFFSET ?", [*params, limit, offset])

    def policy_board(self, hive_id: str) -> list[TaskOutline]:
        read = outline_reader()
        board = [read(row) for row in self._read(
            f"SELECT {OUTLINE_COLS} FROM tasks WHERE hive_id = ? AND state NOT IN "
            f"({_FINISHED}) ORDER BY ord, id", (hive_id,))]
        unfinished = {task.id for task in board}
        # Finished dependencies: when each finished, and whether it succeeded. Their row may
        # have changed since the first read; then a later event rebuilds the policy anyway.
        wanted = sorted({dep for task in board for dep in task.depends_on} - unfinished)
        for chunk in iter_batches(wanted, 500):
            board += [read(row) for row in self._read(
                f"SELECT {OUTLINE_COLS} FROM tasks WHERE hive_id = ? AND state IN ({_FINISHED}) "
                f"AND id IN ({', '.join('?' * len(chunk))}) ORDER BY ord, id", [hive_id, *chunk])]
        return board

    def count_tasks(self, hive_id: str) -> dict[TaskState, int]:
        counts = dict.fromkeys(TaskState, 0)
        for state, count in self._read(
                "SELECT state, COUNT(*) FROM tasks WHERE hive_id = ? GROUP BY state", (hive_id,)):
            counts[TaskState(state)] = int(count)
        return counts

    def claim_task(self, hive_id: str, agent_id: str, *, lease_seconds: float,
                   task_id: str | None = None, alternatives: Sequence[str] = (),
                   now: datetime | None = None) -> Task | None:
        at = time.time() if now is None else epoch(now)
        assert at is not None
        lease = at + lease_seconds
        if task_id is None and alternatives:
            raise ValueError("alternatives go with a task_id")
        with self.transaction():
            cur = self._state().cur
            if task_id is None:
                cur.execute(self._sql.claim_next, (agent_id, lease, at, at, hive_id))
                row = cur.fetchone()
            elif alternatives and self._sql.postgres:
                wanted = [task_id, *alternatives]
                cur.execute(self._sql.claim_first, (agent_id, lease, at, at, wanted, hive_id,
                                                    wanted))
                row = cur.fetchone()
            else:
                for candidate in (task_id, *alternatives):
                    cur.execute(self._sql.claim_one, (agent_id, lease, at, at, candidate,
                                                      hive_id))
                    row = cur.fetchone()
                    if row is not None:
                        break
            if row is None:
                return None
            task = read_task(row)
            self._append(hive_id, [(EventKind.TASK_CLAIMED, agent_id, task.id,
                                    {"lease_until": lease, "attempt": task.attempts})], at)
        return task

    def renew_lease(self, task_id: str, agent_id: str, *, lease_seconds: float,
                    now: datetime | None = None) -> bool:
        at = time.time() if now is None else epoch(now)
        assert at is not None
        with self.transaction():
            cur = self._exec("UPDATE tasks SET lease_until = ? WHERE id = ? AND "
                             "state = 'claimed' AND assignee = ?",
                             (at + lease_seconds, task_id, agent_id))
            return bool(cur.rowcount == 1)

    def finish_task(self, task_id: str, agent_id: str | None, *, state: TaskState,
                    result: str | None = None, verified: bool | None = None,
                    data: JSON | None = None) -> Task:
        state = TaskState(state)
        if not state.terminal:
            raise ValueError(f"finish_task needs done, failed or cancelled, not {state}")
        if agent_id is None and state is not TaskState.CANCELLED:
            raise ValueError("only cancelling works without the agent holding the claim")
        refuse_nul("task", {"result": result})
        now = time.time()
        with self.transaction():
            sets = ("UPDATE tasks SET state = ?, result = COALESCE(?, result), "
                    "verified = COALESCE(?, verified), finished_at = ?, updated_at = ?, "
                    "lease_until = NULL WHERE id = ? AND ")
            params: list[Any] = [str(state), result, verified, now, now, task_id]
            if agent_id is None:
                sets += "state NOT IN ('done', 'failed', 'cancelled')"
            else:
                sets += "state = 'claimed' AND assignee = ?"
                params.append(agent_id)
            cur = self._exec(f"{sets} RETURNING {TASK_COLS}", params)
            row = cur.fetchone()
            if row is None:
                current = self.get_task(task_id)
                holder = current.assignee or "nobody"
                raise Conflict(f"task {task_id} is {current.state} (held by {holder}), so "
                               f"{agent_id or 'ruflo'} cannot finish it; nothing was changed")
            task = read_task(row)
            if state is TaskState.DONE:
                self._exec("UPDATE tasks SET pending_deps = pending_deps - 1 WHERE id IN "
                           "(SELECT task_id FROM task_deps WHERE depends_on = ?)", (task_id,))
            # An attempt left open by a process that died will not be taken up again.
            self._exec("UPDATE attempt_journals SET closed_at = ?, close_reason = ? WHERE "
                       "task_id = ? AND closed_at IS NULL", (now, f"the task is {state}", task_id))
            event: JSON = {"verified": verified}
            if result is not None:
                event["result"] = result[:500]
            if data:
                event.update(data)
            self._append(task.hive_id, [(f"task_{state}", agent_id, task_id, event)], now)
            # A decision about this task could no longer take effect.
            self._cancel_approvals(task.hive_id, f"the task is {state}", task_id=task_id, now=now)
        return task

    def release_task(self, task_id: str, agent_id: str, *, reason: str) -> Task:
        with self.transaction():
            cur = self._exec(f"UPDATE tasks SET state = 'open', assignee = NULL, "
                             f"lease_until = NULL, updated_at = ? WHERE id = ? AND "
                             f"state = 'claimed' AND assignee = ? RETURNING {TASK_COLS}",
                             (time.time(), task_id, agent_id))
            row = cur.fetchone()
            if row is None:
                current = self.get_task(task_id)
                raise Conflict(f"task {task_id} is {current.state} and not held by {agent_id}; "
                               "nothing was changed")
            task = read_task(row)
            self._append(task.hive_id, [(EventKind.TASK_RELEASED, agent_id, task_id,
                                         {"reason": reason})])
        return task

    def update_task(self, task_id: str, **fields: Any) -> Task:
        with self.transaction():
            before = self.get_task(task_id) if "state" in fields else None
            task: Task = self._update_row("tasks", "task", TASK_COLS, read_task, task_id, fields)
            if before is not None and (before.state is TaskState.DONE) != (
                    task.state is TaskState.DONE):
                step = -1 if task.state is TaskState.DONE else 1
                self._exec("UPDATE tasks SET pending_deps = pending_deps + ? WHERE id IN "
                           "(SELECT task_id FROM task_deps WHERE depends_on = ?)",
                           (step, task_id))
            shown = {k: (str(v) if isinstance(v, datetime | TaskState) else v)
                     for k, v in fields.items()
                     if isinstance(v, str | int | float | bool | TaskState | datetime) or v is None}
            self._append(task.hive_id, [(EventKind.TASK_UPDATED, None, task_id, {"fields": shown})])
        return task

    def expire_leases(self, *, hive_id: str | None = None,
                      now: datetime | None = None) -> list[Task]:
        at = time.time() if now is None else epoch(now)
        with self.transaction():
            hive_clause = "AND hive_id = ?" if hive_id else ""
            params: list[Any] = [at] + ([hive_id] if hive_id else [])
            rows = self._exec(self._sql.expiring.replace("{hive}", hive_clause),
                              params).fetchall()
            if not rows:
                return []
            holders = dict(rows)
            expired: list[Task] = []
            for chunk in iter_batches(list(holders), 500):
                cur = self._exec(
                    f"UPDATE tasks SET state = 'open', assignee = NULL, lease_until = NULL, "
                    f"updated_at = ? WHERE state = 'claimed' AND lease_until < ? AND id IN "
                    f"({', '.join('?' * len(chunk))}) RETURNING {TASK_COLS}",
                    [at, at, *chunk])
                expired += [read_task(row) for row in cur.fetchall()]
            by_hive: dict[str, list[Task]] = {}
            for task in expired:
                by_hive.setdefault(task.hive_id, []).append(task)
            for hive, tasks in by_hive.items():
                self._append(hive, [(EventKind.LEASE_EXPIRED, holders[task.id], task.id,
                                     {"agent_id": holders[task.id]}) for task in tasks], at)
        return expired

    def next_lease_expiry(self, hive_id: str | None = None) -> datetime | None:
        if hive_id is None:
            row = self._one("SELECT MIN(lease_until) FROM tasks WHERE state = 'claimed'")
        else:
            row = self._one("SELECT MIN(lease_until) FROM tasks WHERE state = 'claimed' AND "
                            "hive_id = ?", (hive_id,))
        return dt(row[0]) if row else None
