"""The pieces of merging across machines, on real git and Postgres: the store's per-hive merge
lock holds a second process out until the first gives it back (and is freed when its holder
dies); a merge whose push the remote refuses, because someone moved the branch meanwhile, is
fetched and made again, once; a worker's copy of the remote is its own bare repository."""

from __future__ import annotations

import asyncio
import subprocess
import threading
from pathlib import Path

import pytest

from git_repos import bare_clone, user_repo
from ruflo.agents.base import RunContext
from ruflo.agents.gitremote import RemoteRepo
from ruflo.agents.gitwork import GitError
from ruflo.agents.isolated import Integrator
from ruflo.engine.isolation import hive_repo, isolation_config, open_isolation
from ruflo.errors import ConfigError, StoreError
from ruflo.event_kinds import EventKind
from ruflo.model import Agent, Hive, Mode, Task
from ruflo.store import open_store
from ruflo.store.sql import SqlStore
from waiting import stays_sync, wait_until

pytestmark = pytest.mark.postgres


def sh(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True,
                          text=True).stdout


def remote_setup(tmp_path: Path) -> tuple[Path, Path, str]:
    repo = tmp_path / "user"
    start = user_repo(repo, {"README": "start\n"})
    return repo, bare_clone(repo, tmp_path / "remote.git"), start


def test_the_merge_lock_holds_other_processes_out_until_given_back(
        pg_store: SqlStore, pg_schema_url: str) -> None:
    other = open_store(pg_schema_url)
    try:
        release = pg_store.merge_lock("h1")
        got: list[object] = []
        waiter = threading.Thread(target=lambda: got.append(other.merge_lock("h1")))
        waiter.start()
        other_hive = other.merge_lock("h2")  # another hive's merges are not held up
        other_hive()
        stays_sync(lambda: not got, seconds=0.5, what="a second holder got the lock")
        release()
        wait_until(lambda: got, what="the waiter to get the lock once it was given back")
        waiter.join()
        got[0]()  # type: ignore[operator]
    finally:
        other.close()


def test_the_merge_lock_is_refused_on_sqlite(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'one.db'}")
    try:
        with pytest.raises(StoreError, match="one machine"):
            store.merge_lock("h")
    finally:
        store.close()


def test_a_push_refused_because_the_branch_moved_is_fetched_and_merged_again(
        pg_store: SqlStore, tmp_path: Path) -> None:
    repo, bare, start = remote_setup(tmp_path)
    config, _ = isolation_config(repo, None, remote=str(bare), dialect="postgresql")
    hive = pg_store.create_hive(
        Hive(id="mv", name="moved", mode=Mode.SWARM, objective="o", workspace=str(repo),
             config=config),
        agents=[Agent(id="mv-a", hive_id="mv", name="a")],
        tasks=[Task(id="mv-t", hive_id="mv", title="t")])
    mine = RemoteRepo.clone(tmp_path / "machine-1" / "mv", "mv", str(bare))
    theirs = RemoteRepo.clone(tmp_path / "machine-2" / "mv", "mv", str(bare))
    assert sh("rev-parse", "--is-bare-repository", cwd=mine.top).strip() == "true"
    mine.prepare(start)
    theirs.prepare(start)
    tree = mine.open_attempt("mv-t")
    (tree.path / "mine.txt").write_text("mine")
    commit, changed = mine.commit_attempt(tree, "t")
    assert changed == ["mine.txt"]
    assert sh("rev-parse", f"refs/heads/{tree.branch}", cwd=bare).strip() == commit

    class Outpaced(RemoteRepo):
        """Another machine pushes to the integration branch right before this one does."""

        moved = False

        def publish(self) -> bool:
            if not self.moved:
                self.moved = True
                other = theirs.open_attempt("other")
                (other.path / "theirs.txt").write_text("theirs")
                their_commit, _ = theirs.commit_attempt(other, "other")
                handle = theirs.lock()
                try:
                    theirs.catch_up()
                    assert theirs.merge(their_commit, "theirs").merged
                    assert theirs.publish()
                finally:
                    theirs.unlock(handle)
            return super().publish()

    racing = Outpaced(mine.top, "mv", str(bare))
    claimed = pg_store.claim_task(hive.id, "mv-a", lease_seconds=60, task_id="mv-t")
    assert claimed is not None
    task, agent = claimed, pg_store.get_agent("mv-a")
    posted = asyncio.run(Integrator(racing).integrate(
        pg_store, task, agent, commit, RunContext(store=pg_store, workspace=tmp_path)))

    assert posted is None
    assert racing.moved
    merged = pg_store.events(hive.id, kinds=[EventKind.TASK_MERGED])
    assert len(merged) == 1
    branch = "ruflo/mv"
    assert sh("show", f"{branch}:mine.txt", cwd=bare) == "mine"
    assert sh("show", f"{branch}:theirs.txt", cwd=bare) == "theirs"
    assert merged[0].data["integration"] == sh("rev-parse", branch, cwd=bare).strip()


