"""A task's branch, commit, merge state, diff stat and patch over real HTTP: the same JSON as
`ruflo task show --json` (engine/isolation.py task_git), hostile content carried as data; and
the disk of a live hive's worktrees in /metrics."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from server_harness import Served

from hostile_git import HOSTILE_NAME, HOSTILE_TEXT, hostile_git_hive
from ruflo.agents.gitwork import HiveRepo
from ruflo.engine.isolation import task_git
from ruflo.model import HiveStatus, Task


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


def _worktree_gauge(served: Served, hive_id: str) -> int | None:
    text = served.client.get("/metrics").text
    assert "# TYPE ruflo_worktree_bytes gauge" in text
    prefix = f'ruflo_worktree_bytes{{hive="{hive_id}"}} '
    values = [int(line.removeprefix(prefix)) for line in text.splitlines()
              if line.startswith(prefix)]
    assert len(values) <= 1
    return values[0] if values else None


def test_metrics_report_the_disk_of_a_live_hives_worktrees(make_server: Callable[..., Served],
                                                           tmp_path: Path) -> None:
    served = make_server()
    hive, _ = hostile_git_hive(served.store, tmp_path)
    repo = HiveRepo(str(hive.workspace), hive.id)
    before = _worktree_gauge(served, hive.id)
    assert before == repo.disk_bytes()
    assert before is not None
    assert before > 0
    tree = repo.open_attempt("in-flight")
    (tree.path / "big.bin").write_bytes(b"x" * 100_000)
    during = _worktree_gauge(served, hive.id)
    assert during is not None
    assert during >= before + 100_000
    repo.remove_attempt("in-flight")
    assert _worktree_gauge(served, hive.id) == before
    served.store.set_hive_status(hive.id, HiveStatus.DONE)
    assert _worktree_gauge(served, hive.id) is None  # a finished hive is not scraped
