"""How a hive's progress reads to a person or a client following it from outside: which events
are news, one line per event, and the verified summary at the end. Shared by the A2A agent and
the OpenAI-compatible completions. Depends on the engine's summary and the core model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ruflo.errors import GatewayUnavailable
from ruflo.event_kinds import EventKind
from ruflo.model import Hive, HiveStatus
from ruflo.model import Task as BoardTask
from ruflo.server.context import ServerContext

NOTABLE = frozenset({
    EventKind.TASK_POSTED, EventKind.TASK_CLAIMED, EventKind.TASK_DONE, EventKind.TASK_FAILED,
    EventKind.TASK_RELEASED, EventKind.TASK_CANCELLED, EventKind.TASK_VERIFIED,
    EventKind.HIVE_PAUSED, EventKind.HIVE_RUNNING, EventKind.BUDGET_WARNING,
    EventKind.BUDGET_EXCEEDED, EventKind.OBJECTIVE_VERIFIED, EventKind.APPROVAL_REQUESTED,
    EventKind.APPROVAL_DECIDED, EventKind.APPROVAL_CANCELLED, EventKind.TICKET_DELEGATED,
    EventKind.TICKET_ESCALATED, EventKind.AGENT_HIRED, EventKind.A2A_MESSAGE})
"""Hive events passed on as progress to an outside client; the rest (heartbeats, spend...) are
not news, and the hive's end comes as the verified summary instead. (The terminal watcher,
engine/view.py, shows more: lease expiries, lost agents, the hive's end.)"""


def waits_for_a_person(hive: Hive) -> bool:
    """A paused hive that only a person resumes (an unreachable gateway's pause ends by itself
    when it answers again)."""
    return hive.status is HiveStatus.PAUSED and \
        hive.pause_reason != GatewayUnavailable.pause_reason


def run_summary(ctx: ServerContext, hive_id: str) -> dict[str, Any]:
    """The verified summary: how the hive ended, its spend, and every task with its verdict."""
    from ruflo.engine.board_engine import summarise

    summary = summarise(ctx.store, hive_id).to_json()
    summary["board"] = [task_line(task) for task in ctx.store.list_tasks(hive_id)]
    return summary


def task_line(task: BoardTask) -> dict[str, Any]:
    return {"id": task.id, "title": task.title, "state": task.state.value,
            "verified": task.verified, "result": task.result}


def summary_text(summary: Mapping[str, Any]) -> str:
    lines = [f"hive {summary['hive_id']}: {summary['status']}; objective "
             f"{'verified' if summary['objective_succeeded'] else 'not verified'}; "
             f"{summary['tokens']} tokens"]
    lines += [f"- {t['title']}: {t['state']}"
              + ("" if t["verified"] is None else " (verified)" if t["verified"]
                 else " (verify failed)") for t in summary["board"]]
    return "\n".join(lines)


def describe(kind: str, data: Mapping[str, Any]) -> str:
    """One line for a notable event."""
    detail = data.get("title") or data.get("reason") or data.get("subject") or ""
    return f"{kind.replace('_', ' ')}: {detail}" if detail else kind.replace("_", " ")
