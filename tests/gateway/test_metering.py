"""Every call leaves a ledger entry: cost from the gateway's header, else the price table, else
unknown (never zero); streamed calls and tool calls too."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from typing import Any

import pytest

from ruflo.errors import ConfigError, GatewayUnavailable
from ruflo.gateway.base import CallContext
from ruflo.gateway.budget import estimate_prompt_tokens
from ruflo.gateway.client import GatewayClient
from ruflo.gateway.metering import PriceTable
from ruflo.gateway.scripted import Match, ScriptedGateway
from ruflo.model import Budget, CostKind
from ruflo.store.sql import SqlStore

HiveMaker = Callable[..., Any]

ASK = [{"role": "system", "content": "you are terse"}, {"role": "user", "content": "sum it"}]
PRICES = {"gpt-4o-mini": {"prompt": 150.0, "completion": 600.0}}
USAGE = {"prompt_tokens": 1000, "completion_tokens": 500}


async def test_the_gateway_header_cost_wins(gateway: ScriptedGateway, store: SqlStore,
                                            make_client: Callable[..., GatewayClient], make_hive: HiveMaker) -> None:
    hive, agents, tasks = make_hive(tasks=1)
    gateway.add_rules({"reply": {"content": "42", "usage": USAGE, "cost": 0.0123}})
    client = make_client(prices=PRICES)
    context = CallContext(hive_id=hive.id, agent_id=agents[0].id, task_id=tasks[0].id,
                          kind=CostKind.COORDINATION)
    result = await client.chat(ASK, model="gpt-4o-mini", context=context)
    assert result.cost == pytest.approx(0.0123)
    [entry] = store.ledger(hive_id=hive.id)
    assert (entry.cost, entry.cost_source) == (pytest.approx(0.0123), "gateway")
    assert (entry.prompt_tokens, entry.completion_tokens) == (1000, 500)
    assert (entry.agent_id, entry.task_id, entry.kind) == (agents[0].id, tasks[0].id,
                                                           CostKind.COORDINATION)
    assert entry.model == "gpt-4o-mini"
    assert entry.request_id == gateway.requests[-1]["call_id"] == result.request_id
    assert store.get_agent(agents[0].id).spent_tokens == 1500


async def test_the_price_table_prices_a_call_without_header(
        gateway: ScriptedGateway, store: SqlStore,
        make_client: Callable[..., GatewayClient], make_hive: HiveMaker) -> None:
    hive, _agents, _ = make_hive()
    gateway.add_rules({"reply": {"content": "42", "usage": USAGE, "cost": None}})
    client = make_client(prices=PRICES)
    await client.chat(ASK, model="gpt-4o-mini", context=CallContext(hive_id=hive.id))
    [entry] = store.ledger(hive_id=hive.id)
    assert entry.cost_source == "price_table"
    assert entry.cost == pytest.approx((1000 * 150 + 500 * 600) / 1e6)


async def test_an_unknown_cost_is_recorded_as_unknown_never_zero(
        gateway: ScriptedGateway, store: SqlStore,
        make_client: Callable[..., GatewayClient], make_hive: HiveMaker) -> None:
    hive, _, _ = make_hive()
    gateway.add_rules({"reply": {"content": "42", "usage": USAGE}})
    client = make_client(prices=PRICES)
    result = await client.chat(ASK, model="other-model", context=CallContext(hive_id=hive.id))
    assert result.cost is None
    [entry] = store.ledger(hive_id=hive.id)
    assert (entry.cost, entry.cost_source) == (None, "unknown")
    spend = store.spend(hive_id=hive.id)
    assert spend.unknown_cost_calls == 1
    assert spend.tokens == 1500


async def test_a_zero_cost_from_the_gateway_is_a_real_zero(
        gateway: ScriptedGateway, store: SqlStore,
        make_client: Callable[..., GatewayClient], make_hive: HiveMaker) -> None:
    hive, _, _ = make_hive()
    gateway.add_rules({"reply": {"content": "free", "cost": 0.0}})
    await make_client().chat(ASK, model="free-model", context=CallContext(hive_id=hive.id))
    [entry] = store.ledger(hive_id=hive.id)
    assert (entry.cost, entry.cost_source) == (0.0, "gateway")


async def test_a_call_without_usage_is_charged_a_guess_not_nothing(
        gateway: ScriptedGateway, store: SqlStore,
        make_client: Callable[..., GatewayClient], make_hive: HiveMaker) -> None:
    hive, _, _ = make_hive()
    gateway.add_rules({"reply": {"content": "x" * 400, "usage": False}})
    await make_client(prices=PRICES).chat(ASK, model="gpt-4o-mini",
                                          context=CallContext(hive_id=hive.id))
    [entry] = store.ledger(hive_id=hive.id)
    assert entry.completion_tokens == 100
    assert entry.prompt_tokens > 0
    assert (entry.cost, entry.cost_source) == (None, "unknown")


async def test_tool_calls_come_back_and_are_metered(
        gateway: ScriptedGateway, store: SqlStore,
        make_client: Callable[..., GatewayClient], make_hive: HiveMaker) -> None:
    hive, _, _ = make_hive()
    tools = [{"type": "function", "function": {"name": "write_file", "parameters": {
        "type": "object", "properties": {"path": {"type": "string"}}}}}]
    gateway.add_rules({"match": {"tool": "write_file", "turn": 1},
                       "reply": {"tool_calls": [{"name": "write_file",
                                                 "arguments": {"path": "a.txt"}}]}},
                      {"match": {"last_tool": "written", "turn": 2},
                       "reply": {"content": "done"}})
    client = make_client()
    context = CallContext(hive_id=hive.id)
    first = await client.chat(ASK, model="m", context=context, tools=tools)
    assert first.finish_reason == "tool_calls"
    assert first.content is None
    [call] = first.tool_calls
    assert call.name == "write_file"
    assert json.loads(call.arguments) == {"path": "a.txt"}
    conversation = [*ASK, first.as_message(),
                    {"role": "tool", "tool_call_id": call.id, "content": "written 3 bytes"}]
    second = await client.chat(conversation, model="m", context=context, tools=tools)
    assert second.content == "done"
    assert gateway.requests[0]["tools"] == tools
    assert len(store.ledger(hive_id=hive.id)) == 2


async def test_a_stream_is_metered_from_its_last_chunk(
        gateway: ScriptedGateway, store: SqlStore,
        make_client: Callable[..., GatewayClient], make_hive: HiveMaker) -> None:
    hive, _, _ = make_hive()
    gateway.add_rules({"reply": {"content": "streamed words here", "usage": USAGE,
                                 "chunk": 4}})
    client = make_client(prices=PRICES)
    deltas = [d async for d in client.stream(ASK, model="gpt-4o-mini",
                                             context=CallContext(hive_id=hive.id))]
    assert "".join(d.text for d in deltas) == "streamed words here"
    assert len(deltas) > 3
    final = deltas[-1]
    assert final.done
    assert final.result is not None
    assert final.result.content == "streamed words here"
    assert final.result.usage.total_tokens == 1500
    [entry] = store.ledger(hive_id=hive.id)
    assert (entry.prompt_tokens, entry.completion_tokens) == (1000, 500)
    assert entry.cost_source == "price_table"
    assert gateway.requests[-1]["stream"] is True


async def test_a_streamed_tool_call_is_assembled(
        gateway: ScriptedGateway, make_client: Callable[..., GatewayClient]) -> None:
    arguments = {"path": "deep/dir/file.txt", "text": "a longer body " * 5}
    gateway.add_rules({"reply": {"tool_calls": [{"name": "write_file", "arguments": arguments},
                                                {"name": "done", "arguments": {}}]}})
    client = make_client()
    deltas = [d async for d in client.stream(ASK, model="m", context=CallContext())]
    result = deltas[-1].result
    assert result is not None
    assert result.content is None
    assert [c.name for c in result.tool_calls] == ["write_file", "done"]
    assert json.loads(result.tool_calls[0].arguments) == arguments


async def test_a_cut_stream_raises_and_is_metered_as_an_estimate(
        gateway: ScriptedGateway, store: SqlStore,
        make_client: Callable[..., GatewayClient], make_hive: HiveMaker) -> None:
    hive, _, _ = make_hive()
    gateway.add_rules({"reply": {"content": "this answer will be cut short", "cost": 0.5},
                       "fault": {"cut_after": 3}})
    client = make_client(prices=PRICES)
    seen: list[str] = []

    async def read() -> None:
        async for delta in client.stream(ASK, model="gpt-4o-mini",
                                         context=CallContext(hive_id=hive.id)):
            seen.append(delta.text)

    with pytest.raises(GatewayUnavailable, match="cut after"):
        await read()
    assert "".join(seen) == "this answer will"[:16]
    assert gateway.chat_count == 1
    [entry] = store.ledger(hive_id=hive.id)
    assert (entry.cost, entry.cost_source) == (None, "estimate")
    assert entry.completion_tokens == len("this answer will") // 4


@pytest.mark.parametrize("cost", [0.0123, 0.0, 2.5e-06])
async def test_a_streams_cost_is_read_from_its_last_chunk_as_litellm_sends_it(
        gateway: ScriptedGateway, store: SqlStore, make_client: Callable[..., GatewayClient],
        make_hive: HiveMaker, cost: float) -> None:
    hive, _, _ = make_hive()
    gateway.add_rules({"reply": {"content": "streamed words", "usage": USAGE, "cost": cost}})
    client = make_client(prices=PRICES)
    deltas = [d async for d in client.stream(ASK, model="gpt-4o-mini",
                                             context=CallContext(hive_id=hive.id))]
    result = deltas[-1].result
    assert result is not None
    assert result.cost == cost
    [entry] = store.ledger(hive_id=hive.id)
    assert (entry.cost, entry.cost_source) == (cost, "gateway")
    served = gateway.served
    assert (served.calls, served.total_tokens, served.cost) == (1, entry.total_tokens, cost)


@pytest.mark.parametrize("bad", ["-1", "NaN", "lots", True])
async def test_a_nonsense_stream_cost_falls_back_to_the_price_table(
        gateway: ScriptedGateway, store: SqlStore, make_client: Callable[..., GatewayClient],
        make_hive: HiveMaker, bad: Any) -> None:
    hive, _, _ = make_hive()
    gateway.add_rules({"reply": {"content": "words", "usage": USAGE, "cost": None}})
    client = make_client(prices=PRICES)
    from ruflo.gateway.metering import call_cost

    assert call_cost({}, "gpt-4o-mini", None, PriceTable(PRICES), bad) == (None, "unknown")
    [_ async for _ in client.stream(ASK, model="gpt-4o-mini",
                                    context=CallContext(hive_id=hive.id))]
    [entry] = store.ledger(hive_id=hive.id)
    assert entry.cost_source == "price_table"


async def test_a_reader_that_leaves_a_stream_gets_what_it_was_served_metered(
        gateway: ScriptedGateway, store: SqlStore, make_client: Callable[..., GatewayClient],
        make_hive: HiveMaker) -> None:
    hive, _, _ = make_hive(budget=Budget(max_tokens=1_000_000))
    gateway.add_rules({"reply": {"content": "word " * 200, "chunk": 5}})
    client = make_client(prices=PRICES)
    stream = client.stream(ASK, model="gpt-4o-mini", context=CallContext(hive_id=hive.id))
    seen = [await anext(stream) for _ in range(4)]
    await stream.aclose()  # what `break` out of an `async for` does
    [entry] = store.ledger(hive_id=hive.id)
    assert entry.cost_source == "estimate"
    assert entry.cost is None
    assert entry.completion_tokens == len("".join(d.text for d in seen)) // 4
    assert entry.prompt_tokens > 0
    assert client.budgets is not None
    account = client.budgets.account("hive", hive.id)
    assert (account.reserved_tokens, account.spent_tokens) == (0, entry.total_tokens)


async def test_a_cancelled_reader_of_a_slow_stream_gets_what_it_was_served_metered(
        gateway: ScriptedGateway, store: SqlStore, make_client: Callable[..., GatewayClient],
        make_hive: HiveMaker) -> None:
    hive, _, _ = make_hive(budget=Budget(max_tokens=1_000_000))
    gateway.add_rules({"reply": {"content": "slow words " * 50, "chunk": 4,
                                 "chunk_delay": 0.05}})
    client = make_client(prices=PRICES)
    seen: list[str] = []
    first = asyncio.Event()

    async def read() -> None:  # as the chat page's answer does
        async for delta in client.stream(ASK, model="gpt-4o-mini",
                                         context=CallContext(hive_id=hive.id)):
            seen.append(delta.text)
            if len(seen) > 3:
                first.set()

    reader = asyncio.create_task(read())
    await first.wait()
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    [entry] = store.ledger(hive_id=hive.id)
    assert entry.cost_source == "estimate"
    assert entry.completion_tokens == len("".join(seen)) // 4
    assert len("".join(seen)) < len("slow words " * 50)
    assert client.budgets is not None
    assert client.budgets.account("hive", hive.id).reserved_tokens == 0


def arrived(flag: threading.Event) -> Callable[[Any], bool]:
    """A match that flags the request's arrival at the gateway (and always matches)."""
    def seen(body: Any) -> bool:
        flag.set()
        return True
    return seen


