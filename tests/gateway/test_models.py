"""The model list: cached with a TTL, one request for concurrent refreshes, the last good list
kept (and the error recorded) when the gateway fails."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from ruflo.errors import ConfigError, GatewayAuthError, GatewayUnavailable
from ruflo.gateway.client import GatewayClient
from ruflo.gateway.scripted import ScriptedGateway
from waiting import until

KEY = "sk-test"


async def test_the_list_is_cached_for_its_ttl(gateway: ScriptedGateway,
                                              make_client: Callable[..., GatewayClient]) -> None:
    client = make_client(models_ttl=60)
    first = await client.models()
    assert [m.id for m in first] == ["gpt-4o-mini", "scripted"]
    assert first[0].owned_by == "scripted"
    await client.models()
    assert gateway.models_count == 1
    await client.models(refresh=True)
    assert gateway.models_count == 2
    status = client.models_status
    assert status.ok
    assert status.count == 2
    assert status.refreshed_at is not None


async def test_an_expired_list_is_fetched_again(gateway: ScriptedGateway,
                                                make_client: Callable[..., GatewayClient]) -> None:
    client = make_client(models_ttl=0.05)
    await client.models()
    await asyncio.sleep(0.1)  # the list's age is what is tested: the client reads real time
    await client.models()
    assert gateway.models_count == 2


async def test_concurrent_refreshes_share_one_request(
        gateway: ScriptedGateway, make_client: Callable[..., GatewayClient]) -> None:
    gateway.reset({"keys": [KEY], "models_delay": 0.2, "models": ["a", "b", "c"]})
    client = make_client()
    lists = await asyncio.gather(*(client.models(refresh=True) for _ in range(20)))
    assert all([m.id for m in found] == ["a", "b", "c"] for found in lists)
    assert gateway.models_count == 1


async def test_a_cancelled_caller_does_not_cancel_the_shared_refresh(
        gateway: ScriptedGateway, make_client: Callable[..., GatewayClient]) -> None:
    gateway.reset({"keys": [KEY], "models_delay": 0.2})
    client = make_client()
    impatient = asyncio.ensure_future(client.models())
    patient = asyncio.ensure_future(client.models())
    await until(lambda: gateway.models_count == 1, what="the shared refresh never started")
    impatient.cancel()
    assert len(await patient) == 2
    assert gateway.models_count == 1


async def test_a_failed_refresh_keeps_the_last_good_list(
        gateway: ScriptedGateway, make_client: Callable[..., GatewayClient]) -> None:
    client = make_client()
    good = await client.models()
    gateway.set_fault("unavailable")
    kept = await client.models(refresh=True)
    assert kept == good
    status = client.models_status
    assert not status.ok
    assert status.error is not None
    assert "unavailable" in status.error
    assert status.checked_at is not None
    assert status.refreshed_at is not None
    assert status.checked_at > status.refreshed_at
    assert client.cached_models() == good
    gateway.clear_fault()
    await client.models(refresh=True)
    assert client.models_status.ok


async def test_no_list_at_all_raises_the_classified_error(
        gateway: ScriptedGateway, make_client: Callable[..., GatewayClient]) -> None:
    gateway.set_fault("server_error")
    client = make_client()
    with pytest.raises(GatewayUnavailable):
        await client.models()
    assert client.cached_models() == []
    assert not client.models_status.ok
    gateway.reset()
    gateway.revoke_key(KEY)
    with pytest.raises(GatewayAuthError, match="virtual key"):
        await make_client().models()


async def test_a_list_that_is_not_a_list_is_a_bad_response(
        gateway: ScriptedGateway, make_client: Callable[..., GatewayClient]) -> None:
    gateway.set_fault("malformed")
    with pytest.raises(Exception, match="not what an OpenAI-compatible API sends"):
        await make_client().models()


def test_missing_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="OPENAI_BASE_URL"):
        GatewayClient("", "k")
    with pytest.raises(ConfigError, match="virtual key"):
        GatewayClient("http://127.0.0.1:9/v1", "")
