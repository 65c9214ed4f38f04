"""The ledger of metered calls and the running spend totals budgets read.
Depends on the core model and ruflo.store.core.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from ruflo.model import CostKind, LedgerEntry
from ruflo.store.base import Spend
from ruflo.store.core import SqlCore
from ruflo.store.rows import LEDGER_COLS, epoch, read_ledger


class SqlLedger(SqlCore):
    """The ledger of metered calls and the running spend totals budgets read, in SQL."""

    def add_ledger_entry(self, *, model: str, prompt_tokens: int, completion_tokens: int,
                         cost: float | None, cost_source: str, kind: CostKind = CostKind.WORK,
                         hive_id: str | None = None, agent_id: str | None = None,
                         task_id: str | None = None, request_id: str | None = None,
                         ts: datetime | None = None) -> LedgerEntry:
        at = time.time() if ts is None else epoch(ts)
        with self.transaction():
            cur = self._exec(
                "INSERT INTO ledger (ts, model, prompt_tokens, completion_tokens, cost, "
                "cost_source, kind, hive_id, agent_id, task_id, request_id) VALUES "
                f"(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {LEDGER_COLS}",
                (at, model, prompt_tokens, completion_tokens, cost, cost_source, str(kind),
                 hive_id, agent_id, task_id, request_id))
            entry = read_ledger(cur.fetchone())
            if agent_id is not None:
                self._exec("UPDATE agents SET spent_tokens = spent_tokens + ?, "
                           "spent_cost = spent_cost + ? WHERE id = ?",
                           (prompt_tokens + completion_tokens, cost or 0.0, agent_id))
            # The running totals budgets read; hive first, then agent, in every transaction,
            # so two writers never wait on each other's rows in opposite orders.
            for scope, scope_id in (("hive", hive_id), ("agent", agent_id)):
                if scope_id is not None:
                    self._exec(
                        "INSERT INTO spend_totals (scope, scope_id, tokens, cost, calls, "
                        "unknown_cost_calls) VALUES (?, ?, ?, ?, 1, ?) "
                        "ON CONFLICT (scope, scope_id) DO UPDATE SET "
                        "tokens = spend_totals.tokens + excluded.tokens, "
                        "cost = spend_totals.cost + excluded.cost, "
                        "calls = spend_totals.calls + 1, "
                        "unknown_cost_calls = spend_totals.unknown_cost_calls "
                        "+ excluded.unknown_cost_calls",
                        (scope, scope_id, prompt_tokens + completion_tokens, cost or 0.0,
                         int(cost is None)))
        return entry

    @staticmethod
    def _scope(hive_id: str | None, agent_id: str | None,
               kind: CostKind | None = None) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("hive_id", hive_id), ("agent_id", agent_id),
                              ("kind", None if kind is None else str(kind))):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    def ledger(self, *, hive_id: str | None = None, agent_id: str | None = None,
               limit: int | None = None) -> list[LedgerEntry]:
        where, params = self._scope(hive_id, agent_id)
        sql = f"SELECT {LEDGER_COLS} FROM ledger{where} ORDER BY id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [read_ledger(row) for row in self._read(sql, params)]

    def spend(self, *, hive_id: str | None = None, agent_id: str | None = None,
              kind: CostKind | None = None) -> Spend:
        if kind is None and (hive_id is None) != (agent_id is None):
            # One hive's or one agent's whole spend (what budgets check before every call):
            # its running total, one row, however long its ledger.
            scope, scope_id = ("hive", hive_id) if hive_id is not None else ("agent", agent_id)
            total = self._one("SELECT tokens, cost, calls, unknown_cost_calls FROM spend_totals "
                              "WHERE scope = ? AND scope_id = ?", (scope, scope_id))
            if total is None:
                return Spend()
            return Spend(tokens=int(total[0]), cost=float(total[1]), calls=int(total[2]),
                         unknown_cost_calls=int(total[3]))
        where, params = self._scope(hive_id, agent_id, kind)
        row = self._one("SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0), "
                        "COALESCE(SUM(cost), 0), COUNT(*), "
                        f"COALESCE(SUM(CASE WHEN cost IS NULL THEN 1 ELSE 0 END), 0) FROM ledger"
                        f"{where}", params)
        return Spend(tokens=int(row[0]), cost=float(row[1]), calls=int(row[2]),
                     unknown_cost_calls=int(row[3]))
