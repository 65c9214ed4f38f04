"""Builders for store tests: a hive with agents and tasks in one call."""

from __future__ import annotations

from typing import Any

from ruflo.model import Agent, Hive, Mode, Task, new_id


def make_hive(store: Any, *, tasks: int = 0, agents: int = 1, **task_fields: Any) -> Hive:
    hive = Hive(id=new_id(), name="test hive", mode=Mode.SWARM, objective="test the store")
    store.create_hive(
        hive,
        [Agent(id=f"{hive.id[:8]}-a{i}", hive_id=hive.id, name=f"agent {i}") for i in range(agents)],
        [Task(id=new_id(), hive_id=hive.id, title=f"task {i}", **task_fields)
         for i in range(tasks)])
    return hive


def agent_id(hive: Hive, i: int = 0) -> str:
    return f"{hive.id[:8]}-a{i}"
