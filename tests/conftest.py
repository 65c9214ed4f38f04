"""Shared fixtures: a store on SQLite and on Postgres for every store test, and Postgres URLs.

Postgres tests use a fresh schema per test in database `test` on 127.0.0.1:5432, dropped after.
With RUFLO_REQUIRE_POSTGRES=1 (CI) an unreachable Postgres fails those tests instead of skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings

# CI replays the same examples on every run (a failure there is reproducible, never a dice roll);
# locally hypothesis keeps exploring new ones.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=3"
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"

_pg_problem: list[str | None] = []


def _postgres_problem() -> str | None:
    """Why Postgres can't be used (cached), or None when it answers."""
    if not _pg_problem:
        import psycopg

        try:
            psycopg.connect(PG_ADMIN_DSN).close()
            _pg_problem.append(None)
        except psycopg.Error as error:
            _pg_problem.append(str(error).strip().splitlines()[0])
    return _pg_problem[0]


def require_postgres() -> None:
    problem = _postgres_problem()
    if problem is None:
        return
    if os.environ.get("RUFLO_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"Postgres is required (RUFLO_REQUIRE_POSTGRES=1) but unreachable: {problem}")
    pytest.skip(f"Postgres unreachable: {problem}")


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    """A database URL whose search_path is a fresh, empty schema; dropped afterwards."""
    require_postgres()
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


STORE_KINDS = [pytest.param("sqlite", id="sqlite"),
               pytest.param("postgres", id="postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=STORE_KINDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL for an empty store, once on SQLite (a temp file) and once on Postgres."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'ruflo.db'}"
    url: str = request.getfixturevalue("pg_schema_url")
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[Any]:
    """An open, empty store (SQLite and Postgres); closed afterwards."""
    from ruflo.store import open_store

    opened = open_store(store_url)
    try:
        yield opened
    finally:
        opened.close()


# -- a ScriptedGateway and a client of it, for the engine, runner, company and notify tests --------

@pytest.fixture
def gateway_key(request: pytest.FixtureRequest) -> str:
    """The key the gateway accepts and the client sends: the test module's KEY (a folder's
    conftest may override this fixture)."""
    key: str = request.module.KEY
    return key


@pytest.fixture
def gateway_server(gateway_key: str) -> Iterator[Any]:
    from ruflo.gateway.scripted import ScriptedGateway

    server = ScriptedGateway({"keys": [gateway_key], "cost": 0.0001})
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def client(gateway_key: str, gateway_server: Any, store: Any) -> AsyncIterator[Any]:
    """A GatewayClient with fast retries, metering into the module's `store`."""
    from ruflo.gateway.client import GatewayClient, RetryPolicy

    gateway = GatewayClient(gateway_server.base_url, gateway_key, store=store,
                            retry=RetryPolicy(attempts=2, timeout=5, wait_initial=0.01,
                                              wait_max=0.05))
    yield gateway
    await gateway.aclose()


@pytest.fixture(autouse=True)
def _settle_the_sandbox_again() -> Iterator[None]:
    """A command run in-process (`ruflo orchestrate`, the demo) makes its settings' sandbox the
    process's; the next test settles its own from its own environment."""
    yield
    from ruflo.agents.sandbox import use_sandbox

    use_sandbox(None)