def test_an_attempt_that_outlived_its_claim_is_not_merged(
        pg_store: SqlStore, tmp_path: Path) -> None:
    repo, bare, start = remote_setup(tmp_path)
    config, _ = isolation_config(repo, None, remote=str(bare), dialect="postgresql")
    hive = pg_store.create_hive(
        Hive(id="st", name="stalled", mode=Mode.SWARM, objective="o", workspace=str(repo),
             config=config),
        agents=[Agent(id="st-a", hive_id="st", name="a"), Agent(id="st-b", hive_id="st",
                                                                name="b")],
        tasks=[Task(id="st-t", hive_id="st", title="t")])
    copy = RemoteRepo.clone(tmp_path / "machine" / "st", "st", str(bare))
    copy.prepare(start)
    tree = copy.open_attempt("st-t")
    (tree.path / "late.txt").write_text("late")
    commit, _ = copy.commit_attempt(tree, "t")
    # Agent a's claim lapsed while it worked; agent b holds the task now.
    taken = pg_store.claim_task(hive.id, "st-b", lease_seconds=60, task_id="st-t")
    assert taken is not None
    with pytest.raises(GitError, match="no longer held by st-a"):
        asyncio.run(Integrator(copy).integrate(pg_store, taken, pg_store.get_agent("st-a"),
                                               commit, RunContext(store=pg_store,
                                                                  workspace=tmp_path)))
    assert pg_store.events(hive.id, kinds=[EventKind.TASK_MERGED]) == []
    assert sh("rev-parse", "ruflo/st", cwd=bare).strip() == start


def test_a_worker_folder_that_is_something_else_is_refused(tmp_path: Path) -> None:
    _, bare, _ = remote_setup(tmp_path)
    folder = tmp_path / "ws" / "h"
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="is not ruflo's copy"):
        RemoteRepo.clone(folder, "h", str(bare))
    assert (folder / "notes.txt").read_text() == "mine"


def test_a_remote_hive_opened_where_its_workspace_is_not_a_repository_says_what_to_do(
        pg_store: SqlStore, tmp_path: Path) -> None:
    repo, bare, _ = remote_setup(tmp_path)
    config, _ = isolation_config(repo, None, remote=str(bare), dialect="postgresql")
    elsewhere = tmp_path / "not-here"
    elsewhere.mkdir()
    hive = pg_store.create_hive(
        Hive(id="el", name="elsewhere", mode=Mode.SWARM, objective="o",
             workspace=str(elsewhere), config=config),
        agents=[Agent(id="el-a", hive_id="el", name="a")])
    with pytest.raises(ConfigError, match="ruflo worker --hive el"):
        open_isolation(pg_store, hive)
    with pytest.raises(ConfigError, match=f"git fetch {bare} ruflo/el"):
        hive_repo(hive)
    assert list(elsewhere.iterdir()) == []
    assert sh("branch", "--list", "ruflo/*", cwd=bare) == ""
