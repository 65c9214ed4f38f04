"""The REST claim goes through the hive's policy, on SQLite and Postgres: in a swarm hive the
agents' response thresholds decide who takes a task over HTTP (the agent with the low threshold
for its skill takes it; the one with the high threshold declines, says why and when to look
again), and a round-robin hive hands an agent only its own pile."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from server_harness import Served

from ruflo.model import TaskState


@pytest.fixture
def served_on(make_server: Callable[..., Served], store_url: str) -> Served:
    return make_server(database_url=store_url)


def swarm_hive(served: Served, thresholds: dict[str, float]) -> str:
    """A swarm hive with one `rust` task and two agents whose `rust` thresholds are given."""
    answer = served.client.post("/api/v2/hives", json={
        "objective": "port the parser", "mode": "swarm",
        "agents": [{"name": name, "skills": ["rust"], "thresholds": {"rust": theta}}
                   for name, theta in thresholds.items()],
        "tasks": [{"title": "port the lexer", "skills": ["rust"]}]})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def claim(served: Served, hive_id: str, agent: str) -> dict[str, Any]:
    answer = served.client.post(f"/api/v2/hives/{hive_id}/tasks/claim", json={"agent": agent})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


@pytest.mark.parametrize(("low", "high"), [("ada", "bob"), ("bob", "ada")])
def test_the_agent_with_the_low_threshold_takes_the_task_over_rest(
        served_on: Served, low: str, high: str) -> None:
    hive_id = swarm_hive(served_on, {low: 0.5, high: 30.0})

    declined = claim(served_on, hive_id, high)
    assert declined["task"] is None, f"{high}'s threshold is far above the task's stimulus"
    assert "threshold" in declined["reason"]
    assert declined["retry_after_seconds"] > 0
    assert served_on.store.list_tasks(hive_id)[0].state is TaskState.OPEN

    taken = claim(served_on, hive_id, low)
    assert taken["task"] is not None, taken["reason"]
    assert taken["task"]["title"] == "port the lexer"
    assert "threshold" in taken["reason"]
    stored = served_on.store.list_tasks(hive_id)[0]
    assert stored.state is TaskState.CLAIMED
    assert stored.assignee == taken["agent_id"]
    assert claim(served_on, hive_id, high)["task"] is None, "nothing else is ready"


def test_a_declining_agent_learns_its_threshold_rose(served_on: Served) -> None:
    hive_id = swarm_hive(served_on, {"ada": 0.5, "bob": 20.0})
    claim(served_on, hive_id, "bob")
    bob = next(a for a in served_on.store.list_agents(hive_id) if a.name == "bob")
    assert bob.thresholds["rust"] > 20.0, "declining raises the threshold, and it is stored"


def test_round_robin_hands_a_rest_agent_only_its_own_pile(served_on: Served) -> None:
    answer = served_on.client.post("/api/v2/hives", json={
        "objective": "deal", "mode": "round_robin",
        "agents": [{"name": "ada"}, {"name": "bob"}],
        "tasks": [{"title": f"t{n}"} for n in range(4)]})
    assert answer.status_code == 201, answer.text
    hive_id = answer.json()["id"]
    took = {name: [] for name in ("ada", "bob")}  # type: dict[str, list[str]]
    for _ in range(3):
        for name in took:
            got = claim(served_on, hive_id, name)["task"]
            if got is not None:
                took[name].append(got["title"])
    assert sorted(took["ada"] + took["bob"]) == ["t0", "t1", "t2", "t3"]
    assert len(took["ada"]) == len(took["bob"]) == 2, took


def test_a_named_task_is_still_claimed_whatever_the_threshold(served_on: Served) -> None:
    hive_id = swarm_hive(served_on, {"ada": 0.5, "bob": 30.0})
    task_id = served_on.store.list_tasks(hive_id)[0].id
    answer = served_on.client.post(f"/api/v2/hives/{hive_id}/tasks/claim",
                                   json={"agent": "bob", "task_id": task_id})
    assert answer.status_code == 200, answer.text
    assert answer.json()["task"]["id"] == task_id
    assert answer.json()["reason"] == "the agent asked for it"
