"""The store: the only road to disk or database. `open_store()` picks SQLite or Postgres from
the settings and refuses, with one clear line, a store it cannot reach or cannot trust.

Depends on the core model and config; SQLAlchemy, the drivers and Alembic load on first open.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ruflo.store.base import (
    ApprovalStore,
    BoardStore,
    ChatStore,
    DriverStore,
    EventListener,
    EventStore,
    HiveStore,
    JournalStore,
    LedgerStore,
    Lifecycle,
    Listening,
    MemoryStore,
    Spend,
    Store,
    TokenStore,
    Wake,
    WorkerStore,
)

if TYPE_CHECKING:
    from ruflo.config import Settings
    from ruflo.store.sql import SqlStore

__all__ = ["ApprovalStore", "BoardStore", "ChatStore", "DriverStore", "EventListener", "EventStore",
           "HiveStore", "JournalStore", "LedgerStore", "Lifecycle", "Listening", "MemoryStore", "Spend", "Store",
           "TokenStore", "Wake", "WorkerStore", "open_store"]


def open_store(settings_or_url: Settings | str | None = None) -> SqlStore:
    """Open (creating or migrating when needed) the store named by the settings or URL.

    A string is a database URL (sqlite:///PATH, postgresql://...). None loads the settings.
    Raises StoreUnreachable (Postgres can't be reached; no fallback to SQLite) or StoreCorrupt
    (the file is not a readable ruflo database; it is left untouched).
    """
    from ruflo.store.sql import SqlStore

    if isinstance(settings_or_url, str):
        return SqlStore(settings_or_url)
    if settings_or_url is None:
        from ruflo.config import load_settings

        settings_or_url = load_settings()
    return SqlStore(settings_or_url.store_url,
                    sqlite_synchronous=settings_or_url.sqlite_synchronous)
