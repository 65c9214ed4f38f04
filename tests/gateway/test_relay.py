"""The model relay: three protocols through the official SDKs, metered per call into the ledger,
budgeted, refusing what it must in each protocol's own error shape."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import anthropic
import httpx
import openai
import pytest

from ruflo.errors import BudgetExceeded, GatewayAuthError
from ruflo.gateway.base import CallContext
from ruflo.gateway.client import GatewayClient
from ruflo.gateway.relay import ModelRelay
from ruflo.gateway.scripted import Match, ScriptedGateway
from ruflo.model import Budget, HiveStatus
from ruflo.store.sql import SqlStore
from ruflo.telemetry import MODEL_CALLS

HiveMaker = Callable[..., Any]

TOOL_RULE = {"name": "tool", "match": {"last_user": "weather"},
             "reply": {"tool_calls": [{"id": "call_w1", "name": "weather",
                                       "arguments": {"city": "Oslo"}}]}}
TEXT_RULE = {"name": "text", "match": {"last_user": "hello"},
             "reply": {"content": "Hello there, from the scripted model", "chunk": 5,
                       "cost": 0.002}}


@pytest.fixture
async def relay(make_client: Callable[..., GatewayClient],
                gateway: ScriptedGateway) -> AsyncIterator[ModelRelay]:
    gateway.set_rules([TOOL_RULE, TEXT_RULE])
    client = make_client()
    return await client.relay()


def sdks(relay: ModelRelay, token: str) -> tuple[openai.AsyncOpenAI, anthropic.AsyncAnthropic]:
    env = relay.agent_env(token)
    return (openai.AsyncOpenAI(base_url=env["OPENAI_BASE_URL"], api_key=env["OPENAI_API_KEY"],
                               max_retries=0),
            anthropic.AsyncAnthropic(base_url=env["ANTHROPIC_BASE_URL"],
                                     api_key=env["ANTHROPIC_API_KEY"], max_retries=0))


WEATHER_CHAT = [{"type": "function", "function": {
    "name": "weather", "parameters": {"type": "object", "properties": {}}}}]
WEATHER_ANTHROPIC: list[Any] = [{"name": "weather", "input_schema": {"type": "object"}}]
WEATHER_RESPONSES: list[Any] = [{"type": "function", "name": "weather",
                                 "parameters": {"type": "object"}}]


async def test_three_protocols_plain_streamed_and_tool_calls_one_entry_each(
        relay: ModelRelay, make_hive: HiveMaker, store: SqlStore,
        gateway: ScriptedGateway) -> None:
    hive, (agent,), (task,) = make_hive(tasks=1)
    carried: list[tuple[int, int]] = []
    timed = sum(latency.count for latency, _, _ in MODEL_CALLS.snapshot().values())
    with relay.attempt(CallContext(hive.id, agent.id, task.id)) as (token, _grant):
        oai, claude = sdks(relay, token)
        chat = await oai.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hello"}], max_tokens=50)
        assert chat.choices[0].message.content == "Hello there, from the scripted model"
        assert chat.usage is not None
        carried.append((chat.usage.prompt_tokens, chat.usage.completion_tokens))
        called = await oai.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "weather?"}], tools=WEATHER_CHAT)
        call = (called.choices[0].message.tool_calls or [])[0]
        assert call.function.name == "weather"  # type: ignore[union-attr]
        assert called.usage is not None
        carried.append((called.usage.prompt_tokens, called.usage.completion_tokens))
        pieces = []
        stream = await oai.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hello"}], stream=True)
        async for chunk in stream:
            pieces += [c.delta.content or "" for c in chunk.choices]
            if chunk.usage is not None:
                carried.append((chunk.usage.prompt_tokens, chunk.usage.completion_tokens))
        assert "".join(pieces) == "Hello there, from the scripted model"

        message = await claude.messages.create(
            model="m", max_tokens=100, messages=[{"role": "user", "content": "hello"}])
        assert message.content[0].type == "text"
        assert message.content[0].text == "Hello there, from the scripted model"
        carried.append((message.usage.input_tokens, message.usage.output_tokens))
        used = await claude.messages.create(
            model="m", max_tokens=100, tools=WEATHER_ANTHROPIC,  # type: ignore[arg-type]
            messages=[{"role": "user", "content": "weather?"}])
        assert used.stop_reason == "tool_use"
        assert used.content[0].type == "tool_use"
        assert used.content[0].input == {"city": "Oslo"}
        carried.append((used.usage.input_tokens, used.usage.output_tokens))
        async with claude.messages.stream(
                model="m", max_tokens=100,
                messages=[{"role": "user", "content": "hello"}]) as streamed:
            text = "".join([piece async for piece in streamed.text_stream])
            final = await streamed.get_final_message()
        assert text == "Hello there, from the scripted model"
        carried.append((final.usage.input_tokens, final.usage.output_tokens))

        response = await oai.responses.create(model="m", input="hello")
        assert response.output_text == "Hello there, from the scripted model"
        assert response.usage is not None
        carried.append((response.usage.input_tokens, response.usage.output_tokens))
        tooled = await oai.responses.create(model="m", input="weather?",
                                            tools=WEATHER_RESPONSES)
        assert tooled.output[0].type == "function_call"
        assert tooled.output[0].name == "weather"
        assert tooled.usage is not None
        carried.append((tooled.usage.input_tokens, tooled.usage.output_tokens))
        events = []
        async with oai.responses.stream(model="m", input="hello") as flowing:
            async for event in flowing:
                events.append(event.type)
            done = await flowing.get_final_response()
        assert events[0] == "response.created"
        assert events[-1] == "response.completed"
        assert done.output_text == "Hello there, from the scripted model"
        assert done.usage is not None
        carried.append((done.usage.input_tokens, done.usage.output_tokens))
        await oai.close()
        await claude.close()
    entries = store.ledger(hive_id=hive.id)
    assert len(entries) == 9
    assert {(e.agent_id, e.task_id) for e in entries} == {(agent.id, task.id)}
    assert sorted((e.prompt_tokens, e.completion_tokens) for e in entries) == sorted(carried)
    assert gateway.served.calls == 9
    assert {r["key"] for r in gateway.requests} == {"sk-test"}  # the gateway key, not the token
    assert {r["protocol"] for r in gateway.requests} == {"chat", "messages", "responses"}
    # The cost LiteLLM reports: its header on plain answers, usage.cost in a chat stream.
    priced = [e for e in entries if e.cost_source == "gateway"]
    assert len(priced) == 4
    assert all(e.cost == pytest.approx(0.002) for e in priced)
    # Each call is in the per-model histograms of /metrics too, as the client's own calls are.
    assert sum(latency.count for latency, _, _ in MODEL_CALLS.snapshot().values()) == timed + 9


async def test_a_token_bills_its_own_attempt_and_stops_with_it(
        relay: ModelRelay, make_hive: HiveMaker, store: SqlStore,
        gateway: ScriptedGateway, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    hive, (one, two), _ = make_hive(agents=2)
    with relay.attempt(CallContext(hive.id, one.id)) as (token, _):
        pass
    before = gateway.request_count
    oai, claude = sdks(relay, token)
    with pytest.raises(openai.AuthenticationError) as refused:
        await oai.chat.completions.create(model="m",
                                          messages=[{"role": "user", "content": "hello"}])
    assert "expired" in str(refused.value)
    with pytest.raises(anthropic.AuthenticationError) as shaped:
        await claude.messages.create(model="m", max_tokens=10,
                                     messages=[{"role": "user", "content": "hello"}])
    assert shaped.value.body["type"] == "error"  # type: ignore[index]
    with pytest.raises(openai.AuthenticationError):
        await sdks(relay, "sk-test")[0].models.list()  # the gateway key is no token either
    assert gateway.request_count == before
    assert store.ledger(hive_id=hive.id) == []
    with relay.attempt(CallContext(hive.id, two.id)) as (live, _):
        async with httpx.AsyncClient(base_url=relay.url) as http:
            answered = await http.post("/v1/chat/completions", headers={
                "authorization": f"Bearer {live}"}, json={
                "model": "m", "messages": [{"role": "user", "content": "hello"}]})
    assert answered.status_code == 200
    assert [e.agent_id for e in store.ledger(hive_id=hive.id)] == [two.id]
    for secret in (token, live):
        assert secret not in caplog.text
        assert not [e for e in store.events(hive.id) if secret in str(e.data)]
    await oai.close()
    await claude.close()


async def test_a_budget_stop_refuses_in_the_protocols_shape_and_halts_the_attempt(
        relay: ModelRelay, make_hive: HiveMaker, store: SqlStore,
        gateway: ScriptedGateway) -> None:
    hive, (agent,), _ = make_hive(budget=Budget(max_tokens=40))
    with relay.attempt(CallContext(hive.id, agent.id)) as (token, grant):
        oai, claude = sdks(relay, token)
        await oai.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hello " * 60}], max_tokens=5)
        served = gateway.request_count
        with pytest.raises(anthropic.APIStatusError) as stopped:
            await claude.messages.create(model="m", max_tokens=10,
                                         messages=[{"role": "user", "content": "hello"}])
        assert stopped.value.status_code == 402
        assert stopped.value.body["error"]["type"] == "budget_exceeded"  # type: ignore[index]
        assert isinstance(grant.stop, BudgetExceeded)
        assert grant.stopped.is_set()
        with pytest.raises(openai.PermissionDeniedError):
            await oai.chat.completions.create(model="m",
                                              messages=[{"role": "user", "content": "hello"}])
        assert gateway.request_count == served
        await oai.close()
        await claude.close()
    assert len(store.ledger(hive_id=hive.id)) == 1


async def test_a_refused_gateway_key_pauses_the_hive_like_the_built_in_agent(
        make_client: Callable[..., GatewayClient], make_hive: HiveMaker, store: SqlStore,
        gateway: ScriptedGateway) -> None:
    paused: list[str] = []
    client = make_client(api_key="sk-wrong", on_pause=lambda hive_id, _e: paused.append(hive_id))
    relay = await client.relay()
    hive, (agent,), _ = make_hive()
    with relay.attempt(CallContext(hive.id, agent.id)) as (token, grant):
        _, claude = sdks(relay, token)
        with pytest.raises(anthropic.PermissionDeniedError) as refused:
            await claude.messages.create(model="m", max_tokens=10,
                                         messages=[{"role": "user", "content": "hello"}])
        await claude.close()
    assert "refused the key" in str(refused.value)
    assert isinstance(grant.stop, GatewayAuthError)
    assert store.get_hive(hive.id).status is HiveStatus.PAUSED
    assert paused == [hive.id]
    assert store.ledger(hive_id=hive.id) == []


async def test_a_refusal_of_a_call_begun_before_a_resume_leaves_the_hive_running(
        make_client: Callable[..., GatewayClient], make_hive: HiveMaker, store: SqlStore,
        gateway: ScriptedGateway) -> None:
    # The relay's straggler, as the built-in agent's: the person's resume stands.
    arrived = threading.Event()
    gateway.add_rules({"match": Match(when=lambda _: arrived.set() is None), "hold": "late",
                       "fault": "key_refused"}, first=True)
    paused: list[str] = []
    client = make_client(on_pause=lambda hive_id, _e: paused.append(hive_id))
    relay = await client.relay()
    hive, (agent,), _ = make_hive()
    with relay.attempt(CallContext(hive.id, agent.id)) as (token, grant):
        _, claude = sdks(relay, token)
        call = asyncio.create_task(claude.messages.create(
            model="m", max_tokens=10, messages=[{"role": "user", "content": "hello"}]))
        assert await asyncio.to_thread(arrived.wait, 30)
        store.set_hive_status(hive.id, HiveStatus.PAUSED, reason="gateway refused the key")
        store.set_hive_status(hive.id, HiveStatus.RUNNING)
        gateway.open_gate("late")
        with pytest.raises(anthropic.PermissionDeniedError, match="refused the key"):
            await call
        await claude.close()
    assert isinstance(grant.stop, GatewayAuthError)
    assert grant.stop.hive_paused, "the engine must not pause the hive for it either"
    assert store.get_hive(hive.id).status is HiveStatus.RUNNING
    assert len(store.events(hive.id, kinds=["hive_paused"])) == 1
    assert paused == []


@pytest.mark.parametrize(("path", "body", "said"), [
    ("/v1/chat/completions", b"{not json", "bad request"),
    ("/v1/messages", b"[1, 2]", "not a JSON object"),
    ("/v1/responses", b'{"input": "hi"}', "names no model"),
    ("/v1/messages", b'{"model": "m", "messages": "hello"}', "list of messages"),
    ("/v1/responses", b'{"model": "m"}', "needs an input"),
])
async def test_hostile_requests_get_one_clear_line_and_reach_nothing(
        relay: ModelRelay, make_hive: HiveMaker, store: SqlStore, gateway: ScriptedGateway,
        path: str, body: bytes, said: str) -> None:
    hive, (agent,), _ = make_hive()
    before = gateway.request_count
    with relay.attempt(CallContext(hive.id, agent.id)) as (token, _):
        async with httpx.AsyncClient(base_url=relay.url) as http:
            answer = await http.post(path, content=body, headers={
                "authorization": f"Bearer {token}", "content-type": "application/json"})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert said in error["message"]
    assert gateway.request_count == before
    assert store.ledger(hive_id=hive.id) == []


async def test_an_unreachable_gateway_and_a_paused_hive_record_nothing(
        make_client: Callable[..., GatewayClient], make_hive: HiveMaker,
        store: SqlStore) -> None:
    import socket

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    client = make_client(base_url=f"http://127.0.0.1:{port}/v1")
    relay = await client.relay()
    hive, (agent,), _ = make_hive()
    with relay.attempt(CallContext(hive.id, agent.id)) as (token, grant):
        oai, claude = sdks(relay, token)
        with pytest.raises(openai.InternalServerError) as unreachable:
            await oai.chat.completions.create(model="m",
                                              messages=[{"role": "user", "content": "hi"}])
        assert unreachable.value.status_code == 502
        with pytest.raises(openai.InternalServerError):
            await oai.models.list()
        store.set_hive_status(hive.id, HiveStatus.PAUSED, reason="paused by a person")
        with pytest.raises(anthropic.PermissionDeniedError, match="paused by a person"):
            await claude.messages.create(model="m", max_tokens=5,
                                         messages=[{"role": "user", "content": "hi"}])
        await oai.close()
        await claude.close()
    assert grant.stop is None  # neither stops the attempt: the agent decides what to do
    assert store.ledger(hive_id=hive.id) == []


def test_a_relay_address_must_be_host_and_port() -> None:
    from ruflo.errors import ConfigError
    from ruflo.gateway.relay import parse_address

    assert parse_address("127.0.0.1:4001") == ("127.0.0.1", 4001)
    assert parse_address("[::1]:0") == ("::1", 0)
    for wrong in ("4001", "localhost", "127.0.0.1:port", "127.0.0.1:70000", ":4001"):
        with pytest.raises(ConfigError, match="RUFLO_RELAY_ADDRESS"):
            parse_address(wrong)


async def test_an_address_in_use_is_one_clear_line(
        relay: ModelRelay, make_client: Callable[..., GatewayClient]) -> None:
    from ruflo.errors import ConfigError

    taken = make_client(relay_address=f"127.0.0.1:{relay.port}")
    with pytest.raises(ConfigError, match=r"could not listen on .*RUFLO_RELAY_ADDRESS"):
        await taken.relay()


async def test_streamed_tool_calls_pass_through_and_are_metered(
        relay: ModelRelay, make_hive: HiveMaker, store: SqlStore) -> None:
    hive, (agent,), _ = make_hive()
    carried: list[tuple[int, int]] = []
    with relay.attempt(CallContext(hive.id, agent.id)) as (token, _):
        oai, claude = sdks(relay, token)
        calls: dict[int, str] = {}
        async for chunk in await oai.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "weather?"}],
                tools=WEATHER_CHAT, stream=True):
            for choice in chunk.choices:
                for call in choice.delta.tool_calls or []:
                    calls[call.index] = calls.get(call.index, "") + (
                        call.function.arguments or "" if call.function else "")
            if chunk.usage is not None:
                carried.append((chunk.usage.prompt_tokens, chunk.usage.completion_tokens))
        assert calls == {0: '{"city": "Oslo"}'}
        async with claude.messages.stream(
                model="m", max_tokens=100, tools=WEATHER_ANTHROPIC,
                messages=[{"role": "user", "content": "weather?"}]) as streamed:
            message = await streamed.get_final_message()
        assert message.content[0].type == "tool_use"
        assert message.content[0].input == {"city": "Oslo"}
        carried.append((message.usage.input_tokens, message.usage.output_tokens))
        async with oai.responses.stream(model="m", input="weather?",
                                        tools=WEATHER_RESPONSES) as flowing:
            response = await flowing.get_final_response()
        assert response.output[0].type == "function_call"
        assert response.usage is not None
        carried.append((response.usage.input_tokens, response.usage.output_tokens))
        await oai.close()
        await claude.close()
    entries = store.ledger(hive_id=hive.id)
    assert sorted((e.prompt_tokens, e.completion_tokens) for e in entries) == sorted(carried)
    assert len(entries) == 3
    assert all(e.cost_source != "estimate" for e in entries)  # whole answers, usage read


async def test_a_malformed_stream_option_is_replaced_and_the_stream_metered(
        relay: ModelRelay, make_hive: HiveMaker, store: SqlStore,
        gateway: ScriptedGateway) -> None:
    hive, (agent,), _ = make_hive()
    with relay.attempt(CallContext(hive.id, agent.id)) as (token, _):
        async with httpx.AsyncClient(base_url=relay.url) as http:
            answer = await http.post("/v1/chat/completions", headers={
                "authorization": f"Bearer {token}"}, json={
                "model": "m", "stream": True, "stream_options": "all",
                "messages": [{"role": "user", "content": "hello"}]})
    assert answer.status_code == 200
    assert answer.text.endswith("data: [DONE]\n\n")
    [entry] = store.ledger(hive_id=hive.id)
    assert entry.cost_source == "gateway"  # the usage chunk the relay asked for came
