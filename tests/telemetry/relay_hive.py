"""Runs one hive of two tasks whose outside agent (a process agent) makes, in each attempt, six
model calls through the relay — Chat Completions, Anthropic Messages and Responses, each plain
and streamed — and prints a JSON
summary: the hive's config, the traceparent each gateway request carried, the ledger, and the
opentelemetry modules imported. Usage: python relay_hive.py FOLDER"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from ruflo import telemetry
from ruflo.agents.commands import command_env
from ruflo.engine.board_engine import BoardEngine, LiveParams
from ruflo.engine.start import HiveSpec, create_hive
from ruflo.gateway.client import GatewayClient
from ruflo.gateway.scripted import ScriptedGateway
from ruflo.model import AdapterKind, Agent, Mode, Task
from ruflo.store import open_store

CALLER = r'''
import http.client, json, os, urllib.parse
root = urllib.parse.urlsplit(os.environ["LITELLM_BASE_URL"])
calls = [(p, s) for p in ("chat", "messages", "responses") for s in (False, True)]
for i, (protocol, stream) in enumerate(calls):
    words = "hello" + " again" * i
    if protocol == "chat":
        path, body = "/v1/chat/completions", {"model": "m", "messages": [
            {"role": "user", "content": words}]}
    elif protocol == "messages":
        path, body = "/v1/messages", {"model": "m", "max_tokens": 64, "messages": [
            {"role": "user", "content": words}]}
    else:
        path, body = "/v1/responses", {"model": "m", "input": words}
    body["stream"] = stream
    connection = http.client.HTTPConnection(root.hostname, root.port, timeout=30)
    connection.request("POST", path, json.dumps(body), {
        "content-type": "application/json",
        "authorization": "Bearer " + os.environ["OPENAI_API_KEY"]})
    answer = connection.getresponse()
    answer.read()
    assert answer.status == 200, answer.status
    connection.close()
print("six calls made")
'''
SCRIPT = {"keys": ["k"], "cost": 0.0001, "rules": [
    {"match": {"last_user": "^hello"}, "reply": {"content": "Hello, agent.", "chunk": 4}}]}


async def run(folder: Path) -> dict[str, object]:
    store = open_store(f"sqlite:///{folder / 'ruflo.db'}")
    gateway = ScriptedGateway(SCRIPT)
    gateway.start()
    program = folder / "caller.py"
    program.write_text(CALLER)
    try:
        spec = HiveSpec(objective="call models", mode=Mode.SWARM, name="relayed",
                        agents=[Agent(id="a1", hive_id="", name="outside", skills=("py",),
                                      adapter=AdapterKind.PROCESS,
                                      adapter_config={"command": [sys.executable,
                                                                  str(program)]})],
                        tasks=[Task(id="t1", hive_id="", title="one", skills=("py",)),
                               Task(id="t2", hive_id="", title="two", skills=("py",))],
                        workspace=str(folder / "ws"), id="h1")
        hive = create_hive(store, spec)
        client = GatewayClient(gateway.base_url, "k", store=store)
        engine = BoardEngine(store, hive.id, gateway=client, env=command_env(),
                            params=LiveParams(lease_seconds=5, time_unit=0.02, poll_seconds=0.2))
        ended = await engine.run()
        await client.aclose()
        telemetry.flush()
        return {"status": ended.status.value, "config": store.get_hive(hive.id).config,
                "traceparents": [r["traceparent"] for r in gateway.requests],
                "ledger": [[e.task_id, e.prompt_tokens, e.completion_tokens, e.cost]
                           for e in store.ledger(hive_id=hive.id)],
                "modules": sorted(m for m in sys.modules if m.startswith("opentelemetry"))}
    finally:
        gateway.stop()
        store.close()


if __name__ == "__main__":
    summary = asyncio.run(run(Path(sys.argv[1])))
    print("SUMMARY " + json.dumps(summary))
