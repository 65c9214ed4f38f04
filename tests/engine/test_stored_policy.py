"""The hive's policy put back from the store for claims made from outside (REST, MCP), on SQLite
and Postgres: the policy held per hive follows other agents' claims and new tasks from the event
log, so it never offers a task someone holds and does offer one posted since; a company hive is
refused with the reason."""

from __future__ import annotations

from typing import Any

import pytest

from ruflo.engine.stored_policy import StoredPolicies
from ruflo.errors import PolicyError
from ruflo.model import Agent, Hive, Mode, Task, TaskState, new_id


def hive_with(store: Any, mode: Mode, titles: list[str], agents: list[str]) -> Hive:
    hive_id = new_id()
    hive = Hive(id=hive_id, name=f"h-{hive_id[:6]}", mode=mode, objective="work",
                config={"seed": 3})
    crew = [Agent(id=new_id(), hive_id=hive_id, name=name,
                  **({"role": "root"} if mode is Mode.COMPANY and n == 0 else {}))
            for n, name in enumerate(agents)]
    tasks = [Task(id=new_id(), hive_id=hive_id, title=title, priority=9) for title in titles]
    created: Hive = store.create_hive(hive, agents=crew, tasks=tasks)
    return created


def member(store: Any, hive: Hive, name: str) -> Agent:
    return next(a for a in store.list_agents(hive.id) if a.name == name)


def take(store: Any, policies: StoredPolicies, hive: Hive, name: str) -> Task | None:
    agent = member(store, hive, name)
    chosen = policies.decide(store, hive, agent)
    if chosen.task_id is None:
        return None
    claimed: Task | None = store.claim_task(hive.id, agent.id, lease_seconds=60,
                                            task_id=chosen.task_id)
    assert claimed is not None, f"the policy offered {chosen.task_id}, which is not claimable"
    return claimed


@pytest.mark.parametrize("mode", [Mode.SWARM, Mode.ROUND_ROBIN])
def test_the_held_policy_follows_claims_and_new_tasks(store: Any, mode: Mode) -> None:
    hive = hive_with(store, mode, ["t1", "t2", "t3", "t4"], ["ada", "bob"])
    policies = StoredPolicies()
    taken = [take(store, policies, hive, name) for name in ("ada", "bob", "ada", "bob")]
    assert sorted(t.title for t in taken if t is not None) == ["t1", "t2", "t3", "t4"]
    assert take(store, policies, hive, "ada") is None, "everything is held"

    (late,) = store.post_tasks(hive.id, [Task(id=new_id(), hive_id=hive.id, title="late",
                                              priority=9)])
    got = None
    for name in ("ada", "bob"):
        got = got or take(store, policies, hive, name)
    assert got is not None, "a task posted since is offered"
    assert got.id == late.id
    assert store.get_task(late.id).state is TaskState.CLAIMED


def test_a_claim_made_elsewhere_is_never_offered(store: Any) -> None:
    hive = hive_with(store, Mode.SWARM, ["only"], ["ada", "bob"])
    policies = StoredPolicies()
    assert policies.decide(store, hive, member(store, hive, "ada")).task_id is not None
    # Another process (an engine, another server) claims it behind the held policy's back.
    task_id = store.list_tasks(hive.id)[0].id
    assert store.claim_task(hive.id, member(store, hive, "bob").id, lease_seconds=60,
                            task_id=task_id) is not None
    assert policies.decide(store, hive, member(store, hive, "ada")).task_id is None


def test_a_company_hive_is_refused_with_the_reason(store: Any) -> None:
    hive = hive_with(store, Mode.COMPANY, ["t"], ["ceo"])
    with pytest.raises(PolicyError, match="org chart"):
        StoredPolicies().decide(store, hive, member(store, hive, "ceo"))
