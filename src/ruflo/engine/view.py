"""What a person watches while a hive runs: a Rich live view (board by state, agents with their
current task and spend, the latest events) redrawn when events arrive, or plain lines when the
output is not a terminal. Depends on Rich, the model and the Store protocol.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ruflo.event_kinds import EventKind
from ruflo.model import Event, TaskState

if TYPE_CHECKING:
    from ruflo.store.base import Store

REDRAW_EVERY = 0.2
"""Seconds between redraws at most: a burst of events is drawn once."""

NOTABLE = (EventKind.TASK_POSTED, EventKind.TASK_CLAIMED, EventKind.TASK_DONE,
           EventKind.TASK_FAILED, EventKind.TASK_RELEASED, EventKind.TASK_CANCELLED,
           EventKind.LEASE_EXPIRED, EventKind.AGENT_PAUSED, EventKind.AGENT_LOST,
           EventKind.HIVE_PAUSED, EventKind.HIVE_RUNNING, EventKind.HIVE_DONE,
           EventKind.HIVE_FAILED, EventKind.HIVE_CANCELLED, EventKind.TASK_VERIFIED,
           EventKind.BUDGET_WARNING, EventKind.BUDGET_EXCEEDED, EventKind.OBJECTIVE_VERIFIED,
           EventKind.ATTEMPT_DISCARDED, EventKind.TICKET_DELEGATED, EventKind.TICKET_ESCALATED,
           EventKind.TICKET_REASSIGNED, EventKind.CHILDREN_COMPLETED, EventKind.APPROVAL_REQUESTED,
           EventKind.APPROVAL_DECIDED, EventKind.APPROVAL_CANCELLED, EventKind.HIRE_REQUESTED,
           EventKind.AGENT_HIRED)

STATE_STYLE = {TaskState.OPEN: "cyan", TaskState.CLAIMED: "yellow", TaskState.DONE: "green",
               TaskState.FAILED: "red", TaskState.BLOCKED: "magenta",
               TaskState.CANCELLED: "dim"}


def describe_event(event: Event, names: dict[str, str]) -> str:
    """One line for a person: who did what to which task, and why."""
    who = names.get(event.agent_id or "", event.agent_id or "")
    task = event.task_id or ""
    data = event.data
    detail = ""
    for key in ("reason", "result", "title"):
        value = data.get(key)
        if isinstance(value, str) and value:
            detail = " ".join(value.split())[:100]
            break
    if event.kind == EventKind.TASK_VERIFIED:
        detail = f"`{data.get('command')}` {'passed' if data.get('passed') else 'failed'}"
    parts = [f"#{event.seq}", event.kind]
    if who:
        parts.append(who)
    if task:
        parts.append(task)
    line = " ".join(parts)
    return f"{line}: {detail}" if detail else line


class HiveView:
    """Draws a hive from the store; `changed()` (from the engine's on_change) asks for a redraw."""

    def __init__(self, store: Store, hive_id: str, console: Console | None = None,
                 recent: int = 8) -> None:
        self.store = store
        self.hive_id = hive_id
        self.console = console or Console(stderr=True)
        self.recent = recent
        self._flag = asyncio.Event()
        self._seq = store.last_seq(hive_id)

    def changed(self) -> None:
        self._flag.set()

    def render(self) -> RenderableType:
        hive = self.store.get_hive(self.hive_id)
        counts = self.store.count_tasks(self.hive_id)
        agents = self.store.list_agents(self.hive_id)
        names = {a.id: a.name for a in agents}
        head = Text.assemble((f"hive {hive.id} ", "bold"), f"{hive.mode.value} · ",
                             (hive.status.value, "bold"),
                             f" ({hive.pause_reason})" if hive.pause_reason else "")
        board = Text("  ").join(Text(f"{state.value} {counts[state]}", style=STATE_STYLE[state])
                                for state in TaskState)
        table = Table(box=None, pad_edge=False)
        for column in ("agent", "status", "task", "tokens", "cost"):
            table.add_column(column, justify="right" if column in ("tokens", "cost") else "left")
        for agent in agents:
            table.add_row(agent.name, agent.status.value, agent.current_task or "-",
                          str(agent.spent_tokens), f"${agent.spent_cost:.4f}")
        events = self.store.events(self.hive_id, after_seq=max(0, self.store.last_seq(
            self.hive_id) - 200), kinds=list(NOTABLE))[-self.recent:]
        lines = Text("\n").join(Text(describe_event(e, names), style="dim") for e in events)
        return Group(head, board, table, lines)

    async def follow(self) -> None:
        """Redraw on events until cancelled: a terminal gets the live view, anything else one
        line per notable event."""
        if self.console.is_terminal:
            with Live(self.render(), console=self.console, auto_refresh=False,
                      transient=False) as live:
                try:
                    while True:
                        await self._flag.wait()
                        self._flag.clear()
                        live.update(self.render(), refresh=True)
                        await asyncio.sleep(REDRAW_EVERY)
                finally:
                    live.update(self.render(), refresh=True)
        else:
            try:
                while True:
                    await self._flag.wait()
                    self._flag.clear()
                    self.print_new()
                    await asyncio.sleep(REDRAW_EVERY)
            finally:
                self.print_new()

    def print_new(self) -> None:
        names = {a.id: a.name for a in self.store.list_agents(self.hive_id)}
        for event in self.store.events(self.hive_id, after_seq=self._seq, kinds=list(NOTABLE)):
            self.console.print(describe_event(event, names), markup=False, highlight=False)
        self._seq = self.store.last_seq(self.hive_id)
