"""A git hive whose one task committed hostile content (a `<script>` file name, terminal escapes
and a NUL-free control-character soup in the patch) through ruflo's own commit path, for the API
and hive-page tests of a task's changes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ruflo.agents.gitwork import HiveRepo, init_repo
from ruflo.engine.isolation import isolation_config, open_isolation
from ruflo.event_kinds import EventKind
from ruflo.model import Hive, Mode, Task, TaskState

HOSTILE_NAME = "<img src=x onerror=window.pwned=3>\x1b[31m.txt"
HOSTILE_TEXT = "<script>window.pwned = 1</script>\x1b[2J\x07<img src=x onerror=window.pwned=2>\n"


def hostile_git_hive(store: Any, root: Path, hive_id: str = "githive") -> tuple[Hive, Task]:
    """The hive and its task, committed (not merged); the task's worktree is removed."""
    repo = root / f"repo-{hive_id}"
    repo.mkdir()
    (repo / "README").write_text("a project\n")
    init_repo(repo)
    config, _ = isolation_config(repo, None)
    hive = Hive(id=hive_id, name="git hive", mode=Mode.SWARM, objective="edit",
                workspace=str(repo), config=config)
    task = Task(id=f"{hive_id}-t1", hive_id=hive_id, title="<b>hostile</b> task",
                state=TaskState.DONE)
    store.create_hive(hive, agents=[], tasks=[task])
    open_isolation(store, hive)
    git_repo = HiveRepo(repo, hive_id)
    tree = git_repo.open_attempt(task.id)
    (tree.path / HOSTILE_NAME).write_text(HOSTILE_TEXT)
    commit, changed = git_repo.commit_attempt(tree, "hostile")
    store.append_event(hive_id, EventKind.TASK_COMMITTED, task_id=task.id,
                       data={"branch": tree.branch, "commit": commit, "base": tree.base,
                             "files": changed})
    git_repo.remove_attempt(task.id)
    return hive, store.get_task(task.id)
