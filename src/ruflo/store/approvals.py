"""Approvals: requests a person decides once (approve, reject, cancel), and the cancelling of
those that can no longer take effect (their task, attempt journal or hive ended), which the board,
the journals and the hives call in the same transaction as the end.
Depends on the core model and ruflo.store.core.
"""

from __future__ import annotations

import json
import time

from ruflo.errors import Conflict, NotFound
from ruflo.event_kinds import EventKind
from ruflo.model import CANCELLED_BY, JSON, Approval, ApprovalStatus
from ruflo.store.core import SqlCore
from ruflo.store.rows import APPROVAL_COLS, dumps, epoch, read_approval, refuse_nul


class SqlApprovalEnds(SqlCore):
    """Cancels pending approvals whose task, attempt journal or hive ended."""

    def _cancel_approvals(self, hive_id: str, why: str, *, task_id: str | None = None,
                          journal_id: str | None = None, now: float | None = None) -> None:
        """Cancel the hive's pending approvals (only those about `task_id`, or asked by the
        attempt of `journal_id`, when given), each with an `approval_cancelled` event saying
        `why`. Runs inside the caller's transaction."""
        at = time.time() if now is None else now
        events: list[tuple[str, str | None, str | None, JSON]] = []
        for approval_id, agent_id, kind, raw in self._read(
                "SELECT id, agent_id, kind, data FROM approvals WHERE hive_id = ? AND "
                "status = 'pending' ORDER BY created_at, id", (hive_id,)):
            data = json.loads(raw)
            if (task_id is not None and data.get("task_id") != task_id) or \
                    (journal_id is not None and data.get("journal_id") != journal_id):
                continue
            cur = self._exec("UPDATE approvals SET status = 'cancelled', decided_by = ?, "
                             "decided_at = ?, data = ? WHERE id = ? AND status = 'pending'",
                             (CANCELLED_BY, at, dumps({**data, "reason": why}), approval_id))
            if cur.rowcount:
                about = data.get("task_id")
                events.append((EventKind.APPROVAL_CANCELLED, agent_id,
                               about if isinstance(about, str) else None,
                               {"approval_id": approval_id, "kind": kind, "reason": why}))
        self._append(hive_id, events, at)


class SqlApprovals(SqlApprovalEnds):
    """Approvals, in SQL."""

    def create_approval(self, approval: Approval) -> Approval:
        refuse_nul("approval", {"subject": approval.subject, "agent_id": approval.agent_id})
        with self.transaction():
            self._exec(f"INSERT INTO approvals ({APPROVAL_COLS}) VALUES "
                       f"(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (approval.id, approval.hive_id, str(approval.kind), approval.subject,
                        str(approval.status), approval.agent_id, dumps(approval.data),
                        approval.decided_by, epoch(approval.created_at),
                        epoch(approval.decided_at)))
            self._append(approval.hive_id, [(EventKind.APPROVAL_REQUESTED, approval.agent_id, None,
                                             {"approval_id": approval.id,
                                              "kind": str(approval.kind),
                                              "subject": approval.subject})])
        return approval

    def decide_approval(self, approval_id: str, status: ApprovalStatus, *,
                        decided_by: str, reason: str | None = None) -> Approval:
        status = ApprovalStatus(status)
        if status is ApprovalStatus.PENDING:
            raise ValueError("a decision must approve, reject or cancel")
        refuse_nul("approval", {"decided_by": decided_by, "reason": reason or ""})
        with self.transaction():
            if reason:
                # The reason goes with the approval's data, for the agent that waits on it.
                row = self._one("SELECT data FROM approvals WHERE id = ? AND status = 'pending'",
                                (approval_id,))
                if row is not None:
                    data = {**json.loads(row[0]), "reason": reason}
                    self._exec("UPDATE approvals SET data = ? WHERE id = ?",
                               (dumps(data), approval_id))
            cur = self._exec(f"UPDATE approvals SET status = ?, decided_by = ?, decided_at = ? "
                             f"WHERE id = ? AND status = 'pending' RETURNING {APPROVAL_COLS}",
                             (str(status), decided_by, time.time(), approval_id))
            row = cur.fetchone()
            if row is None:
                raise Conflict(self.get_approval(approval_id).settled_text())
            approval = read_approval(row)
            self._append(approval.hive_id, [(EventKind.APPROVAL_DECIDED, approval.agent_id, None,
                                             {"approval_id": approval_id,
                                              "status": str(status),
                                              "decided_by": decided_by,
                                              **({"reason": reason} if reason else {})})])
        return approval

    def get_approval(self, approval_id: str) -> Approval:
        row = self._one(f"SELECT {APPROVAL_COLS} FROM approvals WHERE id = ?", (approval_id,))
        if row is None:
            raise NotFound(f"no approval {approval_id!r}")
        return read_approval(row)

    def list_approvals(self, *, hive_id: str | None = None,
                       status: ApprovalStatus | None = None) -> list[Approval]:
        clauses, params = [], []
        if hive_id is not None:
            clauses.append("hive_id = ?")
            params.append(hive_id)
        if status is not None:
            clauses.append("status = ?")
            params.append(str(status))
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        return [read_approval(row) for row in self._read(
            f"SELECT {APPROVAL_COLS} FROM approvals{where} ORDER BY created_at, id", params)]
