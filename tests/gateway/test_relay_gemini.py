"""The relay and the ScriptedGateway speak Gemini's generateContent as Gemini CLI calls it
(`POST /v1beta/models/MODEL:streamGenerateContent?alt=sse`, key in `x-goog-api-key`): plain,
streamed and with function calls, metered into the ledger, refused in Google's error shape."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from ruflo.errors import BudgetExceeded
from ruflo.gateway.base import CallContext
from ruflo.gateway.client import GatewayClient
from ruflo.gateway.relay import ModelRelay
from ruflo.gateway.scripted import ScriptedGateway
from ruflo.model import Budget
from ruflo.store.sql import SqlStore

HiveMaker = Callable[..., Any]

RULES = [
    {"name": "after-tool", "match": {"last_role": "tool", "last_tool": "sunny"},
     "reply": {"content": "It is sunny in Oslo."}},
    {"name": "tool", "match": {"last_user": "weather"},
     "reply": {"tool_calls": [{"id": "call_w1", "name": "weather",
                               "arguments": {"city": "Oslo"}}]}},
    {"name": "text", "match": {"last_user": "hello"},
     "reply": {"content": "Hello there, from the scripted model", "chunk": 5, "cost": 0.002}},
]
TOOLS = [{"functionDeclarations": [{"name": "weather", "description": "the weather",
                                    "parametersJsonSchema": {"type": "object"}}]}]


def ask(text: str, **extra: Any) -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}],
            "systemInstruction": {"parts": [{"text": "You are a test."}]}, **extra}


def sse(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")]


@pytest.fixture
async def relay(make_client: Callable[..., GatewayClient],
                gateway: ScriptedGateway) -> AsyncIterator[ModelRelay]:
    gateway.set_rules(RULES)
    return await make_client().relay()


async def test_gemini_plain_streamed_and_function_calls_one_ledger_entry_each(
        relay: ModelRelay, make_hive: HiveMaker, store: SqlStore,
        gateway: ScriptedGateway) -> None:
    hive, (agent,), (task,) = make_hive(tasks=1)
    carried: list[tuple[int, int]] = []
    with relay.attempt(CallContext(hive.id, agent.id, task.id)) as (token, _):
        env = relay.agent_env(token)
        assert env["GEMINI_API_KEY"] == token
        async with httpx.AsyncClient(base_url=env["GOOGLE_GEMINI_BASE_URL"],
                                     headers={"x-goog-api-key": token}) as http:
            plain = (await http.post("/v1beta/models/m:generateContent",
                                     json=ask("hello"))).json()
            assert plain["candidates"][0]["content"]["parts"] == [
                {"text": "Hello there, from the scripted model"}]
            assert plain["candidates"][0]["finishReason"] == "STOP"
            usage = plain["usageMetadata"]
            carried.append((usage["promptTokenCount"], usage["candidatesTokenCount"]))

            streamed = await http.post("/v1beta/models/m:streamGenerateContent?alt=sse",
                                       json=ask("hello"))
            assert streamed.headers["content-type"].startswith("text/event-stream")
            pieces = sse(streamed.text)
            assert len(pieces) > 1  # in pieces, as Gemini streams
            assert "".join(p["candidates"][0]["content"]["parts"][0]["text"]
                           for p in pieces) == "Hello there, from the scripted model"
            usage = pieces[-1]["usageMetadata"]
            carried.append((usage["promptTokenCount"], usage["candidatesTokenCount"]))

            called = sse((await http.post("/v1beta/models/m:streamGenerateContent?alt=sse",
                                          json=ask("weather?", tools=TOOLS))).text)
            part = called[-1]["candidates"][0]["content"]["parts"][0]
            assert part["functionCall"]["name"] == "weather"
            assert part["functionCall"]["args"] == {"city": "Oslo"}
            usage = called[-1]["usageMetadata"]
            carried.append((usage["promptTokenCount"], usage["candidatesTokenCount"]))

            history = ask("weather?", tools=TOOLS)
            history["contents"] += [
                {"role": "model", "parts": [part]},
                {"role": "user", "parts": [{"functionResponse": {
                    "id": part["functionCall"]["id"], "name": "weather",
                    "response": {"output": "sunny"}}}]}]
            answered = (await http.post("/v1beta/models/m:generateContent",
                                        json=history)).json()
            assert answered["candidates"][0]["content"]["parts"][0]["text"] == \
                "It is sunny in Oslo."
            usage = answered["usageMetadata"]
            carried.append((usage["promptTokenCount"], usage["candidatesTokenCount"]))
    entries = store.ledger(hive_id=hive.id)
    assert sorted((e.prompt_tokens, e.completion_tokens) for e in entries) == sorted(carried)
    assert {(e.agent_id, e.task_id, e.model) for e in entries} == {(agent.id, task.id, "m")}
    assert [e.cost for e in entries if e.cost_source == "gateway"] == [pytest.approx(0.002)]
    assert [r["protocol"] for r in gateway.requests] == ["gemini"] * 4
    assert [r["stream"] for r in gateway.requests] == [False, True, True, False]
    assert {r["key"] for r in gateway.requests} == {"sk-test"}  # the gateway key, not the token


async def test_gemini_refusals_are_in_googles_shape_and_nothing_is_called(
        relay: ModelRelay, make_hive: HiveMaker, store: SqlStore,
        gateway: ScriptedGateway) -> None:
    hive, (agent,), _ = make_hive(budget=Budget(max_tokens=40))
    before = gateway.request_count
    async with httpx.AsyncClient(base_url=relay.url) as http:
        stranger = await http.post("/v1beta/models/m:generateContent?key=rly-nope",
                                   json=ask("hello"))
        assert stranger.status_code == 401
        assert stranger.json()["error"]["status"] == "UNAUTHENTICATED"
        with relay.attempt(CallContext(hive.id, agent.id)) as (token, grant):
            other = await http.post("/v1beta/models/m:countTokens",
                                    headers={"x-goog-api-key": token}, json=ask("hello"))
            assert other.status_code == 400
            assert "countTokens" in other.json()["error"]["message"]
            # A key in the query works too (the google-genai SDK's other way), and never
            # reaches the gateway.
            first = await http.post(f"/v1beta/models/m:generateContent?key={token}",
                                    json=ask("hello " * 60, generationConfig={
                                        "maxOutputTokens": 5}))
            assert first.status_code == 200
            spent = await http.post("/v1beta/models/m:streamGenerateContent?alt=sse",
                                    headers={"x-goog-api-key": token}, json=ask("hello"))
            assert spent.status_code == 402
            assert spent.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
            assert isinstance(grant.stop, BudgetExceeded)
    assert gateway.request_count == before + 1
    assert len(store.ledger(hive_id=hive.id)) == 1
