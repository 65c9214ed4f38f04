"""Git inside the sandbox: in an attempt's worktree (git isolation) a confined command can read
the repository (`git status`, `git diff`, `git log`, `git show`) but not write to it, and sees
neither the repository's config (a remote URL may hold a token) nor other attempts' worktrees;
a rewritten `.git` file does not choose what is shown; a folder that is no worktree is confined
as before (agents/sandbox.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from git_repos import ready_hive_repo, sh
from ruflo.agents.commands import command_env, run_command
from ruflo.agents.gitwork import HiveRepo, init_repo
from ruflo.agents.sandbox import Sandbox, git_mounts, sandbox_for
from ruflo.config import load_settings

pytestmark = pytest.mark.integration

TOKEN = "FAKE-TOKEN-7f3a9c"


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    (tmp_path / "data").mkdir()
    confined = sandbox_for(load_settings({"RUFLO_CONFIG": "",
                                          "RUFLO_DATA_DIR": str(tmp_path / "data")}))
    assert confined.confines, confined.describe()  # scripts/install installs bubblewrap
    return confined


@pytest.fixture
def repo(tmp_path: Path) -> HiveRepo:
    hive = ready_hive_repo(tmp_path / "repo", {"a.txt": "a\n"})
    sh("remote", "add", "origin", f"https://user:{TOKEN}@example.invalid/r.git", cwd=hive.top)
    (hive.top / ".git" / "my.credentials").write_text(f"https://user:{TOKEN}@example.invalid\n")
    return hive


async def run(command: str, cwd: Path, sandbox: Sandbox) -> tuple[int | None, str]:
    result = await run_command(command, cwd=cwd, env=command_env(), sandbox=sandbox)
    return result.exit_code, result.output


async def test_git_reads_the_attempt_inside_the_sandbox(repo: HiveRepo,
                                                        sandbox: Sandbox) -> None:
    start = repo.head()
    tree = repo.open_attempt("t1")
    (tree.path / "a.txt").write_text("a\nchanged\n")
    (tree.path / "new.txt").write_text("new\n")
    code, said = await run("git status --porcelain", tree.path, sandbox)
    assert (code, said.splitlines()) == (0, [" M a.txt", "?? new.txt"])
    code, said = await run("git diff", tree.path, sandbox)
    assert code == 0
    assert "+changed" in said
    code, said = await run("git log -1 --format=%H", tree.path, sandbox)
    assert (code, said.strip()) == (0, start)
    code, said = await run("git show --stat HEAD", tree.path, sandbox)
    assert code == 0
    assert "ruflo: start" in said


async def test_git_writes_fail_inside_and_ruflo_still_commits_outside(
        repo: HiveRepo, sandbox: Sandbox) -> None:
    start = repo.head()
    tree = repo.open_attempt("t1")
    (tree.path / "a.txt").write_text("a\nchanged\n")
    for command in ("git add a.txt", "git commit -qam x",
                    "git update-ref refs/heads/ruflo/h1 HEAD~0", "git branch planted"):
        code, said = await run(command, tree.path, sandbox)
        assert code != 0, command
        assert "Read-only file system" in said, said
    assert repo.head() == start
    assert sh("rev-parse", tree.branch, cwd=repo.top) == start
    assert sh("status", "--porcelain", cwd=tree.path) == "M a.txt"  # nothing staged
    commit, changed = repo.commit_attempt(tree, "task t1")
    assert changed == ["a.txt"]
    assert sh("rev-parse", f"{commit}^", cwd=repo.top) == start


async def test_config_credentials_and_other_attempts_are_not_shown(
        repo: HiveRepo, sandbox: Sandbox) -> None:
    mine, other = repo.open_attempt("t1"), repo.open_attempt("t2")
    (other.path / "other.txt").write_text("OTHER-ATTEMPT\n")
    assert TOKEN in (repo.common / "config").read_text()  # the secret is really there
    code, said = await run(f"cat {repo.common}/config {repo.common}/my.credentials; "
                           f"git config --list; git remote -v", mine.path, sandbox)
    assert TOKEN not in said
    assert "example.invalid" not in said
    for command in (f"cat {other.path}/other.txt", f"ls {other.path}",
                    f"ls {repo.integration}", f"ls {repo.common}/worktrees/t2"):
        code, said = await run(command, mine.path, sandbox)
        assert code != 0, command
        assert "No such file or directory" in said
    code, said = await run(f"ls {repo.home}/attempts {repo.home}; ls {repo.top}", mine.path,
                           sandbox)
    assert said.split() == [f"{repo.home}:", "attempts", f"{repo.home}/attempts:", "t1"]


async def test_a_rewritten_dot_git_file_does_not_choose_what_is_shown(
        repo: HiveRepo, sandbox: Sandbox, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    (keys / "worktrees").mkdir(parents=True)
    (keys / "id_rsa").write_text("PRIVATE-KEY\n")
    tree = repo.open_attempt("t1")
    # The command forges an admin folder in its worktree whose common folder is the keys.
    fake = tree.path / "fake"
    fake.mkdir()
    (fake / "commondir").write_text(f"{keys}\n")
    (fake / "gitdir").write_text(f"{tree.path / '.git'}\n")
    (tree.path / ".git").write_text(f"gitdir: {fake}\n")
    assert git_mounts(tree.path) == []
    code, said = await run(f"cat {keys}/id_rsa", tree.path, sandbox)
    assert code != 0
    assert "PRIVATE-KEY" not in said
    # Another repository's real worktree admin folder does not name this folder back.
    (tree.path / ".git").write_text(f"gitdir: {repo.common / 'worktrees' / 'integration'}\n")
    assert git_mounts(tree.path) == []
    _, changed = repo.commit_attempt(tree, "task t1")  # ruflo restores the .git file
    assert "fake/gitdir" in changed
    assert ".git" not in changed


async def test_a_folder_that_is_no_worktree_is_confined_as_before(
        workspace: Path, sandbox: Sandbox, tmp_path: Path) -> None:
    assert git_mounts(workspace) == []
    code, said = await run("git status", workspace, sandbox)
    assert code != 0
    assert "not a git repository" in said
    # A repository of its own in the folder: its .git is the folder's, writable as before.
    init_repo(workspace)
    assert git_mounts(workspace) == []
    (workspace / "b.txt").write_text("b\n")
    code, said = await run("git add b.txt && git -c user.name=a -c user.email=a@b commit -qm b",
                           workspace, sandbox)
    assert code == 0, said
    assert sh("log", "-1", "--format=%s", cwd=workspace) == "b"
