"""The ledger equals what the gateway served: a hive of concurrent agents with long answers stops
at its token cap passed by at most one booking, and calls in flight when the hive pauses (a
person's pause, a cancel, the kill switch, a budget stop) are in the ledger. On SQLite and
Postgres, against a ScriptedGateway over real HTTP that counts what it served."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ruflo.agents import Limits
from ruflo.agents.commands import command_env
from ruflo.engine.board_engine import BoardEngine, LiveParams
from ruflo.engine.control import cancel_hive, pause_hive, resume_hive
from ruflo.gateway.budget import estimate_prompt_tokens
from ruflo.gateway.client import GatewayClient
from ruflo.gateway.scripted import Match, ScriptedGateway
from ruflo.model import Agent, Budget, Hive, HiveStatus, Mode, Task, TaskState
from ruflo.store.base import Store

pytestmark = pytest.mark.slow

KEY = "sk-ledger-test"
ANSWER_CAP = 400
"""max_tokens of every agent call in these tests."""
PARAMS = LiveParams(lease_seconds=5.0, time_unit=0.05, poll_seconds=0.2,
                    limits=Limits(completion_tokens=ANSWER_CAP, max_turns=30))
LONG = "a long answer that goes on " * 1000
"""About 6,700 tokens at the scripted model's four characters a token: far above ANSWER_CAP."""


def make_hive(store: Store, tmp_path: Path, *, agents: int, tasks: int,
              budget: Budget | None = None) -> Hive:
    workspace = tmp_path / "workspace"
    workspace.mkdir(exist_ok=True)
    hive = Hive(id="ledger", name="ledger", mode=Mode.SWARM, objective="talk at length",
                workspace=str(workspace), budget=budget or Budget())
    crew = [Agent(id=f"a{i}", hive_id=hive.id, name=f"agent-{i}", skills=("python",))
            for i in range(agents)]
    board = [Task(id=f"t{i}", hive_id=hive.id, title=f"t{i}", skills=("python",))
             for i in range(tasks)]
    store.create_hive(hive, agents=crew, tasks=board)
    return hive


def engine(store: Store, hive: Hive, client: GatewayClient) -> BoardEngine:
    return BoardEngine(store, hive.id, gateway=client, params=PARAMS, env=command_env())


def assert_ledger_is_what_was_served(store: Store, hive: Hive,
                                     gateway: ScriptedGateway) -> None:
    served = gateway.served
    ledger = store.ledger(hive_id=hive.id)
    assert len(ledger) == served.calls
    assert sum(e.prompt_tokens for e in ledger) == served.prompt_tokens
    assert sum(e.completion_tokens for e in ledger) == served.completion_tokens
    assert store.spend(hive_id=hive.id).tokens == served.total_tokens
    assert sum(a.spent_tokens for a in store.list_agents(hive.id)) == served.total_tokens
    assert all(e.cost_source == "gateway" for e in ledger)


def largest_booking(gateway: ScriptedGateway) -> int:
    """What the client booked for the biggest call it made: the prompt's high guess plus the
    call's max_tokens (the same function of the request the budget uses)."""
    return max(estimate_prompt_tokens(r["messages"], r["tools"]) + r["max_tokens"]
               for r in gateway.requests)


async def test_a_token_cap_with_long_answers_and_five_agents_is_passed_by_one_booking_at_most(
        store: Store, client: GatewayClient, gateway_server: ScriptedGateway,
        tmp_path: Path) -> None:
    cap = 15_000
    gateway_server.set_rules([{"reply": {"content": LONG}, "delay": 0.05}])
    hive = make_hive(store, tmp_path, agents=5, tasks=10, budget=Budget(max_tokens=cap))

    final = await asyncio.wait_for(engine(store, hive, client).run(), 120)
    await client.drain()

    assert final.status is HiveStatus.PAUSED
    assert "spent its budget" in (final.pause_reason or "")
    assert {r["max_tokens"] for r in gateway_server.requests} == {ANSWER_CAP}
    assert len({e.agent_id for e in store.ledger(hive_id=hive.id)}) == 5, "all five worked"
    assert_ledger_is_what_was_served(store, hive, gateway_server)
    spent = gateway_server.served.total_tokens
    assert cap <= spent <= cap + largest_booking(gateway_server)
    assert not store.list_tasks(hive.id, states=[TaskState.CLAIMED])


def arrivals(expected: int) -> tuple[threading.Event, Callable[[Any], bool]]:
    """A match predicate counting first calls at the gateway, and a flag set when all came."""
    count = 0
    everyone = threading.Event()

    def arrived(body: Any) -> bool:
        nonlocal count
        count += 1
        if count >= expected:
            everyone.set()
        return True
    return everyone, arrived


@pytest.mark.parametrize("stop", ["pause", "cancel", "kill switch", "budget"])
async def test_calls_in_flight_when_the_hive_stops_are_in_the_ledger(
        store: Store, client: GatewayClient, gateway_server: ScriptedGateway,
        tmp_path: Path, stop: str) -> None:
    everyone, arrived = arrivals(4)
    first = Match(any=r"^Task: t0\b", turn=1, when=arrived)
    gateway_server.set_rules([
        # t0's first answer comes when the test opens "first"; its next call is the one that
        # meets the kill switch or the spent budget. The others' answers wait for "slow".
        {"match": first, "hold": "first", "reply": {"content": LONG}},
        {"match": {"any": r"^Task: t0\b", "turn": 2}, "reply": {"content": "more"}},
        {"match": replace(first, any=r"^Task: t[123]\b"), "hold": "slow",
         "reply": {"content": LONG}},
    ])
    hive = make_hive(store, tmp_path, agents=4, tasks=4, budget=Budget(max_tokens=1_000_000))
    run = asyncio.create_task(engine(store, hive, client).run())
    assert await asyncio.to_thread(everyone.wait, 60), "four calls in flight"

    answered = 0  # calls answered before the hive stopped
    if stop == "pause":
        pause_hive(store, hive.id)
    elif stop == "cancel":
        cancel_hive(store, hive.id)
    elif stop == "kill switch":
        gateway_server.revoke_key(KEY)
        gateway_server.open_gate("first")
        answered = 1
    else:
        resume_hive(store, hive.id, budget=Budget(max_tokens=1))
        assert client.budgets is not None
        client.budgets.refresh(hive_id=hive.id)  # what the engine does when it reads the event
        gateway_server.open_gate("first")
        answered = 1
    final = await asyncio.wait_for(run, 60)

    assert final.status is (HiveStatus.CANCELLED if stop == "cancel" else HiveStatus.PAUSED)
    if stop == "kill switch":
        assert final.pause_reason == "gateway refused the key"
    if stop == "budget":
        assert "spent its budget" in (final.pause_reason or "")
    assert len(store.ledger(hive_id=hive.id)) == answered, "the others are still in flight"
    gateway_server.open_gate("first")
    gateway_server.open_gate("slow")
    await client.drain()

    assert gateway_server.served.calls == 4
    assert_ledger_is_what_was_served(store, hive, gateway_server)
    assert {e.task_id for e in store.ledger(hive_id=hive.id)} == {"t0", "t1", "t2", "t3"}
    assert len(store.events(hive.id, kinds=["agent_turn"])) == answered, \
        "no attempt saw the answers that came after it stopped"
    assert client.budgets is not None
    assert client.budgets.account("hive", hive.id).reserved_tokens == 0
    assert not store.list_tasks(hive.id, states=[TaskState.CLAIMED])
