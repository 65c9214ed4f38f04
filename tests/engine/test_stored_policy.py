"""The hive's policy put back from the store for claims made from outside (REST, MCP), on SQLite
and Postgres: the policy held per hive follows other agents' claims and new tasks from the event
log, so it never offers a task someone holds and does offer one posted since; a company hive is
refused with the reason; an agent that declined is not decided for again before its retry time."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from ruflo.engine.stored_policy import (
    IDLE_FLOOR,
    LONGEST_WAIT_SECONDS,
    TIME_UNIT_SECONDS,
    StoredPolicies,
)
from ruflo.errors import PolicyError
from ruflo.model import Agent, Hive, Mode, Task, TaskState, new_id, utcnow


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


class StoppedClock:
    def __init__(self) -> None:
        self.at = utcnow()

    def __call__(self) -> datetime:
        return self.at


def test_a_declined_agent_is_not_decided_for_again_before_its_retry_time(store: Any) -> None:
    hive_id = new_id()
    bob = Agent(id=new_id(), hive_id=hive_id, name="bob", skills=("rust",),
                thresholds={"rust": 20.0})
    hive = store.create_hive(
        Hive(id=hive_id, name=f"h-{hive_id[:6]}", mode=Mode.SWARM, objective="work",
             config={"seed": 3}), agents=[bob],
        tasks=[Task(id=new_id(), hive_id=hive_id, title="lexer", skills=("rust",))])
    clock = StoppedClock()
    policies = StoredPolicies(clock=clock)
    declined = policies.decide(store, hive, member(store, hive, "bob"))
    assert declined.task_id is None
    assert declined.retry_after_seconds is not None
    assert declined.retry_after_seconds > 0
    learned = member(store, hive, "bob").thresholds
    assert learned["rust"] > 20.0

    # Neither a board that moved (a task posted: the policy is rebuilt) nor a lost race
    # (`forget`) lets the agent be decided for early.
    store.post_tasks(hive.id, [Task(id=new_id(), hive_id=hive.id, title="parser",
                                    skills=("rust",))])
    for round_ in range(3):
        if round_ == 1:
            policies.forget(store, hive.id)
        again = policies.decide(store, hive, member(store, hive, "bob"))
        assert again == declined
    assert member(store, hive, "bob").thresholds == learned

    # Another process holds no retry time for bob: it decides once more (and declines: the
    # stimulus has not grown), which raises the threshold again.
    elsewhere = StoredPolicies(clock=clock).decide(store, hive, member(store, hive, "bob"))
    assert elsewhere.task_id is None
    assert member(store, hive, "bob").thresholds["rust"] > learned["rust"]

    clock.at += timedelta(seconds=declined.retry_after_seconds)
    before = member(store, hive, "bob").thresholds
    policies.decide(store, hive, member(store, hive, "bob"))
    assert member(store, hive, "bob").thresholds != before, \
        "past its retry time the agent is decided for again (and learns)"


def test_ready_work_outside_the_watched_skills_is_named_and_then_taken(store: Any) -> None:
    # Ada watches her 8 lowest thresholds (and one skill at random): with her own nine skills'
    # tasks all held, the only ready task is one she may never look at. No post is coming to
    # wake her, so the answer must name a wait, and at her idle floor she takes the task.
    hive_id = new_id()
    own = [f"s{n}" for n in range(9)]
    ada = Agent(id=new_id(), hive_id=hive_id, name="ada", skills=tuple(own))
    bob = Agent(id=new_id(), hive_id=hive_id, name="bob")
    tasks = [Task(id=new_id(), hive_id=hive_id, title=skill, skills=(skill,)) for skill in own]
    cobol = Task(id=new_id(), hive_id=hive_id, title="cobol", skills=("cobol",))
    hive = store.create_hive(
        Hive(id=hive_id, name=f"h-{hive_id[:6]}", mode=Mode.SWARM, objective="work",
             config={"seed": 3}), agents=[ada, bob], tasks=[*tasks, cobol])
    for task in tasks:
        assert store.claim_task(hive.id, bob.id, lease_seconds=600, task_id=task.id)
    clock = StoppedClock()
    policies = StoredPolicies(clock=clock)
    start = clock.at
    first = policies.decide(store, hive, member(store, hive, "ada"))
    for _ in range(20):
        if first.task_id is not None:
            break
        assert first.retry_after_seconds is not None, \
            f"cobol is ready, yet ada was told to wait for a post: {first.reason}"
        assert 0 < first.retry_after_seconds <= LONGEST_WAIT_SECONDS
        clock.at += timedelta(seconds=first.retry_after_seconds)
        first = policies.decide(store, hive, member(store, hive, "ada"))
    assert first.task_id == cobol.id, first
    assert clock.at - start <= timedelta(seconds=IDLE_FLOOR * TIME_UNIT_SECONDS), \
        "she took it by her idle floor"
