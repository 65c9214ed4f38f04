"""The Store on SQLite and Postgres: `SqlStore`, one object composed of the store of each kind of
data (one module each under ruflo.store), all sharing one core of connections and transactions
(ruflo.store.core). Depends on those modules only.

Each part is a mixin over the same core, so a call is one method lookup away from its statement:
the claim and the event append cost exactly what they cost before the store was split.
"""

from __future__ import annotations

from ruflo.store.approvals import SqlApprovals
from ruflo.store.chat import SqlChat
from ruflo.store.drivers import SqlDrivers
from ruflo.store.events import SqlEvents
from ruflo.store.hives import SqlHives
from ruflo.store.journal import SqlJournal
from ruflo.store.ledger import SqlLedger
from ruflo.store.memory import SqlMemory
from ruflo.store.rows import TASK_FIELDS
from ruflo.store.tokens import SqlTokens
from ruflo.store.workers import SqlWorkers

__all__ = ["TASK_FIELDS", "SqlStore"]


class SqlStore(SqlHives, SqlEvents, SqlLedger, SqlApprovals, SqlChat, SqlTokens, SqlMemory,
               SqlDrivers, SqlWorkers, SqlJournal):
    """The Store protocol on SQLite (embedded, WAL) or Postgres (psycopg 3). Open it with
    `ruflo.store.open_store`; `SqlStore(url)` works too."""

    def integrity_check(self) -> str:
        """"ok", or what SQLite's quick_check found (Postgres: "ok" once it answers)."""
        if self._sql.postgres:
            self.ping()
            return "ok"
        rows = self._read("PRAGMA quick_check")
        return "; ".join(str(row[0]) for row in rows[:5])
