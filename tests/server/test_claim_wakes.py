"""Agents that follow a swarm hive's event stream and claim over REST, at a small scale and on a
clock the test moves: each claims when a task is posted, asks again when an answer says so, and
otherwise waits for the next post. Every agent ends with a task, on SQLite and Postgres: no answer
leaves an agent waiting for a post that never comes while tasks are open, no named wait outlasts
the server's idle connection, and agents whose thresholds decline everything take work at their
idle floor instead of polling for minutes (bench/peers.py's waking row, in small)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from server_harness import Served

from ruflo.engine.stored_policy import IDLE_FLOOR, LONGEST_WAIT_SECONDS, TIME_UNIT_SECONDS
from ruflo.model import TaskState, utcnow
from ruflo.server import board
from ruflo.server.listening import uvicorn_config

AGENTS = 20


@pytest.fixture
def served_on(make_server: Callable[..., Served], store_url: str) -> Served:
    return make_server(database_url=store_url)


class MovedClock:
    """Wall time for the server's claim decisions: real time while tasks are posted, then only
    what the test adds."""

    def __init__(self) -> None:
        self.at = utcnow()

    def __call__(self) -> datetime:
        return self.at

    def catch_up(self) -> None:
        self.at = max(self.at, utcnow())


class Followers:
    """The agents as bench/peers.py's waking agents behave, on the test's clock."""

    def __init__(self, served: Served, hive_id: str, clock: MovedClock) -> None:
        self.served, self.hive_id, self.clock = served, hive_id, clock
        self.held: dict[str, str] = {}
        self.due: dict[str, datetime] = {}
        """Agents told to ask again, and when."""
        self.answers: list[dict[str, Any]] = []

    def ask(self, name: str) -> None:
        answer = self.served.client.post(f"/api/v2/hives/{self.hive_id}/tasks/claim",
                                         json={"agent": name})
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        self.answers.append(body)
        self.due.pop(name, None)
        if body["task"] is not None:
            self.held[name] = body["task"]["id"]
        elif "retry_after_seconds" in body:
            self.due[name] = self.clock.at + timedelta(seconds=body["retry_after_seconds"])

    def wake_all(self) -> None:
        """A task was posted: every agent without a task claims (its stream woke it)."""
        for n in range(AGENTS):
            if f"a{n}" not in self.held:
                self.ask(f"a{n}")

    def run_retries(self, until: datetime) -> None:
        """Move the clock from one named retry time to the next, up to `until` (or until the
        answers run into the thousands: agents told to wait no time at all spin)."""
        while self.due and len(self.held) < AGENTS and len(self.answers) < 200 * AGENTS:
            at = min(self.due.values())
            if at > until:
                return
            self.clock.at = max(self.clock.at, at)
            for name in [name for name, due in self.due.items() if due <= self.clock.at]:
                self.ask(name)


def test_every_waking_agent_ends_with_a_task(served_on: Served,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # Agents whose thresholds are far above a fresh task's stimulus: left to their draws, they
    # decline for minutes, with waits that grow past uvicorn's 5 s idle connection.
    answer = served_on.client.post("/api/v2/hives", json={
        "objective": "wake and claim", "mode": "swarm",
        "agents": [{"name": f"a{n}", "thresholds": {"*": 30.0}} for n in range(AGENTS)],
        "tasks": [{"title": "wake task 0"}]})
    assert answer.status_code == 201, answer.text
    hive_id = answer.json()["id"]
    clock = MovedClock()
    monkeypatch.setattr(board.POLICIES, "clock", clock)
    followers = Followers(served_on, hive_id, clock)
    followers.wake_all()
    for n in range(1, AGENTS):
        clock.catch_up()
        posted = served_on.client.post(f"/api/v2/hives/{hive_id}/tasks",
                                       json={"title": f"wake task {n}"})
        assert posted.status_code == 201, posted.text
        followers.wake_all()
    last_post = clock.at
    floor_seconds = IDLE_FLOOR * TIME_UNIT_SECONDS
    followers.run_retries(
        until=last_post + timedelta(seconds=floor_seconds + 2 * LONGEST_WAIT_SECONDS))

    keep_alive = uvicorn_config(object(), "127.0.0.1", 0, head_seconds=15).timeout_keep_alive
    empty = [a for a in followers.answers if a["task"] is None]
    waits = [a["retry_after_seconds"] for a in empty if "retry_after_seconds" in a]
    assert len(waits) == len(empty), \
        "an answer without a task left an agent waiting for a post while tasks were open"
    assert max(waits) < keep_alive, "a named wait outlasts the server's idle connection"
    stranded = sorted(f"a{n}" for n in range(AGENTS) if f"a{n}" not in followers.held)
    assert not stranded, (f"{len(stranded)} agents without a task, "
                          f"{len(followers.due)} still told to wait")
    tasks = served_on.store.list_tasks(hive_id)
    assert len(tasks) == AGENTS
    assert all(task.state is TaskState.CLAIMED for task in tasks)
    assert sorted(task.id for task in tasks) == sorted(followers.held.values())
    floored = [a for a in followers.answers if a["task"] and "idle floor" in a["reason"]]
    assert floored, "the high thresholds declined everything: the floor handed the tasks out"