async def test_a_plain_call_whose_caller_is_cancelled_still_lands_in_the_ledger(
        gateway: ScriptedGateway, store: SqlStore, make_client: Callable[..., GatewayClient],
        make_hive: HiveMaker) -> None:
    hive, agents, _ = make_hive(budget=Budget(max_tokens=1_000_000))
    received = threading.Event()
    gateway.add_rules({"match": Match(when=arrived(received)), "delay": 0.5,
                       "reply": {"content": "a slow answer", "usage": USAGE, "cost": 0.02}})
    client = make_client(prices=PRICES)
    context = CallContext(hive_id=hive.id, agent_id=agents[0].id)
    caller = asyncio.create_task(client.chat(ASK, model="gpt-4o-mini", context=context,
                                             max_tokens=700))
    assert await asyncio.to_thread(received.wait, 30)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert client.budgets is not None
    account = client.budgets.account("hive", hive.id)
    assert account.reserved_tokens > 0, "still booked while the gateway answers it"
    await client.drain()
    [entry] = store.ledger(hive_id=hive.id)
    assert (entry.prompt_tokens, entry.completion_tokens) == (1000, 500)
    assert (entry.cost, entry.cost_source) == (0.02, "gateway")
    assert (account.reserved_tokens, account.spent_tokens) == (0, 1500)
    assert store.get_agent(agents[0].id).spent_tokens == 1500
    assert gateway.served.total_tokens == entry.total_tokens


