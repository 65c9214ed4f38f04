"""The one rule every starter uses for a new hive's folder (engine/isolation.py
prepare_workspace), with real git: a folder ruflo makes becomes a repository holding what was put
in it; a folder given with files in it must be a repository (refused before anything is copied)
or isolation "none" be asked; and `hive_diff`, the result of a git hive as A2A's artifact shows
it, with its patch cut at a limit."""

from __future__ import annotations

from pathlib import Path

import pytest

from ruflo.agents.gitwork import HiveRepo, git, init_repo
from ruflo.engine.isolation import hive_diff, prepare_workspace
from ruflo.errors import ConfigError
from ruflo.model import Hive, Mode


def test_a_folder_ruflo_makes_is_a_repository_holding_the_fixture(tmp_path: Path) -> None:
    fixture = tmp_path / "fixture"
    fixture.mkdir()
    (fixture / "app.py").write_text("print('hi')\n")
    made = prepare_workspace(tmp_path / "new" / "hive", None, fixture=fixture)
    assert made.folder == (tmp_path / "new" / "hive").resolve()
    assert made.config["isolation"] == "git"
    assert made.config["start_commit"] == git("rev-parse", "HEAD", cwd=made.folder).stdout.strip()
    assert git("ls-tree", "--name-only", "HEAD", cwd=made.folder).stdout == "app.py\n"
    assert git("status", "--porcelain", cwd=made.folder).stdout == ""
    assert made.notice.startswith("isolation: git worktrees, starting from commit ")


def test_an_empty_folder_given_counts_as_ruflos(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert prepare_workspace(empty, None).config["isolation"] == "git"
    assert (empty / ".git").is_dir()


def test_a_folder_with_files_that_is_not_a_repository_is_refused_before_anything_is_copied(
        tmp_path: Path) -> None:
    fixture = tmp_path / "fixture"
    fixture.mkdir()
    (fixture / "app.py").write_text("x\n")
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("keep\n")
    with pytest.raises(ConfigError, match=r"is not a git repository: run `git init`.*"
                                          r"--isolation none.*nothing was created"):
        prepare_workspace(theirs, None, fixture=fixture)
    with pytest.raises(ConfigError, match="is not a git repository"):
        prepare_workspace(theirs, "git")
    assert sorted(p.name for p in theirs.iterdir()) == ["notes.txt"]
    shared = prepare_workspace(theirs, "none", fixture=fixture)
    assert shared.config == {"isolation": "none"}
    assert shared.notice.startswith("ISOLATION OFF")
    assert sorted(p.name for p in theirs.iterdir()) == ["app.py", "notes.txt"]


def test_bad_values_and_a_file_are_refused_with_nothing_made(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="isolation 'both' is not one of git, none; "
                                          "nothing was created"):
        prepare_workspace(tmp_path / "never", "both")
    assert not (tmp_path / "never").exists()
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        prepare_workspace(a_file, None)


def test_a_ruflo_folder_with_isolation_none_stays_a_plain_folder(tmp_path: Path) -> None:
    made = prepare_workspace(tmp_path / "plain", "none")
    assert made.config == {"isolation": "none"}
    assert not (made.folder / ".git").exists()


def _git_hive(tmp_path: Path, files: dict[str, str]) -> Hive:
    repo = tmp_path / "repo"
    made = prepare_workspace(repo, None)
    hive = Hive(id="h1", name="h", mode=Mode.SWARM, objective="o", workspace=str(made.folder),
                config=made.config)
    home = HiveRepo(made.folder, hive.id)
    home.prepare(made.config["start_commit"])
    for name, text in files.items():
        (home.integration / name).write_text(text)
    git("add", "-A", cwd=home.integration)
    git("commit", "--quiet", "-m", "work", cwd=home.integration)
    return hive


def test_hive_diff_is_the_integration_branch_against_the_start(tmp_path: Path) -> None:
    hive = _git_hive(tmp_path, {"a.txt": "alpha\n", "b.txt": "beta\n"})
    changes = hive_diff(hive)
    assert changes is not None
    assert changes["branch"] == "ruflo/h1"
    assert changes["files"] == ["a.txt", "b.txt"]
    assert "2 files changed" in changes["diff"]
    assert "+alpha" in changes["patch"]
    assert changes["patch_truncated"] is False
    cut = hive_diff(hive, patch_limit=40)
    assert cut is not None
    assert cut["patch_truncated"] is True
    assert len(cut["patch"].encode()) <= 40
    assert cut["files"] == ["a.txt", "b.txt"], "the file list is whole when the patch is cut"


def test_hive_diff_is_none_for_a_shared_folder_or_a_lost_branch(tmp_path: Path) -> None:
    shared = Hive(id="h2", name="h", mode=Mode.SWARM, objective="o",
                  workspace=str(tmp_path), config={"isolation": "none"})
    assert hive_diff(shared) is None
    repo = tmp_path / "r"
    repo.mkdir()
    start = init_repo(repo)
    never_opened = Hive(id="h3", name="h", mode=Mode.SWARM, objective="o",
                        workspace=str(repo), config={"isolation": "git", "start_commit": start})
    assert hive_diff(never_opened) is None
