"""Fixtures: a real ruflo server for each test (SQLite store in a temp dir, the ScriptedGateway as
the model, the real GatewayClient, uvicorn on a free loopback port in a background thread)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_harness import GATEWAY_KEY, SCRIPT, Served

from ruflo.config import load_settings
from ruflo.engine.server_hosting import EngineRunner
from ruflo.gateway.client import GatewayClient, RetryPolicy
from ruflo.gateway.scripted import ScriptedGateway
from ruflo.server import create_app
from ruflo.store import open_store
from ruflo.store.sql import SqlStore
from server_thread import ServerThread


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """Start a server; keyword arguments become environment settings (auth, trusted_proxies,
    task_model; any other variable through `extra_env`) or choose `gateway_url`/`script`, the
    gateway client's `retry`, and whether hives created over HTTP run the live engine (`live`:
    the runner `ruflo serve` uses); `database_url` picks the store (default: SQLite in the
    server's own data dir); `bind` the address it listens on (its URL names 127.0.0.1 when that
    is 0.0.0.0)."""
    started: list[tuple[ServerThread, ScriptedGateway, SqlStore, httpx.Client]] = []

    def start(*, auth: str = "none", trusted_proxies: str = "", task_model: str | None = None,
              script: dict[str, Any] | None = None, gateway_url: str | None = None,
              poll_seconds: float = 2.0, live: bool = False,
              retry: RetryPolicy | None = None, extra_env: dict[str, str] | None = None,
              database_url: str | None = None, bind: str = "127.0.0.1") -> Served:
        gateway = ScriptedGateway(script or SCRIPT)
        base_url = gateway.start()
        env = {"RUFLO_DATA_DIR": str(tmp_path / f"data{len(started)}"),
               "OPENAI_BASE_URL": gateway_url or base_url, "OPENAI_API_KEY": GATEWAY_KEY,
               "RUFLO_AUTH": auth, "RUFLO_TRUSTED_PROXIES": trusted_proxies,
               "RUFLO_CONFIG": ""}
        if task_model:
            env["TASK_MODEL"] = task_model
        env.update(extra_env or {})
        if database_url:
            env["DATABASE_URL"] = database_url
        settings = load_settings(env)
        store = open_store(settings)
        client = GatewayClient.from_settings(
            settings, store, retry=retry or RetryPolicy(attempts=2, timeout=3.0,
                                                        wait_initial=0.05, wait_max=0.1))
        runner = EngineRunner(store, client, settings, poll_seconds=0.2) if live else None
        app = create_app(settings, store, client, runner, event_poll_seconds=poll_seconds)
        thread = ServerThread(app, client, bind=bind)
        url = thread.start()
        http = httpx.Client(base_url=url, timeout=20.0)
        started.append((thread, gateway, store, http))
        return Served(url=url, store=store, gateway=gateway, settings=settings,
                      ctx=app.state.ctx, client=http)

    yield start
    for thread, gateway, store, http in reversed(started):
        http.close()
        thread.stop()
        gateway.stop()
        store.close()


@pytest.fixture
def served(make_server: Callable[..., Served]) -> Served:
    return make_server()


@pytest.fixture
def live_server(make_server: Callable[..., Served]) -> Callable[..., Served]:
    """Start a real server whose hive routes run the live engine (the runner `ruflo serve`
    uses), the ScriptedGateway following `rules`, with `auth` as given."""

    def start(*rules: dict[str, Any], auth: str = "none") -> Served:
        return make_server(script={"keys": [GATEWAY_KEY], "cost": 0.0001, "rules": list(rules)},
                           live=True, poll_seconds=0.5, auth=auth, retry=RetryPolicy(
                               attempts=2, timeout=5.0, wait_initial=0.01, wait_max=0.05))

    return start
