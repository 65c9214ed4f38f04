"""Runs one scripted hive (two tasks, one agent, two turns each) in this process and prints a JSON
summary: the hive's config, the traceparent each gateway request carried, the ledger, and the
opentelemetry modules imported. Usage: python scripted_hive.py FOLDER"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

from ruflo import telemetry
from ruflo.agents.commands import command_env
from ruflo.engine.board_engine import BoardEngine, LiveParams
from ruflo.engine.start import HiveSpec, create_hive
from ruflo.gateway.client import GatewayClient
from ruflo.gateway.scripted import ScriptedGateway
from ruflo.model import Agent, Mode, Task
from ruflo.store import open_store
from ruflo.telemetry import logs

RULES = [
    {"match": {"turn": 1}, "reply": {"tool_calls": [
        {"name": "write_file", "arguments": {"path": "a.txt", "content": "a"}}]}},
    {"match": {"turn": 2}, "reply": {"tool_calls": [
        {"name": "complete", "arguments": {"result": "done"}}]}},
]


class LoggingClient(GatewayClient):
    """Logs a line as each call starts: from inside the agent's attempt."""

    async def chat(self, *args: Any, **kwargs: Any) -> Any:
        logging.getLogger("ruflo.test").info("calling the gateway")
        return await super().chat(*args, **kwargs)


async def run(folder: Path) -> dict[str, object]:
    store = open_store(f"sqlite:///{folder / 'ruflo.db'}")
    gateway = ScriptedGateway({"keys": ["k"], "cost": 0.0001, "rules": RULES})
    gateway.start()
    try:
        spec = HiveSpec(objective="two small files", mode=Mode.SWARM, name="traced",
                        agents=[Agent(id="a1", hive_id="", name="ann", skills=("py",))],
                        tasks=[Task(id="t1", hive_id="", title="one", skills=("py",)),
                               Task(id="t2", hive_id="", title="two", skills=("py",))],
                        workspace=str(folder / "ws"), id="h1")
        hive = create_hive(store, spec)
        client = LoggingClient(gateway.base_url, "k", store=store)
        engine = BoardEngine(store, hive.id, gateway=client, env=command_env(),
                            params=LiveParams(lease_seconds=5, time_unit=0.02, poll_seconds=0.2))
        ended = await engine.run()
        logging.getLogger("ruflo.test").warning("hive ended")
        await client.aclose()
        telemetry.flush()
        return {"status": ended.status.value, "config": store.get_hive(hive.id).config,
                "traceparents": [r["traceparent"] for r in gateway.requests],
                "ledger": [[e.model, e.prompt_tokens, e.completion_tokens, e.cost]
                           for e in store.ledger(hive_id=hive.id)],
                "modules": sorted(m for m in sys.modules if m.startswith("opentelemetry"))}
    finally:
        gateway.stop()
        store.close()


if __name__ == "__main__":
    logs.configure(logging.INFO, "%(message)s")
    summary = asyncio.run(run(Path(sys.argv[1])))
    print("SUMMARY " + json.dumps(summary))
