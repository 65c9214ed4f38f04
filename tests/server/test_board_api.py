"""The board API over real HTTP: agents claim tasks under a lease, complete or release them;
races for one task have one winner; bad claims are refused with a reason."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
from server_harness import Served

from ruflo.model import TaskState
from ruflo.server.hives import task_json, walk


def hive_with(served: Served, titles: list[str], **extra: Any) -> str:
    answer = served.client.post("/api/v2/hives", json={
        "objective": "board work", "agents": 1, "tasks": [{"title": t} for t in titles],
        **extra})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def claim(served: Served, hive_id: str, agent: str, **body: Any) -> httpx.Response:
    return served.client.post(f"/api/v2/hives/{hive_id}/tasks/claim",
                              json={"agent": agent, **body})


def test_claim_takes_the_most_urgent_ready_task_and_registers_the_agent(served: Served) -> None:
    hive_id = served.client.post("/api/v2/hives", json={
        "objective": "x", "agents": 1,
        "tasks": [{"title": "low", "priority": 1}, {"title": "high", "priority": 9},
                  {"title": "blocked", "priority": 50, "depends_on": ["low"]}]}).json()["id"]
    answer = claim(served, hive_id, "rest-bot", lease_seconds=30, skills=["python"])
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["task"]["title"] == "high"
    assert body["task"]["state"] == "claimed"
    assert body["lease_seconds"] == 30
    agent = served.store.get_agent(body["agent_id"])
    assert (agent.name, agent.skills, agent.current_task) == ("rest-bot", ("python",),
                                                              body["task"]["id"])
    stored = served.store.get_task(body["task"]["id"])
    assert stored.state is TaskState.CLAIMED
    assert stored.assignee == agent.id
    assert stored.lease_until is not None
    assert stored.claimed_at is not None
    assert 29 <= (stored.lease_until - stored.claimed_at).total_seconds() <= 31
    second = claim(served, hive_id, "rest-bot").json()
    assert second["task"]["title"] == "low"
    assert second["agent_id"] == agent.id, "the same name is the same agent"
    assert claim(served, hive_id, "rest-bot").json()["task"] is None, \
        "the blocked task waits on 'low'"


def test_complete_and_release_move_the_task_and_free_the_agent(served: Served) -> None:
    hive_id = hive_with(served, ["a", "b"])
    a, b = served.store.list_tasks(hive_id)
    first = claim(served, hive_id, "w1", task_id=a.id).json()["task"]
    done = served.client.post(f"/api/v2/hives/{hive_id}/tasks/{first['id']}/complete",
                              json={"agent": "w1", "result": "did it"})
    assert done.status_code == 200, done.text
    assert done.json()["task"]["state"] == "done"
    assert served.store.get_task(first["id"]).result == "did it"
    again = served.client.post(f"/api/v2/hives/{hive_id}/tasks/{first['id']}/complete",
                               json={"agent": "w1"})
    assert again.status_code == 409, "a task is finished once"
    second = claim(served, hive_id, "w1", task_id=b.id).json()["task"]
    released = served.client.post(f"/api/v2/hives/{hive_id}/tasks/{second['id']}/release",
                                  json={"agent": "w1", "reason": "need a human"})
    assert released.status_code == 200, released.text
    assert served.store.get_task(second["id"]).state is TaskState.OPEN
    agent = served.store.get_agent(claim(served, hive_id, "w1", task_id=b.id).json()["agent_id"])
    assert agent.current_task == second["id"], "the released task was claimable again"
    failed = served.client.post(f"/api/v2/hives/{hive_id}/tasks/{second['id']}/complete",
                                json={"agent": "w1", "success": False, "result": "no"})
    assert failed.json()["task"]["state"] == "failed"
    kinds = [e.kind for e in served.store.events(hive_id)]
    for kind in ("task_claimed", "task_done", "task_released", "task_failed"):
        assert kind in kinds


def test_a_verify_command_decides_success(served: Served) -> None:
    hive_id = served.client.post("/api/v2/hives", json={
        "objective": "x", "agents": 1,
        "tasks": [{"title": "check", "verify": "test -f proof.txt"}]}).json()["id"]
    workspace = served.store.get_hive(hive_id).workspace
    assert workspace is not None
    task = claim(served, hive_id, "w", task_id=served.store.list_tasks(hive_id)[0].id).json()["task"]
    Path(workspace).mkdir(parents=True, exist_ok=True)
    answer = served.client.post(f"/api/v2/hives/{hive_id}/tasks/{task['id']}/complete",
                                json={"agent": "w", "result": "claimed done"}).json()
    assert answer["verify"]["passed"] is False
    assert answer["task"]["state"] == "failed", "the agent said success; the command said no"


def test_only_the_holder_may_complete(served: Served) -> None:
    hive_id = hive_with(served, ["a"])
    task = claim(served, hive_id, "owner").json()["task"]
    for agent in ("thief", "owner2"):
        answer = served.client.post(f"/api/v2/hives/{hive_id}/tasks/{task['id']}/complete",
                                    json={"agent": agent})
        assert answer.status_code == 409, answer.text
        assert "not held by" in answer.json()["message"]
    assert served.store.get_task(task["id"]).state is TaskState.CLAIMED


def test_many_agents_racing_for_one_task_have_exactly_one_winner(served: Served) -> None:
    hive_id = hive_with(served, ["only"])
    task_id = served.store.list_tasks(hive_id)[0].id
    results: list[int] = []

    def race(n: int) -> None:
        with httpx.Client(base_url=served.url, timeout=20) as http:
            answer = http.post(f"/api/v2/hives/{hive_id}/tasks/claim",
                               json={"agent": f"racer-{n}", "task_id": task_id})
            results.append(answer.status_code)

    threads = [threading.Thread(target=race, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [200] + [409] * 7
    assert served.store.get_task(task_id).attempts == 1


def test_bad_claims_are_refused_with_a_reason(served: Served) -> None:
    hive_id = hive_with(served, ["a"])
    cases: list[tuple[dict[str, Any], int]] = [
        ({}, 422), ({"agent": ""}, 422), ({"agent": "x" * 101}, 422),
        ({"agent": "a", "lease_seconds": 0}, 422), ({"agent": "a", "lease_seconds": -5}, 422),
        ({"agent": "a", "lease_seconds": 1e12}, 422), ({"agent": "a", "surprise": 1}, 422),
        ({"agent": "a", "task_id": "no-such-task"}, 404),
    ]
    for body, status in cases:
        answer = served.client.post(f"/api/v2/hives/{hive_id}/tasks/claim", json=body)
        assert answer.status_code == status, (body, answer.text)
        assert answer.json()["message"]
    assert served.client.post("/api/v2/hives/nope/tasks/claim",
                              json={"agent": "a"}).status_code == 404
    other = hive_with(served, ["elsewhere"])
    foreign = served.store.list_tasks(other)[0].id
    assert claim(served, hive_id, "a", task_id=foreign).status_code == 404
    assert served.store.get_task(foreign).state is TaskState.OPEN


def test_a_paused_hive_hands_out_no_work(served: Served) -> None:
    hive_id = hive_with(served, ["a"])
    served.client.post(f"/api/v2/hives/{hive_id}/pause", json={"reason": "lunch"})
    answer = claim(served, hive_id, "w")
    assert answer.status_code == 409
    assert "paused" in answer.json()["message"]
    assert served.store.list_tasks(hive_id)[0].state is TaskState.OPEN


def test_the_written_out_task_json_equals_the_generic_conversion(served: Served) -> None:
    hive_id = hive_with(served, ["a", "b"])
    first, second = served.store.list_tasks(hive_id)
    claimed = served.store.claim_task(hive_id, served.store.list_agents(hive_id)[0].id,
                                      lease_seconds=5, task_id=first.id)
    assert claimed is not None
    finished = served.store.finish_task(first.id, claimed.assignee, state=TaskState.DONE,
                                        result="r", verified=True)
    for task in (second, claimed, finished):
        assert task_json(task) == walk(task)
        assert list(task_json(task)) == list(walk(task)), "same keys in the same order"
