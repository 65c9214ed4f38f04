"""Budgets per hive and per agent, in tokens and money: reserve before a call, settle after; with
50 concurrent callers the recorded spend passes a cap by at most one reservation; warn at 80%,
stop at 100%; a restart starts from the ledger."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from ruflo.errors import BudgetExceeded
from ruflo.gateway.base import CallContext
from ruflo.gateway.budget import BudgetWarning, estimate_prompt_tokens
from ruflo.gateway.client import GatewayClient
from ruflo.gateway.scripted import Match, ScriptedGateway
from ruflo.model import Budget
from ruflo.store.sql import SqlStore

HiveMaker = Callable[..., Any]
GO = [{"role": "user", "content": "go"}]
MAX_TOKENS = 20
USAGE = {"prompt_tokens": 5, "completion_tokens": 20}
RESERVATION = estimate_prompt_tokens(GO) + MAX_TOKENS
"""Tokens booked per call; the scripted usage stays within it, as a real max_tokens would."""


async def _run_swarm(client: GatewayClient, contexts: list[CallContext],
                     model: str = "gpt-4o-mini") -> tuple[int, int, int]:
    """Each caller calls until its budget stops it; returns (answers, refusals, max in flight)."""
    answers = refusals = in_flight = peak = 0

    async def caller(context: CallContext) -> None:
        nonlocal answers, refusals, in_flight, peak
        while True:
            try:
                in_flight += 1
                peak = max(peak, in_flight)
                await client.chat(GO, model=model, context=context, max_tokens=MAX_TOKENS)
                answers += 1
            except BudgetExceeded:
                refusals += 1
                return
            finally:
                in_flight -= 1

    await asyncio.gather(*(caller(c) for c in contexts))
    return answers, refusals, peak


@pytest.mark.slow
async def test_50_concurrent_callers_never_pass_a_token_cap_by_more_than_one_reservation(
        gateway: ScriptedGateway, store: SqlStore, make_client: Callable[..., GatewayClient],
        make_hive: HiveMaker) -> None:
    assert USAGE["prompt_tokens"] + USAGE["completion_tokens"] <= RESERVATION
    cap = 1000
    hive, agents, _ = make_hive(budget=Budget(max_tokens=cap), agents=50)
    gateway.add_rules({"reply": {"content": "ok", "usage": USAGE}, "delay": 0.01})
    client = make_client()
    answers, refusals, peak = await _run_swarm(
        client, [CallContext(hive_id=hive.id, agent_id=a.id) for a in agents])
    spend = store.spend(hive_id=hive.id)
    assert cap <= spend.tokens <= cap + RESERVATION
    assert refusals == 50
    assert answers == spend.calls == gateway.chat_count
    assert peak > 10


@pytest.mark.slow
async def test_50_concurrent_callers_never_pass_a_money_cap_by_more_than_one_reservation(
        gateway: ScriptedGateway, store: SqlStore, make_client: Callable[..., GatewayClient],
        make_hive: HiveMaker) -> None:
    prices = {"gpt-4o-mini": {"prompt": 1000.0, "completion": 10000.0}}
    per_call = (5 * 1000 + 20 * 10000) / 1e6
    booked = (estimate_prompt_tokens(GO) * 1000 + MAX_TOKENS * 10000) / 1e6
    cap = 0.01
    hive, _agents, _ = make_hive(agents=50)
    # One agent's cap, shared by 50 callers acting for it.
    _, [rich], _ = make_hive(agent_budget=Budget(max_cost=cap))
    gateway.add_rules({"reply": {"content": "ok", "usage": USAGE, "cost": None},
                       "delay": 0.01})
    client = make_client(prices=prices)
    answers, refusals, _ = await _run_swarm(
        client, [CallContext(hive_id=rich.hive_id, agent_id=rich.id)] * 50)
    spend = store.spend(agent_id=rich.id)
    assert cap <= spend.cost <= cap + booked
    assert spend.calls == answers == gateway.chat_count
    assert spend.cost == pytest.approx(answers * per_call)
    assert refusals == 50
    assert store.spend(hive_id=hive.id).calls == 0


@pytest.mark.slow
async def test_a_money_cap_priced_only_by_the_gateway_header_holds_too(
        gateway: ScriptedGateway, store: SqlStore, make_client: Callable[..., GatewayClient],
        make_hive: HiveMaker) -> None:
    """No price table: the first call goes alone; its header cost prices the rest."""
    cap = 0.02
    hive, agents, _ = make_hive(budget=Budget(max_cost=cap), agents=50)
    gateway.add_rules({"reply": {"content": "ok", "usage": USAGE, "cost": 0.001},
                       "delay": 0.01})
    client = make_client()
    answers, _, _ = await _run_swarm(
        client, [CallContext(hive_id=hive.id, agent_id=a.id) for a in agents])
    spend = store.spend(hive_id=hive.id)
    booked = 0.001 / 25 * RESERVATION
    assert cap <= spend.cost <= cap + booked + 1e-12
    assert answers == spend.calls


async def test_warn_at_80_percent_and_stop_at_100_without_calling(
        gateway: ScriptedGateway, store: SqlStore, make_client: Callable[..., GatewayClient],
        make_hive: HiveMaker) -> None:
    hive, [agent], _ = make_hive(budget=Budget(max_tokens=120))
    gateway.add_rules({"reply": {"content": "ok", "usage": USAGE}})
    warnings: list[BudgetWarning] = []
    client = make_client(on_budget_warning=warnings.append)
    context = CallContext(hive_id=hive.id, agent_id=agent.id)
    for _ in range(3):
        await client.chat(GO, model="m", context=context, max_tokens=MAX_TOKENS)
    assert warnings == []
    await client.chat(GO, model="m", context=context, max_tokens=MAX_TOKENS)  # 100 of 120
    assert len(warnings) == 1
    assert warnings[0].scope == "hive"
    assert warnings[0].fraction == pytest.approx(100 / 120)
    await client.chat(GO, model="m", context=context, max_tokens=MAX_TOKENS)  # 125 of 120
    calls = gateway.chat_count
    with pytest.raises(BudgetExceeded, match="did not call the gateway") as caught:
        await client.chat(GO, model="m", context=context, max_tokens=MAX_TOKENS)
    assert caught.value.scope == "hive"
    assert caught.value.scope_id == hive.id
    assert gateway.chat_count == calls
    assert len(warnings) == 1
    assert len(store.events(hive.id, kinds=["budget_warning"])) == 1
    with pytest.raises(BudgetExceeded):
        await client.chat(GO, model="m", context=context)
    [stop] = store.events(hive.id, kinds=["budget_exceeded"])
    assert stop.data["spent_tokens"] == 125


async def test_a_restart_does_not_reset_the_budget(
        gateway: ScriptedGateway, store: SqlStore, make_client: Callable[..., GatewayClient],
        make_hive: HiveMaker) -> None:
    hive, [agent], _ = make_hive(agent_budget=Budget(max_tokens=50))
    gateway.add_rules({"reply": {"content": "ok", "usage": USAGE}})
    context = CallContext(hive_id=hive.id, agent_id=agent.id)
    first = make_client()
    await first.chat(GO, model="m", context=context)
    await first.chat(GO, model="m", context=context)
    await first.aclose()
    calls = gateway.chat_count
    again = make_client()
    with pytest.raises(BudgetExceeded) as caught:
        await again.chat(GO, model="m", context=context)
    assert caught.value.scope == "agent"
    assert gateway.chat_count == calls


async def test_spend_settled_by_another_process_counts_before_the_next_call(
        gateway: ScriptedGateway, store: SqlStore, make_client: Callable[..., GatewayClient],
        make_hive: HiveMaker) -> None:
    """Two clients, each with its own Budgets, are two worker processes of one hive: once one
    has spent the hive's cap, the other is refused without calling, though it loaded its
    account long before."""
    hive, [one, two], _ = make_hive(budget=Budget(max_tokens=200), agents=2)
    gateway.add_rules({"reply": {"content": "ok", "usage": USAGE}})
    first, second = make_client(), make_client()
    await second.chat(GO, model="m", context=CallContext(hive_id=hive.id, agent_id=two.id))
    answers, refusals, _ = await _run_swarm(first, [CallContext(hive_id=hive.id,
                                                                agent_id=one.id)])
    assert (answers, refusals) == (7, 1), "the first spent the rest of the cap, 25 a call"
    calls = gateway.chat_count
    with pytest.raises(BudgetExceeded) as caught:
        await second.chat(GO, model="m", context=CallContext(hive_id=hive.id, agent_id=two.id))
    assert caught.value.scope == "hive"
    assert gateway.chat_count == calls, "the second process did not call the gateway"
    assert 200 <= store.spend(hive_id=hive.id).tokens <= 200 + RESERVATION


@pytest.mark.slow
async def test_processes_sharing_a_cap_pass_it_by_at_most_their_calls_in_flight(
        gateway: ScriptedGateway, store: SqlStore, make_client: Callable[..., GatewayClient],
        make_hive: HiveMaker) -> None:
    """Four processes with five callers each: each process books only its own calls, so the
    cap is passed by at most one reservation per call in flight anywhere (20 here), not by
    up to the whole cap per process as when each counted only its own spend."""
    cap = 2000
    hive, agents, _ = make_hive(budget=Budget(max_tokens=cap), agents=20)
    gateway.add_rules({"reply": {"content": "ok", "usage": USAGE}, "delay": 0.01})
    clients = [make_client() for _ in range(4)]
    results = await asyncio.gather(*(
        _run_swarm(client, [CallContext(hive_id=hive.id, agent_id=a.id)
                            for a in agents[n * 5:(n + 1) * 5]])
        for n, client in enumerate(clients)))
    spend = store.spend(hive_id=hive.id)
    assert cap <= spend.tokens <= cap + 20 * RESERVATION
    assert sum(refusals for _, refusals, _ in results) == 20
    assert sum(answers for answers, _, _ in results) == spend.calls == gateway.chat_count


async def test_a_caller_blocked_only_by_calls_in_flight_waits_instead_of_failing(
        gateway: ScriptedGateway, store: SqlStore, make_client: Callable[..., GatewayClient],
        make_hive: HiveMaker) -> None:
    hive, _, _ = make_hive(budget=Budget(max_tokens=50))
    gateway.add_rules({"reply": {"content": "ok", "usage": USAGE}, "delay": 0.05})
    client = make_client()
    context = CallContext(hive_id=hive.id)
    # Each call books 5 + 60 tokens, more than the cap: they must go one at a time.
    outcomes = await asyncio.gather(
        *(client.chat(GO, model="m", context=context, max_tokens=60) for _ in range(3)),
        return_exceptions=True)
    assert [type(o).__name__ for o in outcomes].count("ChatResult") == 2
    assert [type(o).__name__ for o in outcomes].count("BudgetExceeded") == 1
    assert store.spend(hive_id=hive.id).tokens == 50


async def test_an_agent_cap_stops_that_agent_only(
        gateway: ScriptedGateway, store: SqlStore, make_client: Callable[..., GatewayClient],
        make_hive: HiveMaker) -> None:
    hive, agents, _ = make_hive(agents=2, agent_budget=Budget(max_tokens=25))
    gateway.add_rules({"reply": {"content": "ok", "usage": USAGE}})
    client = make_client()
    await client.chat(GO, model="m", context=CallContext(hive_id=hive.id, agent_id=agents[0].id))
    with pytest.raises(BudgetExceeded):
        await client.chat(GO, model="m",
                          context=CallContext(hive_id=hive.id, agent_id=agents[0].id))
    await client.chat(GO, model="m", context=CallContext(hive_id=hive.id, agent_id=agents[1].id))


async def test_raising_a_budget_lets_work_continue(
        gateway: ScriptedGateway, store: SqlStore, make_client: Callable[..., GatewayClient],
        make_hive: HiveMaker) -> None:
    hive, _, _ = make_hive(budget=Budget(max_tokens=25))
    gateway.add_rules({"reply": {"content": "ok", "usage": USAGE}})
    client = make_client()
    context = CallContext(hive_id=hive.id)
    await client.chat(GO, model="m", context=context)
    with pytest.raises(BudgetExceeded):
        await client.chat(GO, model="m", context=context)
    store.update_hive(hive.id, budget=Budget(max_tokens=100))
    assert client.budgets is not None
    client.budgets.refresh(hive_id=hive.id)
    await client.chat(GO, model="m", context=context)


async def test_a_call_in_flight_across_a_budget_change_settles_into_the_account_in_use(
        gateway: ScriptedGateway, store: SqlStore, make_client: Callable[..., GatewayClient],
        make_hive: HiveMaker) -> None:
    hive, _, _ = make_hive(budget=Budget(max_tokens=1_000))
    arrived = threading.Event()
    gateway.add_rules({"match": Match(when=lambda _: arrived.set() is None), "hold": "go",
                       "reply": {"content": "ok", "usage": USAGE}})
    client = make_client()
    assert client.budgets is not None
    account = client.budgets.account("hive", hive.id)
    call = asyncio.create_task(client.chat(GO, model="m", context=CallContext(hive_id=hive.id),
                                           max_tokens=MAX_TOKENS))
    assert await asyncio.to_thread(arrived.wait, 30)
    store.update_hive(hive.id, budget=Budget(max_tokens=2_000))
    client.budgets.refresh(hive_id=hive.id)
    client.budgets.refresh(hive_id=hive.id)
    account = client.budgets.account("hive", hive.id)
    assert (account.budget.max_tokens, account.reserved_tokens) == (2_000, RESERVATION)
    gateway.open_gate("go")
    await call
    assert (account.reserved_tokens, account.spent_tokens) == (0, 25), "no booking left behind"


async def test_unknown_cost_calls_count_against_a_money_cap_and_are_reported(
        gateway: ScriptedGateway, store: SqlStore, make_client: Callable[..., GatewayClient],
        make_hive: HiveMaker) -> None:
    # The model has no price and the gateway sends no cost: the dearest known price counts.
    prices = {"cheap": {"prompt": 1.0, "completion": 1.0},
              "dear": {"prompt": 2000.0, "completion": 8000.0}}
    per_call = (5 * 2000 + 20 * 8000) / 1e6
    hive, _, _ = make_hive(budget=Budget(max_cost=per_call * 3))
    gateway.add_rules({"reply": {"content": "ok", "usage": USAGE, "cost": None}})
    client = make_client(prices=prices)
    context = CallContext(hive_id=hive.id)
    for _ in range(3):
        await client.chat(GO, model="mystery", context=context)
    with pytest.raises(BudgetExceeded):
        await client.chat(GO, model="mystery", context=context)
    assert gateway.chat_count == 3
    assert store.spend(hive_id=hive.id).unknown_cost_calls == 3
    [report] = store.events(hive.id, kinds=["budget_unknown_cost"])
    assert report.data["counted"] is True
    assert client.budgets is not None
    [snapshot] = client.budgets.snapshot(hive_id=hive.id)
    assert snapshot["unknown_cost_calls"] == 3
    assert snapshot["estimated_cost"] == pytest.approx(per_call * 3)
    # After a restart the unknown-cost calls still count.
    fresh = make_client(prices=prices)
    with pytest.raises(BudgetExceeded):
        await fresh.chat(GO, model="mystery", context=context)


async def test_unpriceable_calls_are_reported_as_uncounted(
        gateway: ScriptedGateway, store: SqlStore, make_client: Callable[..., GatewayClient],
        make_hive: HiveMaker) -> None:
    hive, _, _ = make_hive(budget=Budget(max_cost=1.0))
    gateway.add_rules({"reply": {"content": "ok", "usage": USAGE, "cost": None}})
    client = make_client()
    await client.chat(GO, model="mystery", context=CallContext(hive_id=hive.id))
    [report] = store.events(hive.id, kinds=["budget_unknown_cost"])
    assert report.data["counted"] is False
    assert client.budgets is not None
    assert client.budgets.snapshot(hive_id=hive.id)[0]["uncounted_calls"] == 1


async def test_a_failed_call_gives_its_booking_back(
        gateway: ScriptedGateway, store: SqlStore, make_client: Callable[..., GatewayClient],
        make_hive: HiveMaker) -> None:
    hive, _, _ = make_hive(budget=Budget(max_tokens=30))
    gateway.add_rules({"fault": {"status": 400, "type": "bad", "message": "no"}, "times": 3},
                      {"reply": {"content": "ok", "usage": USAGE}})
    client = make_client()
    context = CallContext(hive_id=hive.id)
    for _ in range(3):
        with pytest.raises(Exception, match="rejected"):
            await client.chat(GO, model="m", context=context, max_tokens=500)
    assert client.budgets is not None
    assert client.budgets.snapshot(hive_id=hive.id)[0]["reserved_tokens"] == 0
    await client.chat(GO, model="m", context=context)
