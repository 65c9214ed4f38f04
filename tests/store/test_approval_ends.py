"""Approvals that can no longer take effect are cancelled by the store, with an event saying why:
those of a task that ends (done, failed or cancelled), those of an attempt whose journal is
closed, and every pending one of a hive that ends. Deciding one afterwards is refused and
changes nothing. SQLite and Postgres."""

from __future__ import annotations

from typing import Any

import pytest
from store_helpers import agent_id, make_hive

from ruflo.errors import Conflict
from ruflo.model import (
    JSON,
    Approval,
    ApprovalKind,
    ApprovalStatus,
    AttemptJournal,
    HiveStatus,
    TaskState,
    new_id,
    utcnow,
)


def ask(store: Any, hive_id: str, kind: ApprovalKind = ApprovalKind.ACTION,
        **data: object) -> Approval:
    approval: Approval = store.create_approval(Approval(
        id=new_id(), hive_id=hive_id, kind=kind, subject=f"{kind} {data}", data=dict(data)))
    return approval


def status(store: Any, approval: Approval) -> ApprovalStatus:
    return store.get_approval(approval.id).status  # type: ignore[no-any-return]


def cancelled_events(store: Any, hive_id: str) -> dict[str, JSON]:
    return {e.data["approval_id"]: e.data for e in store.events(hive_id)
            if e.kind == "approval_cancelled"}


@pytest.mark.parametrize("ending", [TaskState.DONE, TaskState.FAILED, TaskState.CANCELLED])
def test_a_task_that_ends_cancels_its_pending_approvals(store: Any, ending: TaskState) -> None:
    hive = make_hive(store, tasks=2)
    mine, other = store.list_tasks(hive.id)
    me = agent_id(hive)
    waiting = ask(store, hive.id, task_id=mine.id, journal_id="j1", turn=3)
    hire = ask(store, hive.id, ApprovalKind.HIRE, task_id=mine.id)
    decided = ask(store, hive.id, task_id=mine.id, journal_id="j0", turn=1)
    store.decide_approval(decided.id, ApprovalStatus.APPROVED, decided_by="person:ops")
    elsewhere = ask(store, hive.id, task_id=other.id, journal_id="j2", turn=1)
    budget = ask(store, hive.id, ApprovalKind.BUDGET_OVERRIDE, scope="hive", scope_id=hive.id)

    if ending is TaskState.CANCELLED:
        store.finish_task(mine.id, None, state=ending)
    else:
        store.claim_task(hive.id, me, lease_seconds=60, task_id=mine.id)
        store.finish_task(mine.id, me, state=ending)

    assert status(store, waiting) is ApprovalStatus.CANCELLED
    assert status(store, hire) is ApprovalStatus.CANCELLED
    assert status(store, decided) is ApprovalStatus.APPROVED, "a decision taken stands"
    assert status(store, elsewhere) is ApprovalStatus.PENDING
    assert status(store, budget) is ApprovalStatus.PENDING
    events = cancelled_events(store, hive.id)
    assert set(events) == {waiting.id, hire.id}
    assert events[waiting.id]["reason"] == f"the task is {ending.value}"
    assert events[waiting.id]["kind"] == "action"
    gone = store.get_approval(waiting.id)
    assert gone.decided_by == "ruflo"
    assert gone.data["reason"] == f"the task is {ending.value}"
    assert {a.id for a in store.list_approvals(hive_id=hive.id,
                                               status=ApprovalStatus.PENDING)} \
        == {elsewhere.id, budget.id}

    with pytest.raises(Conflict) as refused:
        store.decide_approval(waiting.id, ApprovalStatus.APPROVED, decided_by="person:ops")
    said = str(refused.value)
    assert "\n" not in said
    assert f"approval {waiting.id} was cancelled (the task is {ending.value})" in said
    assert said.endswith("nothing was changed")
    assert status(store, waiting) is ApprovalStatus.CANCELLED


def test_a_closed_journal_cancels_the_approvals_its_attempt_asked(store: Any) -> None:
    hive = make_hive(store, tasks=1)
    [task] = store.list_tasks(hive.id)
    journal = store.open_journal(AttemptJournal(
        id=new_id(), hive_id=hive.id, task_id=task.id, agent_id=agent_id(hive), task_hash="h",
        opening={"messages": []}, opened_at=utcnow()))
    waiting = ask(store, hive.id, task_id=task.id, journal_id=journal.id, turn=2)
    newer = ask(store, hive.id, task_id=task.id, journal_id="another attempt", turn=2)
    outside = ask(store, hive.id, task_id=task.id, journal_id=None, step="toolu_1")

    assert store.close_journal(journal.id, "the task changed since this attempt began")
    assert not store.close_journal(journal.id, "again")

    assert status(store, waiting) is ApprovalStatus.CANCELLED
    assert status(store, newer) is ApprovalStatus.PENDING
    assert status(store, outside) is ApprovalStatus.PENDING
    events = cancelled_events(store, hive.id)
    assert list(events) == [waiting.id]
    assert events[waiting.id]["reason"] == ("its attempt's journal was closed: the task changed "
                                            "since this attempt began")


@pytest.mark.parametrize("ending", [HiveStatus.DONE, HiveStatus.FAILED, HiveStatus.CANCELLED])
def test_a_hive_that_ends_cancels_every_pending_approval(store: Any, ending: HiveStatus) -> None:
    hive = make_hive(store, tasks=1)
    other = make_hive(store)
    [task] = store.list_tasks(hive.id)
    action = ask(store, hive.id, task_id=task.id, journal_id="j1", turn=1)
    budget = ask(store, hive.id, ApprovalKind.BUDGET_OVERRIDE, scope="hive", scope_id=hive.id)
    strategy = ask(store, hive.id, ApprovalKind.STRATEGY, task_id=task.id)
    theirs = ask(store, other.id, ApprovalKind.BUDGET_OVERRIDE, scope="hive", scope_id=other.id)

    store.set_hive_status(hive.id, HiveStatus.PAUSED, reason="paused by a person")
    assert status(store, action) is ApprovalStatus.PENDING, "a pause keeps approvals waiting"
    store.set_hive_status(hive.id, ending, reason="over")

    for approval in (action, budget, strategy):
        assert status(store, approval) is ApprovalStatus.CANCELLED
    assert status(store, theirs) is ApprovalStatus.PENDING
    events = cancelled_events(store, hive.id)
    assert {e["reason"] for e in events.values()} == {f"the hive is {ending.value}"}
    assert store.list_approvals(hive_id=hive.id, status=ApprovalStatus.PENDING) == []
    with pytest.raises(Conflict, match=r"cancelled \(the hive is"):
        store.decide_approval(budget.id, ApprovalStatus.REJECTED, decided_by="person:ops")
