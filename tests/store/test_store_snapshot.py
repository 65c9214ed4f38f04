"""The schema snapshot a fresh SQLite store is made from equals what the migrations build, so the
two can never drift; and a store made from it works and is recognised on the next open."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ruflo.model import Hive, MemoryEntry, Mode, new_id, utcnow
from ruflo.store import open_store, resnapshot, snapshot
from ruflo.store.opening import (
    HEAD_REVISION,
    check_sqlite_file,
    run_migrations,
    sqlite_connect,
    sqlite_engine,
)


def dump(conn: sqlite3.Connection) -> list[str]:
    return list(conn.iterdump())


def master(conn: sqlite3.Connection) -> list[tuple[str, str, str, str | None]]:
    return sorted(conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall(),
                  key=lambda row: (row[0], row[1]))


def test_snapshot_equals_what_the_migrations_build(tmp_path: Path) -> None:
    migrated = sqlite_connect(tmp_path / "migrated.db", "normal")
    migrated.execute("PRAGMA journal_mode = WAL")
    run_migrations(sqlite_engine(migrated), dialect="sqlite")
    made = sqlite_connect(tmp_path / "snapshot.db", "normal")
    made.execute("PRAGMA journal_mode = WAL")
    snapshot.create(made)
    assert snapshot.REVISION == HEAD_REVISION, (
        "a migration was added: regenerate with `python -m ruflo.store.resnapshot`")
    assert master(made) == master(migrated)
    assert dump(made) == dump(migrated)
    assert snapshot.schema_statements(migrated) == snapshot.SQLITE_SCHEMA, (
        "the snapshot is stale: regenerate with `python -m ruflo.store.resnapshot`")
    regenerated = resnapshot.module_text(HEAD_REVISION, snapshot.schema_statements(migrated))
    assert regenerated == Path(snapshot.__file__).read_text(encoding="utf-8")


def test_a_fresh_store_is_made_from_the_snapshot_and_works(tmp_path: Path) -> None:
    path = tmp_path / "data" / "ruflo.db"
    store = open_store(f"sqlite:///{path}")
    try:
        assert store.created
        hive = store.create_hive(Hive(id=new_id(), name="h", mode=Mode.SWARM, objective="o"))
        assert store.get_hive(hive.id).name == "h"
        now = utcnow()
        store.memory_put(MemoryEntry(namespace="n", key="k", content="bees make honey",
                                     created_at=now, updated_at=now))
        assert [e.key for e in store.memory_search("honey", namespace="n")] == ["k"]
    finally:
        store.close()
    assert check_sqlite_file(path) == HEAD_REVISION
    reopened = open_store(f"sqlite:///{path}")
    try:
        assert not reopened.created
        assert reopened.get_hive(hive.id).objective == "o"
    finally:
        reopened.close()
    leftovers = [p.name for p in path.parent.iterdir() if p.name.startswith(".ruflo.db")]
    assert leftovers == []


def test_a_failing_statement_leaves_no_half_made_schema(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    conn = sqlite_connect(tmp_path / "broken.db", "normal")
    monkeypatch.setattr(snapshot, "SQLITE_SCHEMA",
                        (*snapshot.SQLITE_SCHEMA[:3], "CREATE TABLE broken (", "SELECT 1"))
    with pytest.raises(sqlite3.OperationalError):
        snapshot.create(conn)
    assert conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone() == (0,)
    assert not conn.in_transaction
