"""How agents reach models: an outside agent through the relay with its attempt's token, never
the gateway key; a command the built-in agent runs with no model credential at all."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from ruflo.agents import OutcomeKind, executor_for
from ruflo.agents.commands import command_env
from ruflo.agents.loop import LLMExecutor
from ruflo.agents.sandbox import current_sandbox
from ruflo.errors import BudgetExceeded
from ruflo.gateway.client import GatewayClient
from ruflo.model import AdapterKind, Agent, Budget

GATEWAY_KEY = "sk-test"
"""The key the agents fixtures give their gateway clients (tests/agents/conftest.py)."""

pytestmark = pytest.mark.integration

CALLER = r'''
import http.client, json, os, sys, urllib.parse
root = urllib.parse.urlsplit(os.environ["LITELLM_BASE_URL"])
token = os.environ["OPENAI_API_KEY"]
json.dump(dict(os.environ), open("seen-env.json", "w"))
print("my key is", token)  # a careless agent: the transcript must not keep it
calls = int(sys.argv[1])
carried, cut, refused = [], 0, []

def post(path, body):
    connection = http.client.HTTPConnection(root.hostname, root.port, timeout=30)
    connection.request("POST", path, json.dumps(body), {
        "content-type": "application/json", "authorization": "Bearer " + token})
    return connection, connection.getresponse()

for i in range(calls):
    protocol = ("chat", "messages", "responses")[i % 3]
    stream = i % 2 == 1
    word = "cut" if i % 10 == 9 else "hello"
    if protocol == "chat":
        path, body = "/v1/chat/completions", {"model": "m", "messages": [
            {"role": "user", "content": f"{word} {i}"}]}
    elif protocol == "messages":
        path, body = "/v1/messages", {"model": "m", "max_tokens": 64, "messages": [
            {"role": "user", "content": f"{word} {i}"}]}
    else:
        path, body = "/v1/responses", {"model": "m", "input": f"{word} {i}"}
    body["stream"] = stream
    connection, answer = post(path, body)
    if answer.status != 200:
        refused.append(answer.status)
        connection.close()
        if len(refused) > 2:
            break
        continue
    if not stream:
        data = json.loads(answer.read())
        usage = data["usage"]
        carried.append([usage.get("prompt_tokens", usage.get("input_tokens")),
                        usage.get("completion_tokens", usage.get("output_tokens"))])
        connection.close()
        continue
    try:
        text = answer.read().decode()
    except http.client.IncompleteRead:
        cut += 1
        connection.close()
        continue
    usage, finished = None, False
    for line in text.splitlines():
        finished = finished or line in ("data: [DONE]", "event: message_stop",
                                        "event: response.completed")
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        event = json.loads(line[6:])
        if "prompt_tokens" in (event.get("usage") or {}):
            usage = [event["usage"].get("prompt_tokens"), event["usage"].get("completion_tokens")]
        if event.get("type") == "message_start":
            usage = [event["message"]["usage"]["input_tokens"], 0]
        if event.get("type") == "message_delta":
            usage[1] = event["usage"]["output_tokens"]
        if event.get("type") == "response.completed":
            usage = [event["response"]["usage"]["input_tokens"],
                     event["response"]["usage"]["output_tokens"]]
    if usage is None or not finished:
        cut += 1
    else:
        carried.append(usage)
    connection.close()
json.dump({"carried": carried, "cut": cut, "refused": refused}, open("calls.json", "w"))
print("made", len(carried) + cut, "calls")
if sys.argv[2:] == ["linger"]:
    import time
    time.sleep(600)
'''

SCRIPT = {"keys": [GATEWAY_KEY], "rules": [
    {"name": "cut", "match": {"last_user": "^cut"},
     "reply": {"content": "this answer is cut by the gateway part way", "chunk": 4},
     "fault": {"cut_after": 3}},
    {"name": "hello", "match": {"last_user": "^hello"},
     "reply": {"content": "Hello, agent: here is your answer.", "chunk": 6}},
]}


def caller_agent(tmp_path: Path, *args: str) -> Agent:
    program = tmp_path / "agent-cli" / "caller.py"
    program.parent.mkdir(exist_ok=True)
    program.write_text(CALLER)
    return Agent(id="a1", hive_id="h1", name="outside", adapter=AdapterKind.PROCESS,
                 adapter_config={"command": [sys.executable, str(program), *args]})


def sandbox_showing(folder: Path) -> Any:
    sandbox = current_sandbox()
    return sandbox.with_extras(readable=[folder]) if sandbox.confines else sandbox


async def test_fifty_calls_through_a_token_leave_fifty_ledger_entries(
        make_board, scripted, gateway_for, tmp_path: Path) -> None:
    agent = caller_agent(tmp_path, "50")
    board = make_board(agent=agent)
    gateway = scripted(SCRIPT)
    client: GatewayClient = gateway_for(gateway, board.store)
    outcome = await executor_for(agent).run(
        board.task, agent, board.hive,
        board.context(client, env=command_env(),
                      sandbox=sandbox_showing(tmp_path / "agent-cli")))
    output = "".join(e.data["text"] for e in board.transcript("process_output"))
    assert outcome.kind is OutcomeKind.COMPLETE, output
    made = json.loads((board.workspace / "calls.json").read_text())
    assert made["refused"] == []
    assert made["cut"] == 5
    entries = board.store.ledger(hive_id=board.hive.id)
    assert len(entries) == 50
    assert {(e.agent_id, e.task_id) for e in entries} == {(agent.id, board.task.id)}
    whole = [e for e in entries if e.cost_source != "estimate"]
    assert len(whole) == 45
    assert sum(e.prompt_tokens for e in whole) == sum(c[0] for c in made["carried"])
    assert sum(e.completion_tokens for e in whole) == sum(c[1] for c in made["carried"])
    cut = [e for e in entries if e.cost_source == "estimate"]
    assert len(cut) == 5
    assert all(e.cost is None for e in cut)

    seen = json.loads((board.workspace / "seen-env.json").read_text())
    token = seen["OPENAI_API_KEY"]
    assert token.startswith("rly-")
    assert seen["ANTHROPIC_API_KEY"] == token
    assert GATEWAY_KEY not in json.dumps(seen)
    assert {r["key"] for r in gateway.requests} == {GATEWAY_KEY}
    # The attempt is over: its token no longer works, and a refused call records nothing.
    relay = await client.relay()
    async with httpx.AsyncClient(base_url=relay.url) as http:
        late = await http.post("/v1/messages", headers={"x-api-key": token},
                               json={"model": "m", "max_tokens": 5,
                                     "messages": [{"role": "user", "content": "hello"}]})
    assert late.status_code == 401
    assert late.json()["type"] == "error"
    assert len(board.store.ledger(hive_id=board.hive.id)) == 50
    assert not [e for e in board.store.events(board.hive.id) if token in json.dumps(e.data)]
    assert "my key is [relay token]" in output


async def test_a_budget_stop_ends_the_command_and_reaches_the_engine(
        make_board, scripted, gateway_for, tmp_path: Path) -> None:
    agent = caller_agent(tmp_path, "50", "linger")
    board = make_board(agent=agent)
    board.store.update_hive(board.hive.id, budget=Budget(max_tokens=60))
    client = gateway_for(scripted(SCRIPT), board.store)
    with pytest.raises(BudgetExceeded):
        await executor_for(agent).run(
            board.task, agent, board.hive,
            board.context(client, env=command_env(),
                          sandbox=sandbox_showing(tmp_path / "agent-cli")))
    exited = board.transcript("process_exited")[0].data
    assert exited["stopped"] is True
    assert len(board.store.ledger(hive_id=board.hive.id)) >= 1
    assert board.transcript("budget_exceeded")


async def test_a_command_the_built_in_agent_runs_sees_no_model_credential(
        make_board, scripted, gateway_for) -> None:
    dump = f"{sys.executable} -c \"import os, json; print(json.dumps(dict(os.environ)))\""
    script = {"keys": [GATEWAY_KEY], "rules": [
        {"match": {"turn": 1}, "reply": {"tool_calls": [
            {"name": "run_command", "arguments": {"command": dump}}]}},
        {"match": {"turn": 2}, "reply": {"tool_calls": [
            {"name": "complete", "arguments": {"result": "looked"}}]}}]}
    board = make_board()
    client = gateway_for(scripted(script), board.store)
    await client.relay()  # a relay is running in this process: still nothing reaches commands
    outcome = await LLMExecutor().run(board.task, board.agent, board.hive,
                                      board.context(client, env=command_env()))
    assert outcome.kind is OutcomeKind.COMPLETE
    result = next(e.data for e in board.transcript("tool_result")
                  if e.data.get("name") == "run_command")
    seen = json.dumps(result)
    assert "PATH" in seen
    for absent in (GATEWAY_KEY, "OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY",
                   "rly-"):
        assert absent not in seen
