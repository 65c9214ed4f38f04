"""Builders for store tests: a hive with agents and tasks in one call."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ruflo.model import Agent, Hive, Mode, Task, new_id


def make_hive(store: Any, *, tasks: int = 0, agents: int = 1, **task_fields: Any) -> Hive:
    hive = Hive(id=new_id(), name="test hive", mode=Mode.SWARM, objective="test the store")
    store.create_hive(
        hive,
        [Agent(id=f"{hive.id[:8]}-a{i}", hive_id=hive.id, name=f"agent {i}") for i in range(agents)],
        [Task(id=new_id(), hive_id=hive.id, title=f"task {i}", **task_fields)
         for i in range(tasks)])
    return hive


def agent_id(hive: Hive, i: int = 0) -> str:
    return f"{hive.id[:8]}-a{i}"


@contextlib.contextmanager
def store_at_revision(kind: str, revision: str, tmp_path: Path,
                      request: pytest.FixtureRequest) -> Iterator[tuple[str, Any]]:
    """An empty store migrated only as far as `revision` ("sqlite" or "postgres"): yields its URL
    and an open SQLAlchemy connection to write rows as that schema had them; opening the URL
    afterwards (ruflo.store.open_store) upgrades it the way a user's old store is upgraded."""
    from alembic import command
    from alembic.config import Config

    from ruflo.store.opening import MIGRATIONS_DIR, pg_engine, sqlite_connect, sqlite_engine

    conn = None
    if kind == "sqlite":
        path = tmp_path / "data" / "ruflo.db"
        path.parent.mkdir()
        url = f"sqlite:///{path}"
        conn = sqlite_connect(path, "normal")
        conn.execute("PRAGMA journal_mode = WAL")
        engine = sqlite_engine(conn)
    else:
        url = request.getfixturevalue("pg_schema_url")
        engine = pg_engine(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    try:
        with engine.connect() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
            yield url, connection
    finally:
        if conn is not None:
            conn.close()
