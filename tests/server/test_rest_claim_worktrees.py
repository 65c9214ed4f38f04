"""An outside agent claiming over the REST board in a git hive gets a worktree of its own, over
real HTTP and real git (engine/claim_worktrees.py, shared with MCP): the claim names it, complete
runs the verify there and ruflo commits and merges it into ruflo/<hive>; a release removes it."""

from __future__ import annotations

from pathlib import Path

from server_harness import Served

from ruflo.agents.gitwork import git
from ruflo.event_kinds import EventKind


def _hive(served: Served, verify: str | None = None) -> tuple[str, str, Path]:
    task: dict[str, str] = {"title": "write it"}
    if verify is not None:
        task["verify"] = verify
    answer = served.client.post("/api/v2/hives", json={"objective": "x", "agents": 1,
                                                       "tasks": [task]})
    assert answer.status_code == 201, answer.text
    hive_id = str(answer.json()["id"])
    workspace = served.store.get_hive(hive_id).workspace
    assert workspace is not None
    return hive_id, served.store.list_tasks(hive_id)[0].id, Path(workspace)


def test_a_rest_claim_works_in_its_worktree_and_complete_merges_it(served: Served) -> None:
    hive_id, task_id, folder = _hive(served, verify="test -f proof.txt && pwd")
    claimed = served.client.post(f"/api/v2/hives/{hive_id}/tasks/claim",
                                 json={"agent": "w", "task_id": task_id}).json()
    tree = Path(claimed["workspace"])
    assert claimed["worktree"] is True
    assert tree != folder
    (tree / "proof.txt").write_text("made over REST\n")
    answer = served.client.post(f"/api/v2/hives/{hive_id}/tasks/{task_id}/complete",
                                json={"agent": "w", "result": "done"}).json()
    assert answer["task"]["state"] == "done"
    assert answer["verify"]["output"].strip() == str(tree)
    assert answer["integration"]["merged"] is True
    shown = git("show", f"ruflo/{hive_id}:proof.txt", cwd=folder)
    assert shown.stdout == "made over REST\n"
    assert not (folder / "proof.txt").exists()
    assert not tree.exists()
    kinds = {e.kind for e in served.store.events(hive_id) if e.task_id == task_id}
    assert {EventKind.WORKTREE_OPENED, EventKind.TASK_COMMITTED, EventKind.TASK_MERGED} <= kinds


def test_a_released_rest_claim_removes_its_worktree(served: Served) -> None:
    hive_id, task_id, _ = _hive(served)
    claimed = served.client.post(f"/api/v2/hives/{hive_id}/tasks/claim",
                                 json={"agent": "w", "task_id": task_id}).json()
    assert Path(claimed["workspace"]).is_dir()
    released = served.client.post(f"/api/v2/hives/{hive_id}/tasks/{task_id}/release",
                                  json={"agent": "w", "reason": "not mine"})
    assert released.status_code == 200, released.text
    assert not Path(claimed["workspace"]).exists()
