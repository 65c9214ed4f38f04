"""Approvals: requests a person decides once (approve, reject, cancel).
Depends on the core model and ruflo.store.core.
"""

from __future__ import annotations

import json
import time

from ruflo.errors import Conflict, NotFound
from ruflo.event_kinds import EventKind
from ruflo.model import Approval, ApprovalStatus
from ruflo.store.core import SqlCore
from ruflo.store.rows import APPROVAL_COLS, dumps, epoch, read_approval, refuse_nul


class SqlApprovals(SqlCore):
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
                current = self.get_approval(approval_id)
                raise Conflict(f"approval {approval_id} was already {current.status} by "
                               f"{current.decided_by}; nothing was changed")
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
