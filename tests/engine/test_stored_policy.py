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
    choose,
    decision_rng,
    policy_time,
    rebuild,
)
from ruflo.errors import PolicyError
from ruflo.model import Agent, Hive, Mode, Task, TaskOutline, TaskState, new_id, utcnow


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


def outline(task: Task) -> TaskOutline:
    return TaskOutline(task.id, task.state, task.parent_id, task.skills, task.priority,
                       task.effort, task.depends_on, task.assignee, task.attempts,
                       task.created_at, task.updated_at, task.finished_at)


def test_a_policy_rebuilt_from_the_lean_board_decides_as_one_from_every_task(store: Any) -> None:
    hive = hive_with(store, Mode.SWARM, [f"t{n}" for n in range(6)], ["ada", "bob", "cy"])
    ada = member(store, hive, "ada")
    first, second, third, fourth, fifth, _ = store.list_tasks(hive.id)
    waits = [Task(id=new_id(), hive_id=hive.id, title=f"after {dep.title}", priority=3,
                  depends_on=(dep.id,)) for dep in (first, second, third)]
    store.post_tasks(hive.id, waits)
    for task, state in ((first, TaskState.DONE), (second, TaskState.FAILED),
                        (fifth, TaskState.DONE)):
        store.claim_task(hive.id, ada.id, lease_seconds=60, task_id=task.id)
        store.finish_task(task.id, ada.id, state=state)
    store.claim_task(hive.id, ada.id, lease_seconds=60, task_id=fourth.id)
    store.release_task(fourth.id, ada.id, reason="reopened: boosted")
    store.claim_task(hive.id, ada.id, lease_seconds=60, task_id=third.id)

    now = policy_time(hive, utcnow() + timedelta(seconds=30))
    agents = store.list_agents(hive.id)
    board, tasks = store.policy_board(hive.id), store.list_tasks(hive.id)
    assert len(board) == len(tasks) - 1, "the finished task nothing waits on is not read"
    lean = rebuild(hive, agents, board, now)
    every = rebuild(hive, agents, [outline(task) for task in tasks], now)

    def seen(policy: Any) -> dict[str, tuple[Any, ...]]:
        return {t.id: (t.state, t.holder, t.waiting, t.stimulus_base, t.stimulus_at)
                for t in policy.board.tasks.values() if not t.state.terminal}

    assert seen(lean) == seen(every)
    last = store.last_seq(hive.id)
    for agent in agents * 2:
        lean_choice = choose(lean, agent, now, decision_rng(hive, agent, last), 10.0)
        every_choice = choose(every, agent, now, decision_rng(hive, agent, last), 10.0)
        assert lean_choice == every_choice
        if lean_choice.task_id is not None:
            lean.claim(lean_choice.task_id, agent.id, now)
            every.claim(every_choice.task_id, agent.id, now)  # type: ignore[arg-type]


class BoardReads:
    """The store, counting the reads of the board a rebuild makes."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.reads = 0

    def policy_board(self, hive_id: str) -> list[TaskOutline]:
        self.reads += 1
        board: list[TaskOutline] = self.store.policy_board(hive_id)
        return board

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def test_a_new_swarm_agent_claims_first_with_one_read_of_the_board(store: Any) -> None:
    """The REST route's first claim for a new agent: the policy is brought up to date before
    the transaction, then the agent registers and is decided for inside it."""
    hive = hive_with(store, Mode.SWARM, ["t1", "t2"], ["ada"])
    counting = BoardReads(store)
    policies = StoredPolicies()
    policies.refresh(counting, hive)
    with store.transaction():
        newcomer = store.add_agent(Agent(id=new_id(), hive_id=hive.id, name="newcomer",
                                         adapter_config={"via": "rest"}))
        chosen = policies.decide(counting, hive, newcomer)
        assert chosen.task_id is not None, "the newcomer is offered a task"
        assert store.claim_task(hive.id, newcomer.id, lease_seconds=60,
                                task_id=chosen.task_id) is not None
    assert counting.reads == 1, "taken in without rebuilding the policy"
    assert take(counting, policies, hive, "ada") is not None, "the other task is still offered"
    assert take(counting, policies, hive, "ada") is None
    assert counting.reads == 1, "the claims since were taken in from the event log"


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
