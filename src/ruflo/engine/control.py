"""Steering a stored hive: pause, resume, cancel. The same whether an engine drives the hive in
this process, in another one, or nowhere: the store records the change and its event, and a
running engine follows the event. Depends on the model and the Store protocol.
"""

from __future__ import annotations

from ruflo.errors import Conflict, GatewayUnavailable
from ruflo.event_kinds import EventKind
from ruflo.model import JSON, AgentStatus, Budget, Hive, HiveStatus, TaskState
from ruflo.store.base import Store

PAUSED_BY_PERSON = "paused by a person"
GATEWAY_UNREACHABLE = GatewayUnavailable.pause_reason
"""The one pause that ends by itself: the engine driving the hive resumes it when the gateway
answers again. Any other pause (a person's, the kill switch's) replaces it and waits for a
person."""
CANCELLED_BY_PERSON = "cancelled by a person"
UNFINISHED = (TaskState.OPEN, TaskState.CLAIMED, TaskState.BLOCKED)


def awaits_gateway(hive: Hive) -> bool:
    """Paused for an unreachable gateway alone: an engine drives it as a running hive (it starts
    on it, looks for the gateway and resumes it), and a run in the terminal waits through it."""
    return hive.status is HiveStatus.PAUSED and hive.pause_reason == GATEWAY_UNREACHABLE


def refuse_if_over(hive: Hive, verb: str) -> None:
    if hive.status.terminal:
        raise Conflict(f"hive {hive.id} is {hive.status.value} and can't be {verb}; "
                       "nothing was changed")


def pause_hive(store: Store, hive_id: str, *, reason: str = PAUSED_BY_PERSON) -> Hive:
    """Pause a running hive. Its engine releases the claims in flight (the tasks reopen, nothing
    is lost) and takes up no new work until it is resumed. Pausing a paused hive changes
    nothing, except a pause for an unreachable gateway: the new reason replaces it, so the hive
    no longer resumes by itself when the gateway comes back."""
    with store.transaction():
        hive = store.get_hive(hive_id)
        if hive.status is HiveStatus.PAUSED and (hive.pause_reason != GATEWAY_UNREACHABLE
                                                 or reason == GATEWAY_UNREACHABLE):
            return hive
        refuse_if_over(hive, "paused")
        return store.set_hive_status(hive_id, HiveStatus.PAUSED, reason=reason)


def resume_after_outage(store: Store, hive_id: str, *, data: JSON | None = None) -> Hive | None:
    """Set the hive running again because the gateway answers, if it is still paused for the
    gateway alone (a person's pause or the kill switch's, made meanwhile, wins). Records
    `gateway_back` with `data`. Returns the hive, or None when it was left as it was."""
    with store.transaction():
        # A write first: on Postgres it holds the hive's row, so a pause made at this moment
        # either is seen below or lands after this resume (and then stands).
        store.update_hive(hive_id)
        hive = store.get_hive(hive_id)
        if hive.status is not HiveStatus.PAUSED or hive.pause_reason != GATEWAY_UNREACHABLE:
            return None
        hive = store.set_hive_status(hive_id, HiveStatus.RUNNING)
        store.append_event(hive_id, EventKind.GATEWAY_BACK, data=data or {})
    return hive


def resume_hive(store: Store, hive_id: str, *, budget: Budget | None = None) -> Hive:
    """Set a paused hive running again (optionally with a new budget); agents paused on their
    own (budget, configuration) are given another go. Resuming a running hive changes
    nothing but the budget."""
    hive = store.get_hive(hive_id)
    refuse_if_over(hive, "resumed")
    with store.transaction():
        if budget is not None:
            hive = store.update_hive(hive_id, budget=budget)
            store.append_event(hive_id, EventKind.HIVE_BUDGET_CHANGED,
                               data={"max_tokens": budget.max_tokens,
                                     "max_cost": budget.max_cost})
        for agent in store.list_agents(hive_id):
            if agent.status is AgentStatus.PAUSED:
                store.update_agent(agent.id, status=AgentStatus.IDLE)
                store.append_event(hive_id, EventKind.AGENT_RESUMED, agent_id=agent.id)
        if hive.status is not HiveStatus.RUNNING:
            hive = store.set_hive_status(hive_id, HiveStatus.RUNNING)
    return hive


def cancel_hive(store: Store, hive_id: str, *, reason: str = CANCELLED_BY_PERSON) -> Hive:
    """End a hive: every unfinished task is cancelled, then the hive. A running engine stops its
    executors. Cancelling a cancelled hive changes nothing."""
    hive = store.get_hive(hive_id)
    if hive.status is HiveStatus.CANCELLED:
        return hive
    refuse_if_over(hive, "cancelled")
    with store.transaction():
        for task in store.list_tasks(hive_id, states=UNFINISHED):
            store.finish_task(task.id, None, state=TaskState.CANCELLED,
                              result="the hive was cancelled")
        return store.set_hive_status(hive_id, HiveStatus.CANCELLED, reason=reason)


def cancel_task(store: Store, task_id: str, *, reason: str = CANCELLED_BY_PERSON) -> list[str]:
    """Cancel a task and what can no longer succeed without it: the unfinished tasks that wait
    on it (directly or not) and, for a split task, its parent and subtasks. Returns the ids
    cancelled, the task first."""
    task = store.get_task(task_id)
    if task.state.terminal:
        raise Conflict(f"task {task_id} is already {task.state.value}; nothing was changed")
    with store.transaction():
        unfinished = {t.id: t for t in store.list_tasks(task.hive_id, states=UNFINISHED)}
        followers: dict[str, list[str]] = {}
        for other in unfinished.values():
            for dep in other.depends_on:
                followers.setdefault(dep, []).append(other.id)
            if other.parent_id is not None:
                # A split task waits on its subtasks, and its subtasks serve only it.
                followers.setdefault(other.id, []).append(other.parent_id)
                followers.setdefault(other.parent_id, []).append(other.id)
        order = [task_id]
        seen = {task_id}
        for current in order:
            for follower in followers.get(current, []):
                if follower not in seen and follower in unfinished:
                    seen.add(follower)
                    order.append(follower)
        for current in order:
            store.finish_task(current, None, state=TaskState.CANCELLED,
                              result=reason if current == task_id
                              else f"cancelled because task {task_id} was cancelled")
    return order
