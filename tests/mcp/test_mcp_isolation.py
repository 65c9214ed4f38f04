"""MCP's create_hive chooses isolation by the rule every starter shares (engine/isolation.py
prepare_workspace), through the SDK's own client over a real SQLite store: a folder ruflo makes
becomes a repository (git isolation from its first commit), a repository given is recorded with
its HEAD and left as it is, a folder that is not one is refused unless isolation "none" is asked,
and a bad value is refused with nothing stored."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_tools import call, connect, make_desk, refused

from git_repos import bare_clone, user_repo
from ruflo.agents.gitwork import git, init_repo
from ruflo.errors import ConfigError
from ruflo.store.sql import SqlStore


async def test_a_folder_ruflo_makes_is_a_repository_under_git_isolation(
        store: SqlStore, tmp_path: Path) -> None:
    async with connect(store, tmp_path) as client:
        answer = await call(client, "create_hive", name="h", objective="ship it")
    hive = answer["hive"]
    folder = Path(hive["workspace"])
    assert folder.parent == tmp_path / "workspace"
    assert hive["isolation"] == "git"
    stored = store.get_hive(hive["id"])
    assert stored.config["isolation"] == "git"
    assert stored.config["start_commit"] == git("rev-parse", "HEAD", cwd=folder).stdout.strip()
    assert answer["isolation_notice"].startswith("isolation: git worktrees, starting from "
                                                 "commit ")
    assert "each claim gets a git worktree of its own" in answer["isolation_notice"]


async def test_a_repository_given_is_recorded_and_left_as_it_is(store: SqlStore,
                                                                tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "README").write_text("mine\n")
    head = init_repo(mine)
    (mine / "draft.txt").write_text("wip\n")
    async with connect(store, tmp_path) as client:
        answer = await call(client, "create_hive", name="h", objective="o",
                            workspace=str(mine))
    assert store.get_hive(answer["hive"]["id"]).config["start_commit"] == head
    assert "1 uncommitted change(s) in your folder are NOT included" in \
        answer["isolation_notice"]
    assert git("rev-parse", "HEAD", cwd=mine).stdout.strip() == head
    assert git("status", "--porcelain", cwd=mine).stdout == "?? draft.txt\n"


async def test_a_folder_that_is_not_a_repository_is_refused_unless_none_is_asked(
        store: SqlStore, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("keep me\n")
    async with connect(store, tmp_path) as client:
        text = await refused(client, "create_hive", name="h", objective="o",
                             workspace=str(plain))
        assert f"workspace {plain} is not a git repository" in text
        assert "git init" in text
        assert '"isolation": "none"' in text
        assert "nothing was created" in text
        assert store.list_hives() == []
        assert sorted(p.name for p in plain.iterdir()) == ["notes.txt"]
        shared = await call(client, "create_hive", name="h", objective="o",
                            workspace=str(plain), isolation="none")
    assert shared["hive"]["isolation"] == "none"
    assert shared["isolation_notice"].startswith("ISOLATION OFF")
    assert store.get_hive(shared["hive"]["id"]).config["isolation"] == "none"
    assert not (plain / ".git").exists()


async def test_a_bad_isolation_value_is_refused_and_nothing_is_made(store: SqlStore,
                                                                    tmp_path: Path) -> None:
    async with connect(store, tmp_path) as client:
        for bad in ("worktree", "", "GIT"):
            text = await refused(client, "create_hive", name="h", objective="o", isolation=bad)
            assert "isolation" in text, text
    assert store.list_hives() == []
    assert not (tmp_path / "workspace").exists()


def test_the_desk_refuses_a_bad_value_before_anything_is_made(store: SqlStore,
                                                              tmp_path: Path) -> None:
    """The desk's own check, for callers that skip the tool's schema."""
    desk = make_desk(store, tmp_path)
    with pytest.raises(ConfigError, match="isolation 'shared' is not one of git, none"):
        desk.hive_spec(name="h", objective="o", mode="swarm", agents=[], workspace=None,
                       seed=0, isolation="shared")
    assert not (tmp_path / "workspace").exists()


async def test_a_git_remote_is_recorded_on_postgres_and_refused_on_sqlite(
        store: SqlStore, tmp_path: Path) -> None:
    """MCP's create_hive takes `git_remote` as the CLI's --git-remote does: workers on other
    machines share a Postgres store, so a SQLite hive is refused with nothing stored."""
    mine = tmp_path / "mine"
    user_repo(mine, {"README": "mine\n"})
    bare = bare_clone(mine, tmp_path / "remote.git")
    async with connect(store, tmp_path) as client:
        if store.dialect == "postgresql":
            answer = await call(client, "create_hive", name="h", objective="o",
                                workspace=str(mine), git_remote=str(bare))
            assert store.get_hive(answer["hive"]["id"]).config["git_remote"] == str(bare)
            assert f"integration branch on the remote {bare}" in answer["isolation_notice"]
            return
        said = await refused(client, "create_hive", name="h", objective="o",
                             workspace=str(mine), git_remote=str(bare))
    assert "a git remote is for workers on other machines" in said
    assert store.list_hives() == []
