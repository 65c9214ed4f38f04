"""The board: posting, claiming by urgency and readiness, finishing once, leases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from store_helpers import agent_id, make_hive

from ruflo.errors import Conflict, NotFound, PolicyError
from ruflo.model import Task, TaskState, new_id


def test_claim_takes_the_most_urgent_ready_task_first(store: Any) -> None:
    hive = make_hive(store)
    low, high = new_id(), new_id()
    blocked = new_id()
    store.post_tasks(hive.id, [
        Task(id=low, hive_id=hive.id, title="low", priority=1),
        Task(id=high, hive_id=hive.id, title="high", priority=9),
        Task(id=blocked, hive_id=hive.id, title="waits for low", priority=99, depends_on=(low,)),
    ])
    me = agent_id(hive)
    first = store.claim_task(hive.id, me, lease_seconds=30)
    assert first.id == high
    assert first.state is TaskState.CLAIMED
    assert first.assignee == me
    assert first.attempts == 1
    second = store.claim_task(hive.id, me, lease_seconds=30)
    assert second.id == low
    assert store.claim_task(hive.id, me, lease_seconds=30) is None, "blocked task is not ready"

    store.finish_task(low, me, state=TaskState.DONE, result="done it")
    third = store.claim_task(hive.id, me, lease_seconds=30)
    assert third.id == blocked


def test_equal_priority_is_first_posted_first_claimed(store: Any) -> None:
    hive = make_hive(store)
    ids = [new_id() for _ in range(5)]
    store.post_tasks(hive.id, [Task(id=i, hive_id=hive.id, title=i) for i in ids])
    claimed = [store.claim_task(hive.id, agent_id(hive), lease_seconds=30).id for _ in ids]
    assert claimed == ids


def test_failed_dependency_keeps_dependent_waiting(store: Any) -> None:
    hive = make_hive(store)
    dep, child = new_id(), new_id()
    store.post_tasks(hive.id, [Task(id=dep, hive_id=hive.id, title="dep"),
                               Task(id=child, hive_id=hive.id, title="child", depends_on=(dep,))])
    me = agent_id(hive)
    assert store.claim_task(hive.id, me, lease_seconds=30).id == dep
    store.finish_task(dep, me, state=TaskState.FAILED, result="broke")
    assert store.claim_task(hive.id, me, lease_seconds=30) is None


def test_unknown_dependency_posts_nothing(store: Any) -> None:
    hive = make_hive(store)
    before = store.last_seq(hive.id)
    with pytest.raises(PolicyError, match="unknown"):
        store.post_tasks(hive.id, [Task(id=new_id(), hive_id=hive.id, title="ok"),
                                   Task(id=new_id(), hive_id=hive.id, title="bad",
                                        depends_on=("no-such-task",))])
    assert store.list_tasks(hive.id) == []
    assert store.last_seq(hive.id) == before


def test_dependency_already_done_counts_as_met(store: Any) -> None:
    hive = make_hive(store, tasks=1)
    me = agent_id(hive)
    done = store.claim_task(hive.id, me, lease_seconds=30)
    store.finish_task(done.id, me, state=TaskState.DONE)
    later = new_id()
    store.post_tasks(hive.id, [Task(id=later, hive_id=hive.id, title="l", depends_on=(done.id,))])
    assert store.claim_task(hive.id, me, lease_seconds=30).id == later


def test_claim_a_named_task(store: Any) -> None:
    hive = make_hive(store, tasks=3)
    target = store.list_tasks(hive.id)[2]
    got = store.claim_task(hive.id, agent_id(hive), lease_seconds=5, task_id=target.id)
    assert got.id == target.id
    assert store.claim_task(hive.id, agent_id(hive), lease_seconds=5, task_id=target.id) is None


def test_a_task_is_finished_once(store: Any) -> None:
    hive = make_hive(store, tasks=1, agents=2)
    me, other = agent_id(hive, 0), agent_id(hive, 1)
    task = store.claim_task(hive.id, me, lease_seconds=30)
    with pytest.raises(Conflict):
        store.finish_task(task.id, other, state=TaskState.DONE)
    done = store.finish_task(task.id, me, state=TaskState.DONE, result="r", verified=True)
    assert done.state is TaskState.DONE
    assert done.result == "r"
    assert done.verified is True
    assert done.finished_at is not None
    assert done.lease_until is None
    with pytest.raises(Conflict):
        store.finish_task(task.id, me, state=TaskState.FAILED)
    with pytest.raises(Conflict):
        store.finish_task(task.id, None, state=TaskState.CANCELLED)
    with pytest.raises(NotFound):
        store.finish_task("missing", me, state=TaskState.DONE)
    kinds = [e.kind for e in store.events(hive.id)]
    assert kinds.count("task_done") == 1


def test_cancel_without_a_claim(store: Any) -> None:
    hive = make_hive(store, tasks=1)
    task = store.list_tasks(hive.id)[0]
    cancelled = store.finish_task(task.id, None, state=TaskState.CANCELLED)
    assert cancelled.state is TaskState.CANCELLED
    assert store.claim_task(hive.id, agent_id(hive), lease_seconds=5) is None
    with pytest.raises(ValueError, match="claim"):
        store.finish_task(task.id, None, state=TaskState.DONE)


def test_release_reopens(store: Any) -> None:
    hive = make_hive(store, tasks=1, agents=2)
    me = agent_id(hive)
    task = store.claim_task(hive.id, me, lease_seconds=30)
    with pytest.raises(Conflict):
        store.release_task(task.id, agent_id(hive, 1), reason="not mine")
    reopened = store.release_task(task.id, me, reason="too hard")
    assert reopened.state is TaskState.OPEN
    assert reopened.assignee is None
    again = store.claim_task(hive.id, agent_id(hive, 1), lease_seconds=30)
    assert again.id == task.id
    assert again.attempts == 2
    assert store.events(hive.id, kinds=["task_released"])[0].data == {"reason": "too hard"}


def test_lease_expiry_reopens_a_task(store: Any) -> None:
    hive = make_hive(store, tasks=1, agents=2)
    dead, alive = agent_id(hive, 0), agent_id(hive, 1)
    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    task = store.claim_task(hive.id, dead, lease_seconds=10, now=t0)
    assert store.next_lease_expiry(hive.id) == t0 + timedelta(seconds=10)
    assert store.expire_leases(now=t0 + timedelta(seconds=9)) == []
    assert store.renew_lease(task.id, dead, lease_seconds=10, now=t0 + timedelta(seconds=9))
    assert store.expire_leases(hive_id=hive.id, now=t0 + timedelta(seconds=18)) == []

    expired = store.expire_leases(now=t0 + timedelta(seconds=20))
    assert [t.id for t in expired] == [task.id]
    assert expired[0].state is TaskState.OPEN
    assert expired[0].assignee is None
    assert store.next_lease_expiry(hive.id) is None
    event = store.events(hive.id, kinds=["lease_expired"])[0]
    assert event.agent_id == dead
    assert event.task_id == task.id

    assert not store.renew_lease(task.id, dead, lease_seconds=10), "the dead agent lost it"
    with pytest.raises(Conflict):
        store.finish_task(task.id, dead, state=TaskState.DONE)
    retaken = store.claim_task(hive.id, alive, lease_seconds=10)
    assert retaken.id == task.id
    assert retaken.attempts == 2


def test_update_task_to_done_unblocks_dependents(store: Any) -> None:
    hive = make_hive(store)
    dep, child = new_id(), new_id()
    store.post_tasks(hive.id, [Task(id=dep, hive_id=hive.id, title="dep", state=TaskState.BLOCKED),
                               Task(id=child, hive_id=hive.id, title="c", depends_on=(dep,))])
    assert store.claim_task(hive.id, agent_id(hive), lease_seconds=5) is None
    store.update_task(dep, state=TaskState.DONE, blocked_on=None)
    assert store.claim_task(hive.id, agent_id(hive), lease_seconds=5).id == child
    with pytest.raises(TypeError):
        store.update_task(dep, no_such_field=1)


def test_list_and_count(store: Any) -> None:
    hive = make_hive(store, tasks=4)
    me = agent_id(hive)
    claimed = store.claim_task(hive.id, me, lease_seconds=5)
    counts = store.count_tasks(hive.id)
    assert counts[TaskState.OPEN] == 3
    assert counts[TaskState.CLAIMED] == 1
    assert counts[TaskState.DONE] == 0
    assert [t.id for t in store.list_tasks(hive.id, assignee=me)] == [claimed.id]
    assert len(store.list_tasks(hive.id, states=[TaskState.OPEN])) == 3
    page = store.list_tasks(hive.id, limit=2, offset=1)
    assert [t.title for t in page] == ["task 1", "task 2"]
    with pytest.raises(NotFound):
        store.get_task("nope")


def test_hives_and_agents(store: Any) -> None:
    from ruflo.model import AgentStatus, Budget, HiveStatus

    hive = make_hive(store, agents=2)
    assert store.get_hive(hive.id).name == "test hive"
    paused = store.set_hive_status(hive.id, HiveStatus.PAUSED, reason="gateway refused the key")
    assert paused.status is HiveStatus.PAUSED
    assert paused.pause_reason == "gateway refused the key"
    store.set_hive_status(hive.id, HiveStatus.RUNNING)
    kinds = [e.kind for e in store.events(hive.id)]
    assert kinds[-2:] == ["hive_paused", "hive_running"]
    updated = store.update_hive(hive.id, budget=Budget(max_tokens=10), config={"seed": 1})
    assert updated.budget.max_tokens == 10
    assert updated.config == {"seed": 1}
    assert [h.id for h in store.list_hives()] == [hive.id]

    agents = store.list_agents(hive.id)
    assert [a.name for a in agents] == ["agent 0", "agent 1"]
    changed = store.update_agent(agents[0].id, status=AgentStatus.WORKING,
                                 thresholds={"python": 0.2})
    assert changed.status is AgentStatus.WORKING
    assert changed.thresholds == {"python": 0.2}
    with pytest.raises(NotFound):
        store.get_hive("nope")
    with pytest.raises(NotFound):
        store.append_event("nope", "http_request")


def test_policy_board_reads_the_unfinished_tasks_and_the_finished_ones_they_wait_on(
        store: Any) -> None:
    hive = make_hive(store)
    me = agent_id(hive)
    done, failed, spent, loose, held = (new_id() for _ in range(5))
    store.post_tasks(hive.id, [
        Task(id=done, hive_id=hive.id, title="done dep"),
        Task(id=failed, hive_id=hive.id, title="failed dep"),
        Task(id=spent, hive_id=hive.id, title="done, nothing waits on it",
             description="long " * 2000),
        Task(id=loose, hive_id=hive.id, title="open", skills=("py", "sql"), priority=7,
             effort=2.5)])
    after_done, after_failed = new_id(), new_id()
    store.post_tasks(hive.id, [
        Task(id=after_done, hive_id=hive.id, title="waits on done", depends_on=(done,)),
        Task(id=after_failed, hive_id=hive.id, title="waits on failed", depends_on=(failed,)),
        Task(id=held, hive_id=hive.id, title="held")])
    for task_id, state in ((done, TaskState.DONE), (failed, TaskState.FAILED),
                           (spent, TaskState.DONE)):
        store.claim_task(hive.id, me, lease_seconds=30, task_id=task_id)
        store.finish_task(task_id, me, state=state, result="r" * 10_000)
    store.claim_task(hive.id, me, lease_seconds=30, task_id=held)

    board = store.policy_board(hive.id)
    unfinished = [task.id for task in board if not task.state.terminal]
    assert unfinished == [loose, after_done, after_failed, held], "posting order"
    by_id = {task.id: task for task in board}
    assert set(by_id) == {loose, after_done, after_failed, held, done, failed}, \
        "a finished task nothing unfinished waits on is not read"
    assert [task.id for task in board[len(unfinished):]] == [done, failed]
    full = {task.id: task for task in store.list_tasks(hive.id)}
    for outline in board:
        task = full[outline.id]
        assert (outline.state, outline.parent_id, outline.skills, outline.priority,
                outline.effort, outline.depends_on, outline.assignee, outline.attempts,
                outline.created_at, outline.updated_at, outline.finished_at) == (
            task.state, task.parent_id, task.skills, task.priority, task.effort,
            task.depends_on, task.assignee, task.attempts, task.created_at, task.updated_at,
            task.finished_at)
    assert by_id[held].assignee == me
    assert by_id[held].state is TaskState.CLAIMED
    assert by_id[loose].skills == ("py", "sql")
    assert by_id[done].finished_at is not None
    assert store.policy_board(make_hive(store).id) == []
