"""Against a real LiteLLM proxy (`litellm[proxy]`, the project's `litellm` extra) started on a
loopback port with a `mock_response` model and a master key, offline, without a database."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ruflo.errors import GatewayAuthError
from ruflo.gateway.base import CallContext
from ruflo.gateway.client import GatewayClient, RetryPolicy
from ruflo.model import Agent, Hive, HiveStatus, Mode, new_id
from ruflo.store.sql import SqlStore
from waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MASTER_KEY = "sk-master-ruflo-test"
CONFIG = f"""\
model_list:
  - model_name: mock-gpt
    litellm_params:
      model: openai/mock-gpt
      api_key: not-a-real-key
      mock_response: "Hello from the mock"
  - model_name: mock-priced
    litellm_params:
      model: openai/gpt-4o-mini
      api_key: not-a-real-key
      mock_response: "A priced answer from the mock, streamed in a few chunks"
general_settings:
  master_key: {MASTER_KEY}
litellm_settings:
  telemetry: false
"""
STARTUP_SECONDS = 180


def _litellm() -> str:
    found = Path(sys.executable).with_name("litellm")
    if found.exists():
        return str(found)
    on_path = shutil.which("litellm")
    if on_path:
        return on_path
    message = "LiteLLM is not installed: pip install -e '.[litellm]'"
    if os.environ.get("CI") or os.environ.get("RUFLO_REQUIRE_POSTGRES") == "1":
        pytest.fail(message)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def litellm_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    program = _litellm()
    folder = tmp_path_factory.mktemp("litellm")
    (folder / "config.yaml").write_text(CONFIG)
    port = _free_port()
    env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(folder),
           "LANG": "C.UTF-8", "LITELLM_LOG": "ERROR",
           # Offline: the bundled cost map instead of a download, no telemetry, no UI build.
           "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False",
           "DISABLE_ADMIN_UI": "True", "NO_DOCS": "True", "NO_REDOC": "True",
           "USE_PRISMA_MIGRATE": "False"}
    log = (folder / "litellm.log").open("w")
    process = subprocess.Popen(
        [program, "--config", str(folder / "config.yaml"), "--host", "127.0.0.1",
         "--port", str(port)], cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        def healthy() -> bool:
            if process.poll() is not None:
                pytest.fail(f"litellm exited with {process.returncode}: "
                            f"{(folder / 'litellm.log').read_text()[-2000:]}")
            try:
                return httpx.get(f"{url}/health/liveliness", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, within=STARTUP_SECONDS,
                   what=f"litellm did not start in {STARTUP_SECONDS} s")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


async def test_the_model_list_a_metered_call_and_a_refused_key(
        litellm_url: str, store: SqlStore) -> None:
    hive_id = new_id()
    agent = Agent(id=new_id(), hive_id=hive_id, name="a")
    store.create_hive(Hive(id=hive_id, name="litellm", mode=Mode.SWARM, objective="x"), [agent])
    retry = RetryPolicy(attempts=2, timeout=30, wait_initial=0.05, wait_max=0.1)
    prices = {"mock-gpt": {"prompt": 1.0, "completion": 2.0}}
    async with GatewayClient(litellm_url, MASTER_KEY, store=store, prices=prices,
                             retry=retry) as client:
        assert {m.id for m in await client.models()} == {"mock-gpt", "mock-priced"}
        context = CallContext(hive_id=hive_id, agent_id=agent.id)
        result = await client.chat([{"role": "user", "content": "hi"}], model="mock-gpt",
                                   context=context)
        assert result.content == "Hello from the mock"
        [entry] = store.ledger(hive_id=hive_id)
        assert entry.model == "mock-gpt"
        assert entry.total_tokens == result.usage.total_tokens > 0
        assert entry.cost_source in ("gateway", "price_table")
        assert entry.cost is not None
        # The request id is LiteLLM's call id header, not the completion id.
        assert entry.request_id == result.request_id
        assert entry.request_id is not None
        assert not entry.request_id.startswith("chatcmpl")

        deltas = [d async for d in client.stream([{"role": "user", "content": "hi"}],
                                                 model="mock-gpt", context=context)]
        assert deltas[-1].result is not None
        assert "".join(d.text for d in deltas) == "Hello from the mock"
        assert len(store.ledger(hive_id=hive_id)) == 2

    async with GatewayClient(litellm_url, "sk-a-provider-key", store=store,
                             retry=retry) as refused:
        with pytest.raises(GatewayAuthError, match="virtual key"):
            await refused.chat([{"role": "user", "content": "hi"}], model="mock-gpt",
                                context=CallContext(hive_id=hive_id, agent_id=agent.id))
        with pytest.raises(GatewayAuthError):
            await refused.models()
    hive = store.get_hive(hive_id)
    assert hive.status is HiveStatus.PAUSED
    assert hive.pause_reason == "gateway refused the key"
    assert len(store.ledger(hive_id=hive_id)) == 2


def _sse(text: str) -> list[dict[str, Any]]:
    events = [line.removeprefix("data: ") for line in text.split("\n\n") if line.strip()]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


async def test_litellm_sends_a_streams_cost_in_its_last_chunk_and_the_ledger_has_it(
        litellm_url: str, store: SqlStore) -> None:
    # What LiteLLM does, pinned (the ScriptedGateway copies it): a plain answer's cost is in
    # the x-litellm-response-cost header; a stream has no such header (its headers leave before
    # the cost is known) and puts the cost in usage.cost of its last chunk.
    auth = {"Authorization": f"Bearer {MASTER_KEY}"}
    ask = {"model": "mock-priced", "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(base_url=f"{litellm_url}/v1", headers=auth,
                                 timeout=30) as http:
        plain = await http.post("/chat/completions", json=ask)
        streamed = await http.post("/chat/completions", json={
            **ask, "stream": True, "stream_options": {"include_usage": True}})
    assert float(plain.headers["x-litellm-response-cost"]) > 0
    assert "x-litellm-response-cost" not in streamed.headers
    chunks = _sse(streamed.text)
    assert all("usage" not in c or c["usage"] is None for c in chunks[:-1])
    usage = chunks[-1]["usage"]
    assert usage["cost"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

    hive_id = new_id()
    agent = Agent(id=new_id(), hive_id=hive_id, name="a")
    store.create_hive(Hive(id=hive_id, name="litellm-stream", mode=Mode.SWARM, objective="x"),
                      [agent])
    # No price table: a cost in the ledger can only have come from the gateway.
    async with GatewayClient(litellm_url, MASTER_KEY, store=store) as client:
        deltas = [d async for d in client.stream(
            [{"role": "user", "content": "hi"}], model="mock-priced",
            context=CallContext(hive_id=hive_id, agent_id=agent.id))]
    result = deltas[-1].result
    assert result is not None
    [entry] = store.ledger(hive_id=hive_id)
    assert (entry.cost, entry.cost_source) == (usage["cost"], "gateway")
    assert (entry.prompt_tokens, entry.completion_tokens) == (usage["prompt_tokens"],
                                                              usage["completion_tokens"])
    assert result.cost == usage["cost"]


async def test_the_relay_in_front_of_litellm_in_three_protocols(
        litellm_url: str, store: SqlStore) -> None:
    # Each protocol through the relay to a real LiteLLM: the answer as LiteLLM sent it, one
    # ledger entry per call with the tokens the answer carried; a wrong key pauses the hive.
    import anthropic
    import openai

    hive_id = new_id()
    agent = Agent(id=new_id(), hive_id=hive_id, name="a")
    store.create_hive(Hive(id=hive_id, name="litellm-relay", mode=Mode.SWARM, objective="x"),
                      [agent])
    carried: list[tuple[int, int]] = []
    async with GatewayClient(litellm_url, MASTER_KEY, store=store) as client:
        relay = await client.relay()
        with relay.attempt(CallContext(hive_id=hive_id, agent_id=agent.id)) as (token, _):
            env = relay.agent_env(token)
            oai = openai.AsyncOpenAI(base_url=env["OPENAI_BASE_URL"], api_key=token,
                                     max_retries=0)
            claude = anthropic.AsyncAnthropic(base_url=env["ANTHROPIC_BASE_URL"],
                                              api_key=token, max_retries=0)
            chat = await oai.chat.completions.create(
                model="mock-gpt", messages=[{"role": "user", "content": "hi"}])
            assert chat.choices[0].message.content == "Hello from the mock"
            assert chat.usage is not None
            carried.append((chat.usage.prompt_tokens, chat.usage.completion_tokens))
            pieces, usage = [], None
            async for chunk in await oai.chat.completions.create(
                    model="mock-gpt", messages=[{"role": "user", "content": "hi"}],
                    stream=True):
                pieces += [c.delta.content or "" for c in chunk.choices]
                usage = chunk.usage or usage
            assert "".join(pieces) == "Hello from the mock"
            assert usage is not None
            carried.append((usage.prompt_tokens, usage.completion_tokens))
            message = await claude.messages.create(
                model="mock-gpt", max_tokens=50, messages=[{"role": "user", "content": "hi"}])
            assert message.content[0].type == "text"
            assert message.content[0].text == "Hello from the mock"
            carried.append((message.usage.input_tokens, message.usage.output_tokens))
            response = await oai.responses.create(model="mock-gpt", input="hi")
            assert response.output_text == "Hello from the mock"
            assert response.usage is not None
            carried.append((response.usage.input_tokens, response.usage.output_tokens))
            await oai.close()
            await claude.close()
    entries = store.ledger(hive_id=hive_id)
    assert sorted((e.prompt_tokens, e.completion_tokens) for e in entries) == sorted(carried)

    async with GatewayClient(litellm_url, "sk-a-provider-key", store=store) as refused:
        relay = await refused.relay()
        with relay.attempt(CallContext(hive_id=hive_id, agent_id=agent.id)) as (token, grant):
            claude = anthropic.AsyncAnthropic(base_url=relay.url, api_key=token,
                                              max_retries=0)
            with pytest.raises(anthropic.PermissionDeniedError, match="refused the key"):
                await claude.messages.create(model="mock-gpt", max_tokens=5,
                                             messages=[{"role": "user", "content": "hi"}])
            await claude.close()
    assert isinstance(grant.stop, GatewayAuthError)
    assert store.get_hive(hive_id).status is HiveStatus.PAUSED
    assert len(store.ledger(hive_id=hive_id)) == len(carried)
