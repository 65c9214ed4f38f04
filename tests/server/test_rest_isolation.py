"""Hives started over REST choose their isolation by the one rule every starter shares
(engine/isolation.py prepare_workspace), on SQLite and Postgres, with the live engine and the
ScriptedGateway over real HTTP: a folder the server makes becomes a repository and each attempt
runs in its own worktree; a repository given keeps its branch and working tree; a folder given
that is not a repository is refused unless isolation "none" is asked; a bad value is refused
with nothing stored."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from server_harness import GATEWAY_KEY, Served

from agent_scripts import work_rules
from ruflo.agents.gitwork import HiveRepo, git, init_repo
from ruflo.event_kinds import EventKind
from ruflo.gateway.client import RetryPolicy
from ruflo.server.auth import hash_token
from waiting import wait_until

FAST = {"time_unit": 0.05, "lease_seconds": 5.0}


def _server(make_server: Callable[..., Served], store_url: str, *names: str) -> Served:
    rules = [rule for name in names for rule in work_rules(name)]
    return make_server(script={"keys": [GATEWAY_KEY], "cost": 0.0001, "rules": rules},
                       live=True, poll_seconds=0.5, database_url=store_url,
                       retry=RetryPolicy(attempts=2, timeout=5.0, wait_initial=0.01,
                                         wait_max=0.05))


def _create(served: Served, names: list[str], **extra: Any) -> Any:
    return served.client.post("/api/v2/hives", json={
        "objective": "write the files", "agents": 2, "config": FAST, **extra,
        "tasks": [{"title": name, "verify": f"grep -qx {name} {name}.txt"} for name in names]})


def _finished(served: Served, hive_id: str) -> dict[str, Any]:
    wait_until(lambda: served.store.get_hive(hive_id).status.terminal, within=60,
               what="the hive never ended")
    answer = served.client.get(f"/api/v2/hives/{hive_id}")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _git_events(served: Served, hive_id: str) -> dict[str, int]:
    events = served.store.events(hive_id, kinds=[EventKind.ISOLATION_READY,
                                                 EventKind.TASK_COMMITTED,
                                                 EventKind.TASK_MERGED])
    return {kind: sum(e.kind == kind for e in events) for kind in
            ("isolation_ready", "task_committed", "task_merged")}


def test_a_hive_in_a_folder_the_server_makes_runs_each_attempt_in_a_worktree(
        make_server: Callable[..., Served], store_url: str) -> None:
    served = _server(make_server, store_url, "t1", "t2")
    answer = _create(served, ["t1", "t2"])
    assert answer.status_code == 201, answer.text
    created = answer.json()
    assert created["config"]["isolation"] == "git"
    hive = _finished(served, created["id"])
    assert hive["status"] == "done"
    assert _git_events(served, hive["id"]) == {"isolation_ready": 1, "task_committed": 2,
                                               "task_merged": 2}
    workspace = Path(hive["workspace"])
    assert workspace.parent == served.settings.workspace_dir
    isolation = hive["isolation"]
    assert isolation["isolation"] == "git"
    assert isolation["branch"] == f"ruflo/{hive['id']}"
    assert isolation["start_commit"] == git("rev-parse", "HEAD", cwd=workspace).stdout.strip()
    assert HiveRepo(workspace, hive["id"]).leftovers() == [], "attempts' worktrees removed"
    # The work is on the integration branch; the folder's own branch is the start.
    assert git("ls-tree", "--name-only", isolation["branch"],
               cwd=workspace).stdout.split() == ["t1.txt", "t2.txt"]
    assert sorted(p.name for p in workspace.iterdir()) == [".git"]


def test_a_repository_given_is_left_as_it_was(make_server: Callable[..., Served],
                                              store_url: str, tmp_path: Path) -> None:
    served = _server(make_server, store_url, "t1")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "README").write_text("my project\n")
    head = init_repo(mine)
    (mine / "draft.txt").write_text("uncommitted\n")  # not included, not touched
    answer = _create(served, ["t1"], workspace=str(mine))
    assert answer.status_code == 201, answer.text
    hive = _finished(served, answer.json()["id"])
    assert hive["status"] == "done"
    assert _git_events(served, hive["id"])["task_merged"] == 1
    assert hive["isolation"]["start_commit"] == head
    assert git("rev-parse", "HEAD", cwd=mine).stdout.strip() == head
    assert git("status", "--porcelain", cwd=mine).stdout == "?? draft.txt\n"
    assert sorted(p.name for p in mine.iterdir()) == [".git", "README", "draft.txt"]
    assert git("show", f"ruflo/{hive['id']}:t1.txt", cwd=mine).stdout == "t1"


def test_a_folder_that_is_not_a_repository_is_refused_unless_none_is_asked(
        make_server: Callable[..., Served], store_url: str, tmp_path: Path) -> None:
    served = _server(make_server, store_url, "t1")
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("keep me\n")
    answer = _create(served, ["t1"], workspace=str(plain))
    assert answer.status_code == 422, answer.text
    message = answer.json()["message"]
    assert f"workspace {plain} is not a git repository" in message
    assert "git init" in message
    assert '"isolation": "none"' in message
    assert "nothing was created" in message
    assert served.store.list_hives() == []
    assert sorted(p.name for p in plain.iterdir()) == ["notes.txt"], "the folder is untouched"

    shared = _create(served, ["t1"], workspace=str(plain), isolation="none")
    assert shared.status_code == 201, shared.text
    hive = _finished(served, shared.json()["id"])
    assert hive["status"] == "done"
    assert hive["isolation"] == {"isolation": "none"}
    assert _git_events(served, hive["id"]) == {"isolation_ready": 0, "task_committed": 0,
                                               "task_merged": 0}
    assert (plain / "t1.txt").read_text() == "t1", "shared: the agents wrote in the folder"
    assert not (plain / ".git").exists()


def test_bad_isolation_values_are_refused_and_nothing_is_stored(served: Served,
                                                                tmp_path: Path) -> None:
    before = (sorted(served.settings.workspace_dir.iterdir())
              if served.settings.workspace_dir.exists() else [])
    for body, said in [
        ({"isolation": "worktree"}, "isolation"),
        ({"isolation": ""}, "isolation"),
        ({"isolation": 1}, "isolation"),
        ({"config": {"isolation": "git"}}, "config.isolation is set by ruflo"),
        ({"config": {"start_commit": "HEAD~3"}}, "config.start_commit is set by ruflo"),
        ({"workspace": "relative/folder"}, "must be an absolute path"),
        ({"workspace": str(tmp_path / "missing")}, "is not an existing folder"),
    ]:
        answer = served.client.post("/api/v2/hives", json={"objective": "o", **body})
        assert answer.status_code == 422, (body, answer.text)
        assert said in answer.text, (body, answer.text)
    assert served.store.list_hives() == []
    after = (sorted(served.settings.workspace_dir.iterdir())
             if served.settings.workspace_dir.exists() else [])
    assert after == before, "no folder was made"
    assert not (tmp_path / "missing").exists()


def test_naming_a_folder_is_an_operators_right(make_server: Callable[..., Served],
                                               tmp_path: Path) -> None:
    served = make_server(auth="token")
    served.store.create_token(token_id="t1", name="t", user_id="bob",
                              token_hash=hash_token("rfl_plain"))
    answer = served.client.post("/api/v2/hives", headers={"Authorization": "Bearer rfl_plain"},
                                json={"objective": "o", "workspace": str(tmp_path)})
    assert answer.status_code == 403, answer.text
    assert "workspace" in answer.json()["message"]
    assert served.store.list_hives() == []
