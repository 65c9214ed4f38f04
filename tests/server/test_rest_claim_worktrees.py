"""An outside agent claiming over the REST board in a git hive gets a worktree of its own, over
real HTTP and real git (engine/claim_worktrees.py, shared with MCP): the claim names it, complete
runs the verify there and ruflo commits and merges it into ruflo/<hive>; a release removes it."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
from server_harness import Served

from ruflo.agents.gitwork import git
from ruflo.event_kinds import EventKind


def _hive(served: Served, verify: str | None = None, *,
          tasks: int = 1) -> tuple[str, str, Path]:
    task: dict[str, str] = {"title": "write it"}
    if verify is not None:
        task["verify"] = verify
    answer = served.client.post("/api/v2/hives", json={
        "objective": "x", "agents": 1,
        "tasks": [{**task, "title": f"write it {n}"} for n in range(tasks)]})
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


def test_four_agents_claiming_at_once_each_get_a_worktree_and_all_four_merge(
        served: Served) -> None:
    hive_id, _, folder = _hive(served, tasks=4)
    task_ids = [t.id for t in served.store.list_tasks(hive_id)]
    start = threading.Barrier(len(task_ids))
    answers: dict[str, Any] = {}

    def agent(n: int, task_id: str) -> None:
        with httpx.Client(base_url=served.url, timeout=60) as client:
            start.wait()
            claimed = client.post(f"/api/v2/hives/{hive_id}/tasks/claim",
                                  json={"agent": f"w{n}", "task_id": task_id}).json()
            (Path(claimed["workspace"]) / f"part{n}.txt").write_text(f"agent {n}\n")
            answers[task_id] = (claimed, client.post(
                f"/api/v2/hives/{hive_id}/tasks/{task_id}/complete",
                json={"agent": f"w{n}", "result": "done"}).json())

    threads = [threading.Thread(target=agent, args=(n, task_id))
               for n, task_id in enumerate(task_ids)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(answers) == 4
    trees = {claimed["workspace"] for claimed, _ in answers.values()}
    assert len(trees) == 4
    assert str(folder) not in trees
    assert all(done["integration"]["merged"] for _, done in answers.values())
    for n in range(4):
        shown = git("show", f"ruflo/{hive_id}:part{n}.txt", cwd=folder)
        assert shown.stdout == f"agent {n}\n"
    assert not any(Path(tree).exists() for tree in trees)


def test_a_claim_whose_worktree_cannot_be_opened_is_given_back(served: Served) -> None:
    hive_id, first, folder = _hive(served, tasks=2)
    claimed = served.client.post(f"/api/v2/hives/{hive_id}/tasks/claim",
                                 json={"agent": "w", "task_id": first})
    assert claimed.status_code == 200, claimed.text
    # Someone deletes the hive's integration branch under it: git has nothing to cut from.
    git("update-ref", "-d", f"refs/heads/ruflo/{hive_id}", cwd=folder)
    second = next(t.id for t in served.store.list_tasks(hive_id) if t.id != first)
    refused = served.client.post(f"/api/v2/hives/{hive_id}/tasks/claim",
                                 json={"agent": "v", "task_id": second})
    assert refused.status_code == 422, refused.text
    message = refused.json()["message"]
    assert f"task {second} could not get a worktree" in message
    assert "the claim was given back, nothing is held" in message
    task = served.store.get_task(second)
    assert (task.state.value, task.assignee) == ("open", None)
    [agent] = [a for a in served.store.list_agents(hive_id) if a.name == "v"]
    assert (agent.status.value, agent.current_task) == ("idle", None)
