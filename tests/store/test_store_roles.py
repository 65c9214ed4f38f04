"""The Store protocol is the union of its role-sized protocols, and the SQL store plays each role,
on SQLite and Postgres: code that asks for one role gets a store that has it."""

from __future__ import annotations

from typing import Any

from ruflo.store import (
    ApprovalStore,
    BoardStore,
    ChatStore,
    DriverStore,
    EventStore,
    HiveStore,
    JournalStore,
    LedgerStore,
    Lifecycle,
    MemoryStore,
    Store,
    TokenStore,
    WorkerStore,
)
from ruflo.store.sql import SqlStore

ROLES = (Lifecycle, HiveStore, BoardStore, EventStore, LedgerStore, ApprovalStore, ChatStore,
         TokenStore, MemoryStore, DriverStore, WorkerStore, JournalStore)


def members(protocol: Any) -> set[str]:
    return {name for name in vars(protocol) if not name.startswith("_")} | set(
        getattr(protocol, "__annotations__", {}))


def test_store_is_exactly_the_union_of_its_roles() -> None:
    union = set().union(*(members(role) for role in ROLES))
    assert set(Store.__mro__[1:len(ROLES) + 1]) == set(ROLES)
    assert members(Store) <= union | {"__doc__"}
    every: list[str] = [name for role in ROLES for name in members(role)]
    assert len(every) == len(set(every)), "a method belongs to one role only"


def test_the_sql_store_plays_every_role(store: SqlStore) -> None:
    for role in (*ROLES, Store):
        assert isinstance(store, role), role.__name__
