"""An MCP client's claim in a git hive works in a worktree of its own, through the SDK's own
client over a real SQLite store and real git: the claim names the folder, complete_task runs the
verify there, ruflo commits and merges it into ruflo/<hive> as it does its own attempts
(agents/isolated.py `land`), and removes it; a conflict between two clients becomes an
integration task; what a client writes into the hive's folder instead is not merged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from test_tools import call, connect, refused

import git_repos
from ruflo.agents.gitwork import git
from ruflo.event_kinds import EventKind
from ruflo.store.sql import SqlStore

AGENTS = [{"name": "ada", "skills": ["python"]}, {"name": "bob", "skills": ["python"]}]


def user_repo(tmp_path: Path) -> tuple[Path, str]:
    mine = tmp_path / "mine"
    return mine, git_repos.user_repo(mine, {"line.txt": "original\n"})


async def git_hive(client: Any, mine: Path) -> dict[str, Any]:
    """Hive "h" on the user's repository (git isolation), with ada and bob."""
    return dict((await call(client, "create_hive", name="h", objective="o",
                            workspace=str(mine), agents=AGENTS))["hive"])


def write(folder: str | Path, name: str, text: str) -> None:
    Path(folder, name).write_text(text)


def exists(folder: str | Path, name: str = "") -> bool:
    return Path(folder, name).exists()


def on_branch(folder: Path, hive_id: str, name: str) -> str | None:
    shown = git("show", f"ruflo/{hive_id}:{name}", cwd=folder, check=False)
    return shown.stdout if shown.returncode == 0 else None


async def test_a_claim_works_in_its_worktree_and_complete_merges_it(store: SqlStore,
                                                                    tmp_path: Path) -> None:
    mine, head = user_repo(tmp_path)
    async with connect(store, tmp_path) as client:
        hive = await git_hive(client, mine)
        task = (await call(client, "post_task", hive="h", title="write it",
                           verify="test -f out.txt && pwd"))["task"]
        claimed = await call(client, "claim_next_task", hive="h", agent="ada")
        tree = Path(claimed["workspace"])
        assert claimed["worktree"] is True
        assert tree != mine
        assert exists(tree, "line.txt")
        assert f"work ONLY in {tree}" in claimed["next"]
        assert on_branch(mine, hive["id"], "line.txt") == "original\n"
        write(tree, "out.txt", "made in the worktree\n")
        done = await call(client, "complete_task", hive="h", task=task["id"], agent="ada",
                          result="wrote out.txt")
    assert done["task"]["state"] == "done"
    assert done["verify"]["passed"] is True
    assert done["verify"]["output"].strip() == str(tree)  # the verify ran in the worktree
    assert done["integration"]["merged"] is True
    assert on_branch(mine, hive["id"], "out.txt") == "made in the worktree\n"
    kinds = [e.kind for e in store.events(hive["id"]) if e.task_id == task["id"]]
    assert EventKind.WORKTREE_OPENED in kinds
    assert kinds.index(EventKind.TASK_COMMITTED) < kinds.index(EventKind.TASK_MERGED)
    assert not exists(tree)  # removed once the task finished
    assert git("rev-parse", "HEAD", cwd=mine).stdout.strip() == head  # the user's branch
    assert not (mine / "out.txt").exists()  # and folder, untouched
    assert git("status", "--porcelain", cwd=mine).stdout == ""


async def test_two_clients_editing_one_line_post_an_integration_task(store: SqlStore,
                                                                     tmp_path: Path) -> None:
    mine, _ = user_repo(tmp_path)
    async with connect(store, tmp_path) as first, connect(store, tmp_path) as second:
        hive = (await call(first, "create_hive", name="h", objective="o", workspace=str(mine),
                           agents=AGENTS))["hive"]
        one = (await call(first, "post_task", hive="h", title="one"))["task"]
        two = (await call(first, "post_task", hive="h", title="two"))["task"]
        ada = await call(first, "claim_next_task", hive="h", agent="ada", task=one["id"])
        bob = await call(second, "claim_next_task", hive="h", agent="bob", task=two["id"])
        assert ada["workspace"] != bob["workspace"]
        write(ada["workspace"], "line.txt", "ada's line\n")
        write(bob["workspace"], "line.txt", "bob's line\n")
        merged = await call(first, "complete_task", hive="h", task=one["id"], agent="ada")
        later = await call(second, "complete_task", hive="h", task=two["id"], agent="bob")
    assert merged["integration"]["merged"] is True
    posted = later["integration"]["integration_task"]
    assert later["integration"]["merged"] is False
    assert posted is not None
    assert f"integration pending: task {posted}" in later["task"]["result"]
    integration = store.get_task(posted)
    assert integration.title == "Integrate: two"
    assert integration.state.value == "open"
    assert "line.txt" in integration.description
    events = store.events(hive["id"], kinds=[EventKind.INTEGRATION_POSTED])
    assert [e.task_id for e in events] == [two["id"]]
    assert on_branch(mine, hive["id"], "line.txt") == "ada's line\n"
    assert not exists(bob["workspace"])


