"""The UI tests' harness: a real ruflo server (SQLite in a temp dir, uvicorn on a free loopback
port in a thread) in front of the ScriptedGateway, optionally with the live engine driving the
hives, and a runner that starts the engine when a hive is created from a page."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ruflo.config import Settings, load_settings
from ruflo.engine.board_engine import BoardEngine, LiveParams
from ruflo.gateway.base import Gateway
from ruflo.gateway.client import GatewayClient, RetryPolicy
from ruflo.gateway.scripted import ScriptedGateway
from ruflo.server import StoreRunner, create_app
from ruflo.server.context import ServerContext
from ruflo.store import open_store
from ruflo.store.base import Store
from ruflo.store.sql import SqlStore
from server_thread import ServerThread, free_port

GATEWAY_KEY = "sk-ui-test"
SCRIPT: dict[str, Any] = {
    "models": ["gpt-4o-mini", "scripted-large"],
    "keys": [GATEWAY_KEY],
    "cost": 0.0003,
    "rules": [
        # The built-in agent's system prompt says where it is; every task is done in one turn,
        # slowly enough that the board can be seen moving.
        {"name": "agent-completes", "match": {"system": "in a hive of agents"}, "delay": 0.4,
         "reply": {"tool_calls": [{"name": "complete",
                                   "arguments": {"result": "done as asked"}}]}},
        {"name": "hello", "match": {"last_user": "(?i)hello"},
         "reply": {"content": "Hello there! The swarm is ready when you are.", "chunk": 3}},
        {"name": "slow", "match": {"last_user": "(?i)long story"},
         "reply": {"content": "once upon a time " * 4000, "chunk": 1}},
    ],
    "default": {"echo": True, "chunk": 4},
}
FAST = LiveParams(lease_seconds=5.0, time_unit=0.05, poll_seconds=0.2, stop_on_pause=False)


class LiveRunner(StoreRunner):
    """The store runner, plus the live engine started on every hive created: the same wiring
    `ruflo serve` gets from the engine, with fast test timings."""

    def __init__(self, store: Store, gateway: Gateway | None, settings: Settings) -> None:
        super().__init__(store)
        self.gateway = gateway
        self.settings = settings
        self.engines: dict[str, tuple[BoardEngine, asyncio.Task[Any]]] = {}

    async def start(self, hive_id: str) -> None:
        from ruflo.agents.commands import command_env

        await super().start(hive_id)
        workspace = self.store.get_hive(hive_id).workspace
        assert workspace is not None
        os.makedirs(workspace, exist_ok=True)
        engine = BoardEngine(self.store, hive_id, gateway=self.gateway, params=FAST,
                            model=str(self.settings.model), env=command_env())
        self.engines[hive_id] = (engine, asyncio.create_task(engine.run()))

    async def aclose(self) -> None:
        for engine, task in self.engines.values():
            engine.stop()
            await asyncio.wait({task}, timeout=10)
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]


@dataclass
class Served:
    url: str
    store: SqlStore
    settings: Settings
    ctx: ServerContext
    http: httpx.Client


SHOTS = Path(__file__).resolve().parents[2] / "test-output"


def shoot(page: Any, name: str) -> Path:
    """Save a full-page screenshot under test-output/ (git-ignored) and return its path."""
    SHOTS.mkdir(exist_ok=True)
    path = SHOTS / f"ui-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def expect() -> Any:
    """Playwright's `expect` (imported when a browser test runs, not when tests are collected)."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """The serious and critical violations axe-core finds on the page as it is now."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [v for v in results.response["violations"] if v.get("impact") in ("serious",
                                                                               "critical")]


def describe(violations: list[dict[str, Any]]) -> str:
    return "\n".join(f"{v['id']} ({v['impact']}): {v['help']} at "
                     f"{[n['target'] for n in v['nodes']][:3]}" for v in violations)


def ask(page: Any, text: str) -> None:
    """Send `text` from the chat page's message box."""
    prompt = page.get_by_role("textbox", name="Message")
    prompt.fill(text)
    prompt.press("Enter")


def closed_port() -> int:
    """A loopback port nothing listens on."""
    return free_port()


class Servers:
    """Starts servers for one test and stops them all after it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.running: list[tuple[ServerThread, SqlStore, httpx.Client]] = []
        self.gateways: list[ScriptedGateway] = []

    def scripted(self, script: dict[str, Any] = SCRIPT) -> ScriptedGateway:
        """Start a ScriptedGateway following `script` (the harness's own by default), stopped
        with the servers."""
        gateway = ScriptedGateway(script)
        gateway.start()
        self.gateways.append(gateway)
        return gateway

    def start(self, *, gateway_url: str | None, key: str = GATEWAY_KEY, live: bool = False,
              auth: str = "none", env: dict[str, str] | None = None,
              bind: str = "127.0.0.1") -> Served:
        values = {"RUFLO_DATA_DIR": str(self.root / f"data{len(self.running)}"),
                  "RUFLO_AUTH": auth, "RUFLO_CONFIG": "", "RUFLO_MODEL": "gpt-4o-mini",
                  **(env or {})}
        if gateway_url is not None:
            values.update(OPENAI_BASE_URL=gateway_url, OPENAI_API_KEY=key)
        settings = load_settings(values)
        store = open_store(settings)
        assert isinstance(store, SqlStore)
        client = None
        if gateway_url is not None:
            client = GatewayClient.from_settings(settings, store, retry=RetryPolicy(
                attempts=1, timeout=3.0, wait_initial=0.05, wait_max=0.1))
        runner = LiveRunner(store, client, settings) if live else None
        app = create_app(settings, store, client, runner, event_poll_seconds=0.5)
        thread = ServerThread(app, client, bind=bind)
        url = thread.start()
        http = httpx.Client(base_url=url, timeout=20.0)
        self.running.append((thread, store, http))
        return Served(url=url, store=store, settings=settings, ctx=app.state.ctx, http=http)

    def close(self) -> None:
        for thread, store, http in reversed(self.running):
            http.close()
            thread.stop()
            store.close()
        for gateway in self.gateways:
            gateway.stop()
