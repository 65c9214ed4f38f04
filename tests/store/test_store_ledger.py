"""The ledger and spend totals, approvals decided once, workers."""

from __future__ import annotations

from typing import Any

import pytest
from store_helpers import agent_id, make_hive

from ruflo.errors import Conflict, NotFound
from ruflo.model import Approval, ApprovalKind, ApprovalStatus, CostKind, new_id


def test_ledger_and_spend(store: Any) -> None:
    hive = make_hive(store, agents=2)
    me = agent_id(hive)
    store.add_ledger_entry(model="m", prompt_tokens=10, completion_tokens=5, cost=0.5,
                           cost_source="gateway", hive_id=hive.id, agent_id=me)
    store.add_ledger_entry(model="m", prompt_tokens=1, completion_tokens=1, cost=None,
                           cost_source="unknown", hive_id=hive.id, agent_id=me,
                           kind=CostKind.COORDINATION)
    store.add_ledger_entry(model="m", prompt_tokens=100, completion_tokens=0, cost=1.0,
                           cost_source="price_table", hive_id=hive.id,
                           agent_id=agent_id(hive, 1))
    total = store.spend(hive_id=hive.id)
    assert (total.tokens, total.cost, total.calls, total.unknown_cost_calls) == (117, 1.5, 3, 1)
    mine = store.spend(agent_id=me)
    assert (mine.tokens, mine.calls, mine.unknown_cost_calls) == (17, 2, 1)
    assert store.spend(hive_id=hive.id, kind=CostKind.COORDINATION).calls == 1
    agent = store.get_agent(me)
    assert agent.spent_tokens == 17
    assert agent.spent_cost == 0.5
    entries = store.ledger(hive_id=hive.id)
    assert [e.total_tokens for e in entries] == [15, 2, 100]
    assert entries[1].cost is None, "unknown cost is never recorded as 0"
    assert len(store.ledger(agent_id=me, limit=1)) == 1


def test_approval_is_decided_once(store: Any) -> None:
    hive = make_hive(store)
    approval = store.create_approval(Approval(id=new_id(), hive_id=hive.id,
                                              kind=ApprovalKind.HIRE, subject="hire a tester"))
    assert [a.id for a in store.list_approvals(status=ApprovalStatus.PENDING)] == [approval.id]
    decided = store.decide_approval(approval.id, ApprovalStatus.APPROVED, decided_by="alice")
    assert decided.status is ApprovalStatus.APPROVED
    assert decided.decided_at is not None
    with pytest.raises(Conflict, match="alice"):
        store.decide_approval(approval.id, ApprovalStatus.REJECTED, decided_by="bob")
    with pytest.raises(NotFound):
        store.decide_approval("nope", ApprovalStatus.REJECTED, decided_by="bob")
    kinds = [e.kind for e in store.events(hive.id)]
    assert kinds[-2:] == ["approval_requested", "approval_decided"]
    assert store.list_approvals(hive_id=hive.id, status=ApprovalStatus.PENDING) == []


def test_workers(store: Any) -> None:
    store.register_worker("w1", hive_id=None, host="node-a", agents=4)
    store.register_worker("w2", hive_id="h", host="node-b", agents=2)
    store.worker_heartbeat("w1")
    assert [w["id"] for w in store.list_workers()] == ["w1", "w2"]
    assert [w["host"] for w in store.list_workers("h")] == ["node-b"]
    store.unregister_worker("w1")
    with pytest.raises(NotFound):
        store.worker_heartbeat("w1")


def test_ping(store: Any) -> None:
    store.ping()
    assert store.integrity_check() == "ok"