async def test_a_client_writing_into_the_hive_folder_is_not_merged(store: SqlStore,
                                                                   tmp_path: Path) -> None:
    mine, _ = user_repo(tmp_path)
    async with connect(store, tmp_path) as client:
        hive = await git_hive(client, mine)
        checked = (await call(client, "post_task", hive="h", title="checked",
                              verify="test -f out.txt"))["task"]
        unchecked = (await call(client, "post_task", hive="h", title="unchecked"))["task"]
        await call(client, "claim_next_task", hive="h", agent="ada", task=checked["id"])
        (mine / "out.txt").write_text("in the wrong folder\n")
        failed = await call(client, "complete_task", hive="h", task=checked["id"], agent="ada")
        await call(client, "claim_next_task", hive="h", agent="bob", task=unchecked["id"])
        done = await call(client, "complete_task", hive="h", task=unchecked["id"], agent="bob")
    assert failed["task"]["state"] == "failed"  # its verify ran in the worktree: no out.txt
    assert failed["verify"]["passed"] is False
    assert done["task"]["state"] == "done"
    assert done["integration"]["merged"] is True
    assert on_branch(mine, hive["id"], "out.txt") is None  # nothing of it was merged
    assert (mine / "out.txt").read_text() == "in the wrong folder\n"  # left where it was


async def test_a_released_claim_removes_its_worktree(store: SqlStore, tmp_path: Path) -> None:
    mine, _ = user_repo(tmp_path)
    async with connect(store, tmp_path) as client:
        hive = await git_hive(client, mine)
        task = (await call(client, "post_task", hive="h", title="t"))["task"]
        claimed = await call(client, "claim_next_task", hive="h", agent="ada")
        write(claimed["workspace"], "half.txt", "half done\n")
        await call(client, "release_task", hive="h", task=task["id"], agent="ada")
        assert not exists(claimed["workspace"])
        again = await call(client, "claim_next_task", hive="h", agent="bob")
    assert again["workspace"] == claimed["workspace"]
    assert not exists(again["workspace"], "half.txt")  # a fresh worktree
    assert on_branch(mine, hive["id"], "half.txt") is None


async def test_a_claim_whose_worktree_cannot_be_opened_is_given_back(
        store: SqlStore, tmp_path: Path) -> None:
    mine, _ = user_repo(tmp_path)
    async with connect(store, tmp_path) as client:
        hive = await git_hive(client, mine)
        first = (await call(client, "post_task", hive="h", title="one"))["task"]
        second = (await call(client, "post_task", hive="h", title="two"))["task"]
        await call(client, "claim_next_task", hive="h", agent="ada", task=first["id"])
        # Someone deletes the hive's integration branch under it: git has nothing to cut from.
        git("update-ref", "-d", f"refs/heads/ruflo/{hive['id']}", cwd=mine)
        said = await refused(client, "claim_next_task", hive="h", agent="bob",
                             task=second["id"])
    assert f"task {second['id']} could not get a worktree of its own" in said
    assert "the claim was given back, nothing is held" in said
    task = store.get_task(second["id"])
    assert (task.state.value, task.assignee) == ("open", None)
    [bob] = [a for a in store.list_agents(hive["id"]) if a.name == "bob"]
    assert (bob.status.value, bob.current_task) == ("idle", None)


def link_out(folder: str, name: str) -> None:
    Path(folder, name).symlink_to("/etc/hostname")


async def test_a_commit_refused_by_ruflos_checks_fails_the_task(store: SqlStore,
                                                                tmp_path: Path) -> None:
    mine, _ = user_repo(tmp_path)
    async with connect(store, tmp_path) as client:
        hive = await git_hive(client, mine)
        task = (await call(client, "post_task", hive="h", title="t"))["task"]
        claimed = await call(client, "claim_next_task", hive="h", agent="ada")
        link_out(claimed["workspace"], "escape")
        done = await call(client, "complete_task", hive="h", task=task["id"], agent="ada",
                          result="linked")
    assert done["task"]["state"] == "failed"
    assert "escape is a symlink pointing out of the repository" in done["integration"]["refused"]
    assert "not merged: escape is a symlink" in done["task"]["result"]
    assert on_branch(mine, hive["id"], "escape") is None
    assert not exists(claimed["workspace"])


async def test_a_vanished_clients_worktree_is_removed_when_a_new_process_claims(
        store: SqlStore, tmp_path: Path) -> None:
    mine, _ = user_repo(tmp_path)
    async with connect(store, tmp_path) as client:
        hive = await git_hive(client, mine)
        one = (await call(client, "post_task", hive="h", title="one"))["task"]
        two = (await call(client, "post_task", hive="h", title="two"))["task"]
        left = await call(client, "claim_next_task", hive="h", agent="ada", task=one["id"])
    ada = next(a for a in store.list_agents(hive["id"]) if a.name == "ada")
    store.release_task(one["id"], ada.id, reason="its lease ran out")  # the client vanished
    assert exists(left["workspace"])
    async with connect(store, tmp_path) as later:
        await call(later, "claim_next_task", hive="h", agent="bob", task=two["id"])
    assert not exists(left["workspace"])
    cleaned = store.events(hive["id"], kinds=[EventKind.WORKTREES_CLEANED])
    assert [e.data["tasks"] for e in cleaned] == [[one["id"]]]
