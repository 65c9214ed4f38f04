"""Dependency cycles on the REST board, on SQLite and Postgres: a hive whose first tasks wait on
each other (a→b→a, a task waiting on itself, longer rings) or on tasks that don't exist is
refused with 422 naming the cycle, and nothing is stored, as workload files already are."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from server_harness import Served

HIVES = "/api/v2/hives"


@pytest.fixture
def served_on(make_server: Callable[..., Served], store_url: str) -> Served:
    return make_server(database_url=store_url)


def tasks(*edges: tuple[str, list[str]]) -> list[dict[str, Any]]:
    return [{"title": title, "depends_on": deps} for title, deps in edges]


CYCLES = {
    "a waits on itself": (tasks(("a", ["a"])), "'a' → 'a'"),
    "a and b wait on each other": (tasks(("a", ["b"]), ("b", ["a"])), "→"),
    "a ring of four": (tasks(("a", ["d"]), ("b", ["a"]), ("c", ["b"]), ("d", ["c"])), "→"),
    "a ring beside sound work": (
        tasks(("root", []), ("x", ["root", "z"]), ("y", ["x"]), ("z", ["y"])), "'x'"),
}


@pytest.mark.parametrize(("board", "named"), CYCLES.values(), ids=CYCLES.keys())
def test_a_hive_whose_tasks_form_a_cycle_is_refused(served_on: Served,
                                                    board: list[dict[str, Any]],
                                                    named: str) -> None:
    answer = served_on.client.post(HIVES, json={"objective": "cycle", "tasks": board})
    assert answer.status_code == 422, answer.text
    message = answer.json()["message"]
    assert "dependency cycle" in message, message
    assert named in message, message
    assert "nothing was posted" in message
    assert served_on.client.get(HIVES).json()["hives"] == []


@pytest.mark.parametrize("unknown", ["no-such-task", "0" * 32, "A"])
def test_first_tasks_waiting_on_unknown_tasks_are_refused(served_on: Served,
                                                          unknown: str) -> None:
    board = tasks(("a", []), ("b", ["a", unknown]))
    answer = served_on.client.post(HIVES, json={"objective": "unknown", "tasks": board})
    assert answer.status_code == 422, answer.text
    assert unknown in answer.json()["message"]
    assert served_on.client.get(HIVES).json()["hives"] == []


def test_a_sound_chain_is_taken_and_posted_tasks_can_only_wait_on_existing_ones(
        served_on: Served) -> None:
    board = tasks(("a", []), ("b", ["a"]), ("c", ["a", "b"]))
    created = served_on.client.post(HIVES, json={"objective": "chain", "tasks": board})
    assert created.status_code == 201, created.text
    hive_id = created.json()["id"]
    listed = served_on.client.get(f"{HIVES}/{hive_id}/tasks").json()["tasks"]
    by_title = {task["title"]: task for task in listed}
    assert by_title["c"]["depends_on"] == [by_title["a"]["id"], by_title["b"]["id"]]
    # One task at a time: a task can only wait on tasks that exist, so no ring can close.
    for deps in (["not-yet-posted"], [by_title["a"]["id"], "later"], [hive_id]):
        answer = served_on.client.post(f"{HIVES}/{hive_id}/tasks",
                                       json={"title": "d", "depends_on": deps})
        assert answer.status_code == 422, answer.text
    after = served_on.client.get(f"{HIVES}/{hive_id}/tasks").json()["tasks"]
    assert len(after) == len(listed)
