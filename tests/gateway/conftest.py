"""Fixtures for the gateway tests: a real SQLite store, a ScriptedGateway server on a free
loopback port, and a GatewayClient factory with fast retries."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ruflo.gateway.client import GatewayClient, RetryPolicy
from ruflo.gateway.scripted import ScriptedGateway
from ruflo.model import Agent, Budget, Hive, Mode, Task, new_id
from ruflo.store import open_store
from ruflo.store.sql import SqlStore

KEY = "sk-test"
FAST = RetryPolicy(attempts=3, timeout=10.0, wait_initial=0.01, wait_max=0.05,
                   wait_jitter=0.01, max_retry_after=2.0)


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqlStore]:
    """One SQLite store for the gateway tests (opening one takes a while); each test works in
    hives of its own, so tests do not see each other's ledger entries."""
    folder: Path = tmp_path_factory.mktemp("gateway-store")
    opened = open_store(f"sqlite:///{folder / 'ruflo.db'}")
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture(scope="session")
def shared_gateway() -> Iterator[ScriptedGateway]:
    server = ScriptedGateway({"keys": [KEY], "default": {"content": "ok"}})
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def gateway(shared_gateway: ScriptedGateway) -> ScriptedGateway:
    """The shared ScriptedGateway, reset to its starting script (one server for all tests)."""
    shared_gateway.reset()
    return shared_gateway


@pytest.fixture
async def make_client(gateway: ScriptedGateway,
                      store: SqlStore) -> AsyncIterator[Callable[..., GatewayClient]]:
    made: list[GatewayClient] = []

    def make(**kwargs: Any) -> GatewayClient:
        kwargs.setdefault("store", store)
        kwargs.setdefault("retry", FAST)
        base_url = kwargs.pop("base_url", gateway.base_url)
        client = GatewayClient(base_url, kwargs.pop("api_key", KEY), **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


HiveMaker = Callable[..., tuple[Hive, list[Agent], list[Task]]]


@pytest.fixture
def make_hive(store: SqlStore) -> HiveMaker:
    """Make a hive with agents (and open tasks) in the shared store."""
    return lambda **kwargs: _make_hive(store, **kwargs)


def _make_hive(store: SqlStore, *, budget: Budget | None = None, agents: int = 1,
               agent_budget: Budget | None = None,
               tasks: int = 0) -> tuple[Hive, list[Agent], list[Task]]:
    hive_id = new_id()
    hive = Hive(id=hive_id, name="gw", mode=Mode.SWARM, objective="test the gateway",
                budget=budget or Budget())
    crew = [Agent(id=new_id(), hive_id=hive_id, name=f"a{i}", budget=agent_budget or Budget())
            for i in range(agents)]
    board = [Task(id=new_id(), hive_id=hive_id, title=f"task {i}") for i in range(tasks)]
    store.create_hive(hive, crew, board)
    return store.get_hive(hive_id), crew, board
