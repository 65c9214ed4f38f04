"""The kill switch: pulling the gateway key pauses the hive at once and loses nothing."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from ruflo.errors import GatewayAuthError, GatewayBudgetError, GatewayError
from ruflo.gateway.base import CallContext
from ruflo.gateway.client import GatewayClient
from ruflo.gateway.scripted import Match, ScriptedGateway
from ruflo.model import HiveStatus, TaskState
from ruflo.store.sql import SqlStore

HiveMaker = Callable[..., Any]

KEY = "sk-test"

WORK = [{"role": "user", "content": "do the task"}]


async def test_a_pulled_key_pauses_the_hive_and_loses_nothing(
        gateway: ScriptedGateway, store: SqlStore,
        make_client: Callable[..., GatewayClient], make_hive: HiveMaker) -> None:
    hive, agents, _tasks = make_hive(agents=2, tasks=2)
    claimed = [store.claim_task(hive.id, a.id, lease_seconds=60) for a in agents]
    assert all(t is not None for t in claimed)
    paused: list[tuple[str, GatewayError]] = []
    client = make_client(on_pause=lambda hive_id, error: paused.append((hive_id, error)))
    context = CallContext(hive_id=hive.id, agent_id=agents[0].id, task_id=claimed[0].id)
    first = await client.chat(WORK, model="gpt-4o-mini", context=context)
    assert first.content == "ok"

    gateway.revoke_key(KEY)
    for agent, task in zip(agents, claimed, strict=True):
        assert task is not None
        with pytest.raises(GatewayAuthError) as caught:
            await client.chat(WORK, model="gpt-4o-mini",
                              context=CallContext(hive_id=hive.id, agent_id=agent.id,
                                                  task_id=task.id))
        assert "paused the hive" in str(caught.value)

    stopped = store.get_hive(hive.id)
    assert stopped.status is HiveStatus.PAUSED
    assert stopped.pause_reason == "gateway refused the key"
    assert len(store.events(hive.id, kinds=["hive_paused"])) == 1
    assert [hive_id for hive_id, _ in paused] == [hive.id, hive.id]
    assert all(isinstance(e, GatewayAuthError) for _, e in paused)
    for agent, task in zip(agents, claimed, strict=True):
        assert task is not None
        kept = store.get_task(task.id)
        assert kept.state is TaskState.CLAIMED
        assert kept.assignee == agent.id
    # Only the call that got an answer is in the ledger: refused calls cost nothing.
    assert len(store.ledger(hive_id=hive.id)) == 1
    assert gateway.chat_count == 3

    # A new key, a resume, and the same agent finishes the same task.
    gateway.restore_key(KEY)
    store.set_hive_status(hive.id, HiveStatus.RUNNING)
    again = await client.chat(WORK, model="gpt-4o-mini", context=context)
    assert again.content == "ok"
    assert claimed[0] is not None
    done = store.finish_task(claimed[0].id, agents[0].id, state=TaskState.DONE, result="ok")
    assert done.state is TaskState.DONE


async def test_a_refusal_of_a_call_begun_before_a_resume_leaves_the_hive_running(
        gateway: ScriptedGateway, store: SqlStore,
        make_client: Callable[..., GatewayClient], make_hive: HiveMaker) -> None:
    # A straggler: sent with the old key, refused only after the hive paused and a person
    # resumed it with a mended key. The person's resume stands.
    hive, (agent,), _ = make_hive()
    arrived = threading.Event()
    gateway.add_rules({"match": Match(when=lambda _: arrived.set() is None), "hold": "late",
                       "fault": "key_refused"}, first=True)
    paused: list[str] = []
    client = make_client(on_pause=lambda hive_id, _error: paused.append(hive_id))
    call = asyncio.create_task(client.chat(WORK, model="gpt-4o-mini",
                                           context=CallContext(hive.id, agent.id)))
    assert await asyncio.to_thread(arrived.wait, 30)
    store.set_hive_status(hive.id, HiveStatus.PAUSED, reason="gateway refused the key")
    store.set_hive_status(hive.id, HiveStatus.RUNNING)
    gateway.open_gate("late")
    with pytest.raises(GatewayAuthError) as caught:
        await call
    assert caught.value.hive_paused, "the engine must not pause the hive for it either"
    assert store.get_hive(hive.id).status is HiveStatus.RUNNING
    assert len(store.events(hive.id, kinds=["hive_paused"])) == 1
    assert paused == []


async def test_a_spent_gateway_budget_pauses_with_its_reason(
        gateway: ScriptedGateway, store: SqlStore,
        make_client: Callable[..., GatewayClient], make_hive: HiveMaker) -> None:
    hive, agents, _ = make_hive()
    gateway.set_fault({"kind": "budget_exceeded", "status": 429})
    client = make_client()
    with pytest.raises(GatewayBudgetError, match="paused the hive"):
        await client.chat(WORK, model="m", context=CallContext(hive_id=hive.id,
                                                               agent_id=agents[0].id))
    stopped = store.get_hive(hive.id)
    assert stopped.status is HiveStatus.PAUSED
    assert stopped.pause_reason == "gateway budget exceeded"


async def test_a_streamed_call_with_a_pulled_key_pauses_too(
        gateway: ScriptedGateway, store: SqlStore,
        make_client: Callable[..., GatewayClient], make_hive: HiveMaker) -> None:
    hive, agents, _ = make_hive()
    gateway.revoke_key(KEY)
    client = make_client()
    with pytest.raises(GatewayAuthError):
        async for _ in client.stream(WORK, model="m",
                                     context=CallContext(hive_id=hive.id, agent_id=agents[0].id)):
            pass
    assert store.get_hive(hive.id).status is HiveStatus.PAUSED


async def test_transient_failures_do_not_pause(
        gateway: ScriptedGateway, store: SqlStore,
        make_client: Callable[..., GatewayClient], make_hive: HiveMaker) -> None:
    hive, agents, _ = make_hive()
    gateway.set_fault("server_error")
    client = make_client()
    with pytest.raises(GatewayError):
        await client.chat(WORK, model="m", context=CallContext(hive_id=hive.id,
                                                               agent_id=agents[0].id))
    assert store.get_hive(hive.id).status is HiveStatus.RUNNING


async def test_a_call_outside_any_hive_says_it_stopped_the_call(
        gateway: ScriptedGateway, make_client: Callable[..., GatewayClient]) -> None:
    gateway.revoke_key(KEY)
    client = make_client()
    with pytest.raises(GatewayAuthError, match="stopped this call"):
        await client.chat(WORK, model="m", context=CallContext())
