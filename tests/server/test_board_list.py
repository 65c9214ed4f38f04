"""The board list over real HTTP goes from stored rows straight to JSON: it must send exactly
what the generic road (Task objects through task_json) sends, for every kind of task."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st
from server_harness import Served

from ruflo.model import Task, TaskState
from ruflo.server.board import ROW_FIELDS, epoch_iso, task_row_json
from ruflo.server.hives import task_json
from ruflo.server.wire import iso
from ruflo.store.sql import TASK_FIELDS


def test_the_row_is_read_by_the_stores_column_names() -> None:
    assert ROW_FIELDS == TASK_FIELDS
    task = Task(id="t", hive_id="h", title="x")
    sent = tuple(name for name in ROW_FIELDS if name != "stimulus")  # a column no longer read
    assert tuple(task_json(task)) == sent, "the JSON keys are the columns, in order"


@given(st.floats(min_value=-6e10, max_value=2.5e11, allow_nan=False, allow_infinity=False))
def test_epoch_iso_equals_formatting_the_datetime(value: float) -> None:
    assert epoch_iso(value) == iso(datetime.fromtimestamp(value, UTC))


def test_epoch_iso_on_the_roundings_edges() -> None:
    for value in (0.0, -0.0, 1.0, -1.0, 0.0005, 0.0004999, 0.9999995, 0.99999949, -0.0000004,
                  -0.9999996, 1_700_000_000.9995, 1_700_000_000.99949999, 1_732_000_000.0078125,
                  1_732_000_000.123456789, 253_402_300_799.0, -62_135_596_800.0):
        assert epoch_iso(value) == iso(datetime.fromtimestamp(value, UTC)), value
    assert epoch_iso(None) is None


def board(served: Served) -> str:
    answer = served.client.post("/api/v2/hives", json={
        "objective": "rows", "agents": 1,
        "tasks": [{"title": "plain"},
                  {"title": "ünïcødé \"quoted\" \\ <tag> \u2028 💥", "description": "d\n\t",
                   "skills": ["python", "sql"], "priority": 7, "effort": 1 / 3,
                   "verify": "true"},
                  {"title": "waits", "depends_on": ["plain"]},
                  {"title": "fails"}, {"title": "released"}]})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def test_the_list_sends_what_the_generic_road_sends(served: Served) -> None:
    hive_id = board(served)
    store = served.store
    agent = store.list_agents(hive_id)[0].id
    by_title = {task.title: task for task in store.list_tasks(hive_id)}
    plain = store.claim_task(hive_id, agent, lease_seconds=30, task_id=by_title["plain"].id)
    assert plain is not None
    store.finish_task(plain.id, agent, state=TaskState.DONE, result="résultat", verified=True)
    failed = store.claim_task(hive_id, agent, lease_seconds=30, task_id=by_title["fails"].id)
    assert failed is not None
    store.finish_task(failed.id, agent, state=TaskState.FAILED, result=None, verified=False)
    released = store.claim_task(hive_id, agent, lease_seconds=30,
                                task_id=by_title["released"].id)
    assert released is not None
    store.release_task(released.id, agent, reason="r")
    store.claim_task(hive_id, agent, lease_seconds=3600)  # one stays claimed, with a lease

    expected = [task_json(task) for task in store.list_tasks(hive_id)]
    assert {task["state"] for task in expected} >= {"done", "failed", "claimed", "open"}
    assert all("stimulus" not in task for task in expected)  # never written, no longer sent
    answer = served.client.get(f"/api/v2/hives/{hive_id}/tasks")
    assert answer.status_code == 200
    assert answer.json() == {"tasks": expected, "hasMore": False}
    rows = store.list_task_rows(hive_id, limit=100)
    assert [task_row_json(row) for row in rows] == expected
    assert [list(task_row_json(row)) for row in rows] == [list(task) for task in expected]


def test_the_list_pages_and_filters_like_the_store(served: Served) -> None:
    hive_id = board(served)
    everything = [task_json(task) for task in served.store.list_tasks(hive_id)]
    first = served.client.get(f"/api/v2/hives/{hive_id}/tasks", params={"limit": 2}).json()
    assert first == {"tasks": everything[:2], "hasMore": True}
    rest = served.client.get(f"/api/v2/hives/{hive_id}/tasks",
                             params={"limit": 3, "offset": 2}).json()
    assert rest == {"tasks": everything[2:], "hasMore": False}
    opened = served.client.get(f"/api/v2/hives/{hive_id}/tasks",
                               params={"state": ["blocked", "done"]}).json()
    assert opened["tasks"] == [t for t in everything if t["state"] in ("blocked", "done")]
    for bad in ({"limit": 0}, {"limit": 1001}, {"offset": -1}, {"state": "nonsense"}):
        refused = served.client.get(f"/api/v2/hives/{hive_id}/tasks", params=bad)
        assert refused.status_code == 422, bad
    missing = served.client.get("/api/v2/hives/no-such-hive/tasks")
    assert missing.status_code == 404
