"""Every gateway failure, over real HTTP to a ScriptedGateway: classified, retried or not as its
class says, and worded for a person."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest

from ruflo.errors import (
    GatewayAuthError,
    GatewayBadResponse,
    GatewayBudgetError,
    GatewayError,
    GatewayRateLimited,
    GatewayRequestRejected,
    GatewayUnavailable,
)
from ruflo.gateway.base import CallContext
from ruflo.gateway.classify import retry_after_seconds
from ruflo.gateway.client import GatewayClient, RetryPolicy
from ruflo.gateway.scripted import ScriptedGateway

HELLO = [{"role": "user", "content": "hello"}]
NOBODY = CallContext()


@pytest.mark.parametrize("fault", [
    "key_refused", "auth_error", "key_blocked", "no_db_connection",
    {"status": 403, "type": "forbidden", "message": "not allowed"},
    {"status": 400, "type": "auth_error", "message": "Authentication Error"},
])
async def test_a_refused_key_is_never_retried(gateway: ScriptedGateway,
                                              make_client: Callable[..., GatewayClient],
                                              fault: object) -> None:
    gateway.add_rules({"fault": fault})
    client = make_client()
    with pytest.raises(GatewayAuthError) as caught:
        await client.chat(HELLO, model="gpt-4o-mini", context=NOBODY)
    assert gateway.chat_count == 1
    message = str(caught.value)
    assert "virtual key" in message
    assert "not a provider key" in message
    assert gateway.base_url in message
    assert "\n" not in message


async def test_a_wrong_key_is_refused(gateway: ScriptedGateway,
                                      make_client: Callable[..., GatewayClient]) -> None:
    client = make_client(api_key="sk-ant-provider-key")
    with pytest.raises(GatewayAuthError, match="token_not_found_in_db"):
        await client.chat(HELLO, model="gpt-4o-mini", context=NOBODY)


@pytest.mark.parametrize("status", [400, 429])
async def test_a_spent_gateway_budget_is_recognised_by_type_not_status(
        gateway: ScriptedGateway, make_client: Callable[..., GatewayClient],
        status: int) -> None:
    gateway.add_rules({"fault": {"kind": "budget_exceeded", "status": status,
                                 "retry_after": 0.01}})
    client = make_client()
    with pytest.raises(GatewayBudgetError, match="budget is spent"):
        await client.chat(HELLO, model="gpt-4o-mini", context=NOBODY)
    assert gateway.chat_count == 1


async def test_429_waits_as_retry_after_says_then_succeeds(
        gateway: ScriptedGateway, make_client: Callable[..., GatewayClient]) -> None:
    gateway.add_rules({"fault": {"kind": "rate_limited", "retry_after": 0.2}, "times": 2})
    client = make_client()
    result = await client.chat(HELLO, model="gpt-4o-mini", context=NOBODY)
    assert result.content == "ok"
    assert gateway.chat_count == 3


async def test_429_is_bounded_in_attempts(gateway: ScriptedGateway,
                                          make_client: Callable[..., GatewayClient]) -> None:
    gateway.add_rules({"fault": {"kind": "rate_limited", "retry_after": 0.01}})
    client = make_client()
    with pytest.raises(GatewayRateLimited, match="after 3 attempts"):
        await client.chat(HELLO, model="gpt-4o-mini", context=NOBODY)
    assert gateway.chat_count == 3


async def test_429_asking_too_long_a_wait_is_given_up_at_once(
        gateway: ScriptedGateway, make_client: Callable[..., GatewayClient]) -> None:
    gateway.add_rules({"fault": {"kind": "rate_limited", "retry_after": 3600}})
    client = make_client()
    with pytest.raises(GatewayRateLimited):
        await client.chat(HELLO, model="gpt-4o-mini", context=NOBODY)
    assert gateway.chat_count == 1


async def test_429_bounded_in_total_time(gateway: ScriptedGateway,
                                         make_client: Callable[..., GatewayClient]) -> None:
    gateway.add_rules({"fault": {"kind": "rate_limited", "retry_after": 0.3}})
    client = make_client(retry=RetryPolicy(attempts=50, timeout=1.0, max_retry_after=5.0))
    with pytest.raises(GatewayRateLimited):
        await client.chat(HELLO, model="gpt-4o-mini", context=NOBODY)
    assert 2 <= gateway.chat_count <= 5


@pytest.mark.parametrize("fault", ["server_error", "unavailable",
                                   {"status": 502, "type": "x", "message": "<html>bad gw"}])
async def test_5xx_is_retried_then_succeeds(gateway: ScriptedGateway,
                                            make_client: Callable[..., GatewayClient],
                                            fault: object) -> None:
    gateway.add_rules({"fault": fault, "times": 2})
    client = make_client()
    result = await client.chat(HELLO, model="gpt-4o-mini", context=NOBODY)
    assert result.content == "ok"
    assert gateway.chat_count == 3


async def test_5xx_is_bounded(gateway: ScriptedGateway,
                              make_client: Callable[..., GatewayClient]) -> None:
    gateway.add_rules({"fault": "server_error"})
    client = make_client()
    with pytest.raises(GatewayUnavailable, match="after 3 attempts") as caught:
        await client.chat(HELLO, model="gpt-4o-mini", context=NOBODY)
    assert gateway.chat_count == 3
    assert "ruflo doctor" in str(caught.value)


async def test_connection_refused_is_unavailable(
        make_client: Callable[..., GatewayClient]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = make_client(base_url=f"http://127.0.0.1:{port}/v1")
    with pytest.raises(GatewayUnavailable, match="connection failed"):
        await client.chat(HELLO, model="gpt-4o-mini", context=NOBODY)


async def test_a_slow_gateway_times_out_and_is_retried_boundedly(
        gateway: ScriptedGateway, make_client: Callable[..., GatewayClient]) -> None:
    gateway.add_rules({"reply": {"content": "late"}, "delay": 1.0})
    client = make_client(timeout=0.2)
    with pytest.raises(GatewayUnavailable, match="timed out"):
        await client.chat(HELLO, model="gpt-4o-mini", context=NOBODY)
    assert gateway.chat_count == 3


@pytest.mark.parametrize("fault", [
    "malformed",
    "cut_stream",
    {"malformed": True, "body": '{"id": "x", "object": "chat.completion"}'},
    {"malformed": True, "body": '{"choices": [{"index": 0}]}'},
    {"malformed": True, "body": '{"choices": [{"message": {"content": 5}}]}'},
    {"malformed": True, "body": '[1, 2, 3]'},
    {"malformed": True, "body": '{"choices": [{"message": {"content": "x", "tool_calls": '
                                '[{"id": "c", "function": {}}]}}]}'},
])
async def test_a_malformed_answer_is_a_clear_error_naming_the_gateway(
        gateway: ScriptedGateway, make_client: Callable[..., GatewayClient],
        fault: object) -> None:
    gateway.add_rules({"reply": {"content": "a long enough answer to be cut"}, "fault": fault})
    client = make_client()
    with pytest.raises(GatewayBadResponse) as caught:
        await client.chat(HELLO, model="gpt-4o-mini", context=NOBODY)
    assert gateway.base_url in str(caught.value)
    assert "OPENAI_BASE_URL" in str(caught.value)
    assert gateway.chat_count == 1


async def test_an_unknown_model_is_rejected_not_retried(
        gateway: ScriptedGateway, make_client: Callable[..., GatewayClient]) -> None:
    gateway.add_rules({"fault": {"status": 404, "type": "not_found_error",
                                 "message": "model nope does not exist"}})
    client = make_client()
    with pytest.raises(GatewayRequestRejected, match="model nope does not exist"):
        await client.chat(HELLO, model="nope", context=NOBODY)
    assert gateway.chat_count == 1


async def test_a_hostile_error_message_stays_one_line(
        gateway: ScriptedGateway, make_client: Callable[..., GatewayClient]) -> None:
    gateway.add_rules({"fault": {"status": 400, "type": "bad",
                                 "message": "line1\nline2\r\n" + "x" * 5000}})
    client = make_client()
    with pytest.raises(GatewayError) as caught:
        await client.chat(HELLO, model="m", context=NOBODY)
    assert "\n" not in str(caught.value)
    assert len(str(caught.value)) < 800


async def test_a_stream_that_fails_to_open_is_classified(
        gateway: ScriptedGateway, make_client: Callable[..., GatewayClient]) -> None:
    gateway.add_rules({"fault": "key_refused"})
    client = make_client()
    with pytest.raises(GatewayAuthError):
        async for _ in client.stream(HELLO, model="m", context=NOBODY):
            pass


async def test_a_stream_opening_retries_5xx(gateway: ScriptedGateway,
                                            make_client: Callable[..., GatewayClient]) -> None:
    gateway.add_rules({"fault": "unavailable", "times": 1},
                      {"reply": {"content": "streamed fine"}})
    client = make_client()
    deltas = [d async for d in client.stream(HELLO, model="m", context=NOBODY)]
    assert deltas[-1].result is not None
    assert deltas[-1].result.content == "streamed fine"
    assert gateway.chat_count == 2


@pytest.mark.parametrize(("headers", "seconds"), [
    ({"retry-after": "2"}, 2.0),
    ({"retry-after": "0.5"}, 0.5),
    ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
    ({"retry-after": "-3"}, 0.0),
    ({"retry-after": "soon"}, None),
    ({"retry-after": ""}, None),
    ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),
    ({"retry-after-ms": "x"}, None),
    ({}, None),
])
def test_retry_after_is_read_defensively(headers: dict[str, str],
                                         seconds: float | None) -> None:
    assert retry_after_seconds(headers) == seconds
