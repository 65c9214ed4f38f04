"""The ScriptedGateway's Anthropic Messages and OpenAI Responses, held to the official SDKs:
one set of rules for every protocol, tool round trips, streamed tool calls, max_tokens cuts."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import openai
import pytest

from ruflo.gateway.scripted import ScriptedGateway

KEY = "sk-test"
RULES: list[dict[str, Any]] = [
    {"name": "answer", "match": {"last_tool": "sunny"},
     "reply": {"content": "It is sunny in Oslo."}},
    {"name": "ask", "match": {"last_user": "weather", "tool": "weather"},
     "reply": {"content": "Let me look.", "chunk": 3, "tool_calls": [
         {"id": "call_w1", "name": "weather", "arguments": {"city": "Oslo"}}]}},
    {"name": "long", "match": {"last_user": "long"},
     "reply": {"content": "word " * 100, "chunk": 7}},
]
TOOL_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}}


@pytest.fixture
def clients(gateway: ScriptedGateway) -> tuple[anthropic.AsyncAnthropic, openai.AsyncOpenAI]:
    gateway.set_rules(RULES)
    root = gateway.base_url.removesuffix("/v1")
    return (anthropic.AsyncAnthropic(base_url=root, api_key=KEY, max_retries=0),
            openai.AsyncOpenAI(base_url=gateway.base_url, api_key=KEY, max_retries=0))


async def test_an_anthropic_tool_round_trip_streamed_and_plain(
        clients: tuple[anthropic.AsyncAnthropic, openai.AsyncOpenAI],
        gateway: ScriptedGateway) -> None:
    claude, _ = clients
    tools: Any = [{"name": "weather", "input_schema": TOOL_SCHEMA}]
    ask: Any = [{"role": "user", "content": "weather in Oslo?"}]
    async with claude.messages.stream(model="m", max_tokens=200, tools=tools,
                                      messages=ask) as stream:
        first = await stream.get_final_message()
    assert first.stop_reason == "tool_use"
    text, use = first.content
    assert text.type == "text"
    assert text.text == "Let me look."
    assert use.type == "tool_use"
    assert (use.name, use.input) == ("weather", {"city": "Oslo"})
    answered = await claude.messages.create(model="m", max_tokens=200, tools=tools, messages=[
        *ask, {"role": "assistant", "content": first.content},  # type: ignore[list-item]
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                      "content": "sunny, 21 C"}]}])
    assert answered.content[0].type == "text"
    assert answered.content[0].text == "It is sunny in Oslo."
    assert [r["rule"] for r in gateway.requests] == ["ask", "answer"]
    assert gateway.requests[1]["messages"][-1] == {"role": "tool", "tool_call_id": use.id,
                                                   "content": "sunny, 21 C"}
    await claude.close()


async def test_a_responses_tool_round_trip_streamed_and_plain(
        clients: tuple[anthropic.AsyncAnthropic, openai.AsyncOpenAI],
        gateway: ScriptedGateway) -> None:
    _, oai = clients
    tools: Any = [{"type": "function", "name": "weather", "parameters": TOOL_SCHEMA}]
    async with oai.responses.stream(model="m", input="weather in Oslo?",
                                    tools=tools) as stream:
        kinds = [event.type async for event in stream]
        first = await stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds
    assert kinds[-1] == "response.completed"
    call = next(item for item in first.output if item.type == "function_call")
    assert json.loads(call.arguments) == {"city": "Oslo"}
    answered = await oai.responses.create(model="m", tools=tools, input=[
        {"role": "user", "content": "weather in Oslo?"},
        {"type": "function_call", "call_id": call.call_id, "name": "weather",
         "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}])
    assert answered.output_text == "It is sunny in Oslo."
    assert [r["rule"] for r in gateway.requests] == ["ask", "answer"]
    await oai.close()


async def test_max_tokens_cuts_the_answer_in_each_protocols_terms(
        clients: tuple[anthropic.AsyncAnthropic, openai.AsyncOpenAI]) -> None:
    claude, oai = clients
    message = await claude.messages.create(model="m", max_tokens=5,
                                           messages=[{"role": "user", "content": "long"}])
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 5
    response = await oai.responses.create(model="m", input="long", max_output_tokens=5)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.usage is not None
    assert response.usage.output_tokens == 5
    await claude.close()
    await oai.close()


async def test_a_refused_key_is_refused_in_every_protocol(
        clients: tuple[anthropic.AsyncAnthropic, openai.AsyncOpenAI],
        gateway: ScriptedGateway) -> None:
    claude, oai = clients
    gateway.revoke_key(KEY)
    with pytest.raises(anthropic.AuthenticationError):
        await claude.messages.create(model="m", max_tokens=5,
                                     messages=[{"role": "user", "content": "long"}])
    with pytest.raises(openai.AuthenticationError):
        await oai.responses.create(model="m", input="long")
    gateway.restore_key(KEY)
    await claude.close()
    await oai.close()
