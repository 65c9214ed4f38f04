"""Opening a store: no silent fallback to SQLite, no overwrite of a file that isn't ours."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import pytest
from store_helpers import make_hive, store_at_revision

from ruflo.errors import StoreCorrupt, StoreUnreachable
from ruflo.store import open_store
from ruflo.store.opening import HEAD_REVISION, migrations_head


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_head_revision_matches_the_migrations() -> None:
    assert migrations_head() == HEAD_REVISION


def test_unreachable_database_url_names_host_and_cause(tmp_path: Path) -> None:
    with pytest.raises(StoreUnreachable) as caught:
        open_store("postgresql://postgres@127.0.0.1:1/test")
    message = str(caught.value)
    assert "127.0.0.1:1/test" in message
    assert "refused" in message.lower()
    assert "\n" not in message
    assert "did not fall back to SQLite" in message


@pytest.mark.postgres
def test_wrong_database_name_names_it(pg_schema_url: str) -> None:
    with pytest.raises(StoreUnreachable, match='database "no_such_db_ruflo" does not exist'):
        open_store("postgres://postgres@127.0.0.1:5432/no_such_db_ruflo")


def test_database_url_wins_over_sqlite_even_when_down(tmp_path: Path) -> None:
    from ruflo.config import load_settings

    settings = load_settings({"DATABASE_URL": "postgresql://u:secret@127.0.0.1:1/db",
                              "RUFLO_DATA_DIR": str(tmp_path)})
    with pytest.raises(StoreUnreachable) as caught:
        open_store(settings)
    assert "secret" not in str(caught.value)
    assert list(tmp_path.iterdir()) == [], "no SQLite file was created as a fallback"


@pytest.mark.parametrize("content", [
    pytest.param(os.urandom(8192), id="random-bytes"),
    pytest.param(b"", id="empty-file"),
    pytest.param(b'{"rvf_version": "2.0"}', id="json"),
])
def test_a_file_that_is_not_a_database_is_refused_and_untouched(tmp_path: Path,
                                                                content: bytes) -> None:
    path = tmp_path / "ruflo.db"
    path.write_bytes(content)
    before = digest(path)
    with pytest.raises(StoreCorrupt, match="left the file untouched"):
        open_store(f"sqlite:///{path}")
    assert digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ruflo.db"]


def test_another_apps_sqlite_database_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "ruflo.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO photos (name) VALUES ('cat.jpg')")
    conn.commit()
    conn.close()
    before = digest(path)
    with pytest.raises(StoreCorrupt, match=r"not ruflo's.*photos"):
        open_store(f"sqlite:///{path}")
    assert digest(path) == before


def test_a_truncated_store_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "ruflo.db"
    store = open_store(f"sqlite:///{path}")
    hive = make_hive(store, tasks=200)
    store.close()
    conn = sqlite3.connect(path)  # fold the WAL in, as a clean shutdown leaves it
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    assert open_store(f"sqlite:///{path}").last_seq(hive.id) > 200
    for name in ("ruflo.db-wal", "ruflo.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    before = digest(path)
    with pytest.raises(StoreCorrupt, match="truncated"):
        open_store(f"sqlite:///{path}")
    assert digest(path) == before


def test_a_fresh_store_is_created_in_a_missing_data_dir(tmp_path: Path) -> None:
    path = tmp_path / "not" / "yet" / "ruflo.db"
    store = open_store(f"sqlite:///{path}")
    try:
        assert store.created
        assert path.is_file()
        assert not any(p.name.startswith(".ruflo.db.creating") for p in path.parent.iterdir())
    finally:
        store.close()
    again = open_store(f"sqlite:///{path}")
    assert not again.created
    again.close()


def test_wal_and_pragmas(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'ruflo.db'}")
    try:
        cur = store._state().cur
        assert cur.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert cur.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert cur.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
        assert cur.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    finally:
        store.close()


def test_in_memory_sqlite_is_refused() -> None:
    from ruflo.errors import StoreError

    with pytest.raises(StoreError, match="in-memory"):
        open_store("sqlite:///:memory:")


@pytest.mark.postgres
def test_postgres_schema_of_another_app_is_refused(pg_schema_url: str) -> None:
    import psycopg

    schema = pg_schema_url.rsplit("%3D", 1)[1]
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=test", autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {schema}.alembic_version (version_num text)")
        conn.execute(f"INSERT INTO {schema}.alembic_version VALUES ('abc123')")
    with pytest.raises(StoreCorrupt, match="another application"):
        open_store(pg_schema_url)


@pytest.mark.postgres
def test_postgres_reopen_skips_migrations(pg_schema_url: str) -> None:
    first = open_store(pg_schema_url)
    hive = make_hive(first, tasks=2)
    first.close()
    second = open_store(pg_schema_url.replace("postgresql://", "postgres://"))
    try:
        assert second.dialect == "postgresql"
        assert len(second.list_tasks(hive.id)) == 2
        assert "password" not in second.url
    finally:
        second.close()


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_store_at_0001_is_upgraded_with_its_ledger_summed(kind: str, tmp_path: Path,
                                                            request: pytest.FixtureRequest) -> None:
    """A store written by the first schema: opening it adds the running spend totals (0002),
    summed from the ledger it already has; later entries add to them."""
    with store_at_revision(kind, "0001", tmp_path, request) as (url, connection):
        rows = [("h1", "a1", 10, 5, 0.5), ("h1", "a1", 1, 1, None), ("h1", "a2", 100, 0, 1.0),
                ("h2", None, 7, 0, 0.25)]
        for hive_id, agent_id, prompt, completion, cost in rows:
            connection.exec_driver_sql(
                "INSERT INTO ledger (ts, model, prompt_tokens, completion_tokens, cost, "
                "cost_source, kind, hive_id, agent_id) VALUES (1.0, 'm', %(p)s, %(c)s, %(cost)s, "
                "'gateway', 'work', %(h)s, %(a)s)" if kind == "postgres" else
                "INSERT INTO ledger (ts, model, prompt_tokens, completion_tokens, cost, "
                "cost_source, kind, hive_id, agent_id) VALUES (1.0, 'm', :p, :c, :cost, "
                "'gateway', 'work', :h, :a)",
                {"p": prompt, "c": completion, "cost": cost, "h": hive_id, "a": agent_id})
        connection.commit()

    store = open_store(url)
    try:
        def totals(**scope: str) -> tuple[int, float, int, int]:
            spend = store.spend(**scope)
            return spend.tokens, spend.cost, spend.calls, spend.unknown_cost_calls

        assert totals(hive_id="h1") == (117, 1.5, 3, 1)
        assert totals(agent_id="a1") == (17, 0.5, 2, 1)
        assert totals(hive_id="h2") == (7, 0.25, 1, 0)
        assert totals(agent_id="nobody") == (0, 0.0, 0, 0)
        store.add_ledger_entry(model="m", prompt_tokens=3, completion_tokens=0, cost=None,
                               cost_source="unknown", hive_id="h1", agent_id="a1")
        assert totals(hive_id="h1") == (120, 1.5, 4, 2)
        assert totals(agent_id="a1") == (20, 0.5, 3, 2)
    finally:
        store.close()
