"""Hives and their agents: creating a hive with its roster and first board, reading, listing and
updating both; a hive that ends cancels its pending approvals. Depends on the core model and
ruflo.store.board."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from ruflo.errors import NotFound
from ruflo.event_kinds import EventKind
from ruflo.model import Agent, Hive, HiveStatus, Task
from ruflo.store.board import SqlBoard
from ruflo.store.rows import (
    AGENT_COLS,
    HIVE_COLS,
    agent_params,
    dumps,
    epoch,
    read_agent,
    read_hive,
    refuse_nul,
)


class SqlHives(SqlBoard):
    """Hives and their agents, in SQL."""

    def create_hive(self, hive: Hive, agents: Sequence[Agent] = (),
                    tasks: Sequence[Task] = ()) -> Hive:
        refuse_nul("hive", {"id": hive.id, "name": hive.name, "objective": hive.objective,
                             "workspace": hive.workspace, "owner": hive.owner,
                             "pause_reason": hive.pause_reason})
        with self.transaction():
            self._exec(
                "INSERT INTO hives (id, name, mode, objective, status, pause_reason, "
                "budget_tokens, budget_cost, workspace, config, owner, created_at, updated_at, "
                "last_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
                (hive.id, hive.name, str(hive.mode), hive.objective, str(hive.status),
                 hive.pause_reason, hive.budget.max_tokens, hive.budget.max_cost,
                 hive.workspace, dumps(hive.config), hive.owner, epoch(hive.created_at),
                 epoch(hive.updated_at)))
            self._append(hive.id, [(EventKind.HIVE_CREATED, None, None,
                                    {"name": hive.name, "mode": str(hive.mode),
                                     "objective": hive.objective})])
            self._insert_agents(hive.id, agents)
            if tasks:
                self._insert_tasks(hive.id, tasks, None)
        return hive

    def get_hive(self, hive_id: str) -> Hive:
        row = self._one(f"SELECT {HIVE_COLS} FROM hives WHERE id = ?", (hive_id,))
        if row is None:
            raise NotFound(f"no hive {hive_id!r}")
        return read_hive(row)

    def list_hives(self, *, owner: str | None = None, limit: int = 100,
                   offset: int = 0) -> list[Hive]:
        where, params = ("WHERE owner = ?", [owner]) if owner is not None else ("", [])
        rows = self._read(f"SELECT {HIVE_COLS} FROM hives {where} ORDER BY created_at DESC, id "
                          "LIMIT ? OFFSET ?", [*params, limit, offset])
        return [read_hive(row) for row in rows]

    def set_hive_status(self, hive_id: str, status: HiveStatus, *,
                        reason: str | None = None) -> Hive:
        status = HiveStatus(status)
        refuse_nul("hive", {"pause reason": reason})
        with self.transaction():
            hive: Hive = self._update_row("hives", "hive", HIVE_COLS, read_hive, hive_id,
                                          {"status": status, "pause_reason": reason})
            self._append(hive_id, [(f"hive_{status}", None, None, {"reason": reason})])
            if status.terminal:  # no decision can take effect in an ended hive
                self._cancel_approvals(hive_id, f"the hive is {status}")
        return hive

    def update_hive(self, hive_id: str, **fields: Any) -> Hive:
        with self.transaction():
            hive: Hive = self._update_row("hives", "hive", HIVE_COLS, read_hive, hive_id, fields)
        return hive

    def _insert_agents(self, hive_id: str, agents: Sequence[Agent]) -> None:
        if not agents:
            return
        for agent in agents:
            refuse_nul("agent", {"id": agent.id, "name": agent.name, "role": agent.role,
                                  "title": agent.title, "capabilities": agent.capabilities,
                                  "skills": agent.skills, "model": agent.model,
                                  "reports_to": agent.reports_to, "worker_id": agent.worker_id})
        base = time.time_ns() // 1000
        self._many(f"INSERT INTO agents ({AGENT_COLS}, ord) VALUES ({', '.join('?' * 21)})",
                   [agent_params(agent, hive_id, base + i) for i, agent in enumerate(agents)])
        self._append(hive_id, [(EventKind.AGENT_ADDED, agent.id, None,
                                {"name": agent.name, "role": agent.role})
                               for agent in agents])

    def add_agent(self, agent: Agent) -> Agent:
        with self.transaction():
            self._insert_agents(agent.hive_id, [agent])
        return agent

    def get_agent(self, agent_id: str) -> Agent:
        row = self._one(f"SELECT {AGENT_COLS} FROM agents WHERE id = ?", (agent_id,))
        if row is None:
            raise NotFound(f"no agent {agent_id!r}")
        return read_agent(row)

    def list_agents(self, hive_id: str) -> list[Agent]:
        return [read_agent(row) for row in self._read(
            f"SELECT {AGENT_COLS} FROM agents WHERE hive_id = ? ORDER BY ord, id", (hive_id,))]

    def update_agent(self, agent_id: str, **fields: Any) -> Agent:
        with self.transaction():
            return self._update_row(  # type: ignore[no-any-return]
                "agents", "agent", AGENT_COLS, read_agent, agent_id, fields)