async def test_a_call_still_unanswered_when_the_client_closes_is_metered_as_its_booking(
        gateway: ScriptedGateway, store: SqlStore, make_client: Callable[..., GatewayClient],
        make_hive: HiveMaker) -> None:
    hive, _, _ = make_hive(budget=Budget(max_tokens=1_000_000))
    received = threading.Event()
    gateway.add_rules({"match": Match(when=arrived(received)), "hold": "never",
                       "reply": {"content": "too late"}})
    client = make_client(close_wait=0.0)
    caller = asyncio.create_task(client.chat(ASK, model="m", max_tokens=300,
                                             context=CallContext(hive_id=hive.id)))
    assert await asyncio.to_thread(received.wait, 30)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    await client.aclose()  # a shutdown does not wait for the held answer
    [entry] = store.ledger(hive_id=hive.id)
    assert (entry.cost, entry.cost_source) == (None, "estimate")
    assert (entry.prompt_tokens, entry.completion_tokens) == (estimate_prompt_tokens(ASK), 300)
    assert client.budgets is not None
    assert client.budgets.account("hive", hive.id).reserved_tokens == 0
    gateway.open_gate("never")


async def test_a_call_whose_caller_left_is_not_retried(
        gateway: ScriptedGateway, store: SqlStore, make_client: Callable[..., GatewayClient],
        make_hive: HiveMaker) -> None:
    hive, _, _ = make_hive(budget=Budget(max_tokens=1_000_000))
    received = threading.Event()
    gateway.add_rules({"match": Match(when=arrived(received)), "times": 1,
                       "fault": {"kind": "server_error", "delay": 0.5}},
                      {"reply": {"content": "second try"}})
    client = make_client()
    caller = asyncio.create_task(client.chat(ASK, model="m",
                                             context=CallContext(hive_id=hive.id)))
    assert await asyncio.to_thread(received.wait, 30)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    await client.drain()
    assert gateway.chat_count == 1, "the 500 was not retried for a caller that had left"
    assert store.ledger(hive_id=hive.id) == []
    assert client.budgets is not None
    assert client.budgets.account("hive", hive.id).reserved_tokens == 0


def test_a_bad_price_table_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="USD per 1M"):
        PriceTable({"m": {"prompt": 1.0}})
    with pytest.raises(ConfigError, match="not negative"):
        PriceTable({"m": {"prompt": -1.0, "completion": 1.0}})
    table = PriceTable({"gpt-4o": {"prompt": 1.0, "completion": 2.0}})
    assert table.get("openai/gpt-4o") == table.get("gpt-4o")
