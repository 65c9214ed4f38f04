"""A task's branch, commit, merge state, diff stat and patch over real HTTP: the same JSON as
`ruflo task show --json` (engine/isolation.py task_git), hostile content carried as data."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from server_harness import Served

from hostile_git import HOSTILE_NAME, HOSTILE_TEXT, hostile_git_hive
from ruflo.engine.isolation import task_git
from ruflo.model import Task


def test_task_json_carries_its_git_changes(make_server: Callable[..., Served],
                                           tmp_path: Path) -> None:
    served = make_server()
    hive, task = hostile_git_hive(served.store, tmp_path)
    answer = served.client.get(f"/api/v2/hives/{hive.id}/tasks/{task.id}")
    assert answer.status_code == 200, answer.text
    git = answer.json()["git"]
    assert git["branch"] == f"ruflo-tasks/{hive.id}/{task.id}"
    assert git["merged"] is False
    assert git["files"] == [HOSTILE_NAME]
    assert HOSTILE_TEXT.rstrip("\n") in git["patch"]  # data, as it is: the page makes it inert
    assert git["patch_truncated"] is False
    assert "1 file changed" in git["diff"]
    history = [e for e in served.store.events(hive.id) if e.task_id == task.id]
    assert git == task_git(served.store.get_hive(hive.id), history)


def test_task_without_a_commit_has_no_git(make_server: Callable[..., Served],
                                          tmp_path: Path) -> None:
    served = make_server()
    hive, _ = hostile_git_hive(served.store, tmp_path)
    (other,) = served.store.post_tasks(hive.id, [Task(id="plain", hive_id=hive.id, title="t")])
    answer = served.client.get(f"/api/v2/hives/{hive.id}/tasks/{other.id}")
    assert answer.status_code == 200, answer.text
    assert answer.json()["git"] is None
