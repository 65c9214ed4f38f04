"""A hive created over REST may name a git remote its integration branch lives on (for `ruflo
worker` processes on other machines, agents/gitremote.py): a Postgres store only (that it is an
operator's right: tests/server/test_hive_access.py), the remote must hold the start commit; a REST claim's merge reaches the remote."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from server_harness import Served

from git_repos import bare_clone, user_repo
from ruflo.agents.gitwork import git


def remote_setup(tmp_path: Path) -> tuple[Path, Path]:
    """The user's repository and a bare remote cloned from it (both hold the start)."""
    user_repo(tmp_path / "user", {"README": "start\n"})
    return tmp_path / "user", bare_clone(tmp_path / "user", tmp_path / "remote.git")


def body(repo: Path, remote: str) -> dict[str, object]:
    return {"objective": "x", "agents": 1, "tasks": [{"title": "write it"}],
            "workspace": str(repo), "git_remote": remote}


@pytest.mark.postgres
def test_a_rest_hive_on_a_git_remote_merges_a_claim_there(
        make_server: Callable[..., Served], pg_schema_url: str, tmp_path: Path) -> None:
    served = make_server(database_url=pg_schema_url)
    repo, bare = remote_setup(tmp_path)
    created = served.client.post("/api/v2/hives", json=body(repo, str(bare)))
    assert created.status_code == 201, created.text
    hive_id = created.json()["id"]
    assert created.json()["isolation"]["git_remote"] == str(bare)
    [task] = served.store.list_tasks(hive_id)
    claimed = served.client.post(f"/api/v2/hives/{hive_id}/tasks/claim",
                                 json={"agent": "w", "task_id": task.id}).json()
    (Path(claimed["workspace"]) / "proof.txt").write_text("over REST, on the remote\n")
    done = served.client.post(f"/api/v2/hives/{hive_id}/tasks/{task.id}/complete",
                              json={"agent": "w", "result": "done"}).json()
    assert done["integration"]["merged"] is True
    shown = git("--git-dir", str(bare), "show", f"ruflo/{hive_id}:proof.txt", cwd=tmp_path)
    assert shown.stdout == "over REST, on the remote\n"


@pytest.mark.postgres
def test_a_remote_without_the_start_commit_is_refused_and_nothing_stored(
        make_server: Callable[..., Served], pg_schema_url: str, tmp_path: Path) -> None:
    served = make_server(database_url=pg_schema_url)
    repo, _ = remote_setup(tmp_path)
    empty = tmp_path / "empty.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(empty)], check=True)
    refused = served.client.post("/api/v2/hives", json=body(repo, str(empty)))
    assert refused.status_code == 422, refused.text
    assert "does not have commit" in refused.json()["message"]
    assert refused.json()["message"].endswith("nothing was stored")
    assert served.store.list_hives() == []


def test_a_git_remote_on_a_sqlite_server_is_refused(served: Served, tmp_path: Path) -> None:
    repo, bare = remote_setup(tmp_path)
    refused = served.client.post("/api/v2/hives", json=body(repo, str(bare)))
    assert refused.status_code == 422, refused.text
    assert "a git remote is for workers on other machines" in refused.json()["message"]
    assert served.store.list_hives() == []

