"""Git repositories the tests make: a user's repository with its first commit, one made ready as
a hive's (attempts can be opened in it), and a bare clone standing in for a remote."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path

from ruflo.agents.gitwork import HiveRepo, init_repo


def sh(*args: str, cwd: Path) -> str:
    """git's output (stripped), failing the test when git fails."""
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def user_repo(folder: Path, files: Mapping[str, str]) -> str:
    """A new repository at `folder` holding `files` in its first commit; returns that commit."""
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return init_repo(folder)


def ready_hive_repo(folder: Path, files: Mapping[str, str], hive_id: str = "h1") -> HiveRepo:
    """`user_repo`, made ready as hive `hive_id`'s (its integration branch and worktree)."""
    user_repo(folder, files)
    hive = HiveRepo(folder, hive_id)
    hive.prepare()
    return hive


def bare_clone(repo: Path, bare: Path) -> Path:
    """A bare clone of `repo` at `bare`: the remote a hive's workers share."""
    subprocess.run(["git", "clone", "--quiet", "--bare", str(repo), str(bare)], check=True)
    return bare
