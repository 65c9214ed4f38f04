"""What an attempt may do to its worktree cannot reach the integration branch: only ruflo's commit
of the attempt's tree on the base ruflo cut, merged by ruflo, changes it (agents/gitwork.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from git_repos import ready_hive_repo, sh
from ruflo.agents.gitwork import GitError, HiveRepo
from ruflo.engine.isolation import isolation_config
from ruflo.errors import ConfigError


@pytest.fixture
def repo(tmp_path: Path) -> HiveRepo:
    return ready_hive_repo(tmp_path / "repo", {"a.txt": "a\n"})


def test_a_deleted_dot_git_and_rewritten_history_do_not_reach_the_integration_branch(
        repo: HiveRepo) -> None:
    start = repo.head()
    tree = repo.open_attempt("t1")
    (tree.path / "b.txt").write_text("b\n")
    # The attempt rewrites history (unsandboxed, it could), then deletes its .git file.
    subprocess.run(["git", "-C", str(tree.path), "-c", "user.name=x", "-c", "user.email=x@x",
                    "commit", "--allow-empty", "-qm", "forged"], check=True)
    subprocess.run(["git", "-C", str(tree.path), "reset", "-q", "--hard", start], check=True)
    (tree.path / "b.txt").write_text("b\n")
    os.remove(tree.path / ".git")
    commit, changed = repo.commit_attempt(tree, "task t1")
    assert changed == ["b.txt"]
    assert sh("rev-parse", f"{commit}^", cwd=repo.top) == start
    assert repo.head() == start, "the integration branch moves only by ruflo's merge"
    with repo_lock(repo):
        assert repo.merge(commit, "merge t1").merged
    assert sh("show", f"{repo.branch}:b.txt", cwd=repo.top) == "b"
    repo.remove_attempt("t1")
    assert repo.leftovers() == []


def test_a_100_mb_file_and_an_outward_symlink_refuse_the_commit(repo: HiveRepo,
                                                                 tmp_path: Path) -> None:
    start = repo.head()
    tree = repo.open_attempt("big")
    with open(tree.path / "huge.bin", "wb") as handle:
        handle.truncate(100 * 1024 * 1024)
    with pytest.raises(GitError, match=r"huge\.bin is larger than"):
        repo.commit_attempt(tree, "big")
    tree = repo.open_attempt("link")
    (tree.path / "out").symlink_to(tmp_path)
    with pytest.raises(GitError, match="out is a symlink pointing out"):
        repo.commit_attempt(tree, "link")
    assert repo.head() == start


def test_a_dirty_worktree_is_committed_whole_and_the_users_tree_is_untouched(
        repo: HiveRepo) -> None:
    user_head = sh("rev-parse", "HEAD", cwd=repo.top)
    tree = repo.open_attempt("dirty")
    (tree.path / "a.txt").write_text("changed\n")
    (tree.path / "new" / "deep").mkdir(parents=True)
    (tree.path / "new" / "deep" / "c.txt").write_text("c\n")
    commit, changed = repo.commit_attempt(tree, "dirty")
    assert sorted(changed) == ["a.txt", "new/deep/c.txt"]
    with repo_lock(repo):
        assert repo.merge(commit, "m").merged
        assert repo.merge(commit, "again").merged  # a restart's second merge adds nothing
    assert sh("rev-list", "--count", f"{user_head}..{repo.branch}", cwd=repo.top) == "2"
    assert (repo.top / "a.txt").read_text() == "a\n"
    assert sh("rev-parse", "HEAD", cwd=repo.top) == user_head


def test_leftover_worktrees_of_a_killed_process_are_listed_and_removed(repo: HiveRepo) -> None:
    repo.open_attempt("t1")
    repo.open_attempt("t2")
    assert repo.leftovers() == ["t1", "t2"]
    shutil.rmtree(repo.attempt_path("t2"))  # half gone: git's own record is pruned too
    for task in repo.leftovers():
        repo.remove_attempt(task)
    assert repo.leftovers() == []
    listed = sh("worktree", "list", "--porcelain", cwd=repo.top)
    assert "attempts" not in listed


def test_apply_refuses_a_dirty_tree_and_a_non_repository_is_refused_with_the_way_out(
        repo: HiveRepo, tmp_path: Path) -> None:
    (repo.top / "a.txt").write_text("user edit\n")
    with pytest.raises(GitError, match="uncommitted changes"):
        repo.apply_to_user_branch()
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(ConfigError, match=r"git init.*--isolation none"):
        isolation_config(plain, None)
    config, notice = isolation_config(plain, "none")
    assert config == {"isolation": "none"}
    assert "ISOLATION OFF" in notice
    config, notice = isolation_config(repo.top, None)
    assert config["isolation"] == "git"
    assert "NOT included" in notice


class repo_lock:
    def __init__(self, repo: HiveRepo) -> None:
        self.repo = repo

    def __enter__(self) -> None:
        self.handle = self.repo.lock()

    def __exit__(self, *_: object) -> None:
        self.repo.unlock(self.handle)
