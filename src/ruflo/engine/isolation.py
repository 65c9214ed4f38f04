"""Which isolation a hive runs with, decided when it starts, and setting it up when an engine
drives it. Depends on the model, the Store protocol and agents/gitwork.py + agents/isolated.py.

`prepare_workspace` (every starter: `ruflo orchestrate`, the server's create route and so REST,
chat, A2A and the OpenAI-compatible route, MCP's create_hive): the one rule for a hive's folder.
A folder ruflo creates itself (none given, or an empty one) becomes a git repository holding what
was put in it (a workload's fixture) as its first commit, so the hive runs under git isolation by
default; a folder given that already holds files must be a repository, or isolation "none" be
asked for, else it is refused before anything is made or copied.
`isolation_config` (its decision): a workspace that is a git repository gets `git` (each attempt
in its own worktree, see agents/isolated.py), started from a named commit (the user's HEAD; their
uncommitted changes are not included and the notice says so); `none` keeps the shared folder and
says so loudly; a workspace that is not a repository is refused unless `none` is asked for.
`task_git` (CLI `task show`, the API's task, the hive page): one task's branch, commit, merge
state, diff stat and patch (cut at PATCH_LIMIT bytes).
`open_isolation` (every engine, at start): the integration branch and its worktree (idempotent),
and the leftovers of a killed process removed.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ruflo.agents.gitwork import (
    HiveRepo,
    capped_patch,
    git,
    init_repo,
    integration_branch,
    is_git_repo,
)
from ruflo.agents.isolated import Integrator
from ruflo.errors import ConfigError
from ruflo.event_kinds import EventKind
from ruflo.model import JSON, Event, Hive, TaskState

if TYPE_CHECKING:
    from ruflo.store.base import Store

__all__ = ["ISOLATIONS", "SHARED_NOTICE", "Workspace", "check_isolation", "hive_diff",
           "hive_repo", "isolation_config", "isolation_json", "isolation_of",
           "isolation_summary", "open_isolation", "prepare_workspace", "task_git",
           "worktree_bytes"]

ISOLATIONS = ("git", "none")
SHARED_NOTICE = ("ISOLATION OFF: every agent edits the one shared folder at once (no worktrees, "
                 "no merges); parallel edits can clobber each other")


def isolation_config(workspace: str | Path, requested: str | None, *,
                     start: str | None = None) -> tuple[JSON, str]:
    """The hive config entries for its isolation and a one-line notice for the person.
    `requested`: "git", "none" or None (git when the workspace is a repository)."""
    check_isolation(requested)
    if requested == "none":
        return {"isolation": "none"}, SHARED_NOTICE
    folder = Path(workspace).expanduser().resolve()
    if not is_git_repo(folder):
        raise ConfigError(f"workspace {folder} is not a git repository: run `git init` there "
                          "(and commit what the hive should start from), or choose isolation "
                          "none (--isolation none; \"isolation\": \"none\" over REST and MCP) to "
                          "let the agents share the folder; nothing was created")
    done = git("rev-parse", "--verify", "--quiet", f"{start or 'HEAD'}^{{commit}}", cwd=folder,
               check=False)
    if done.returncode != 0:
        raise ConfigError(f"workspace {folder} has no commit {start or 'HEAD'} to start from: "
                          "commit something first (git commit --allow-empty -m start)")
    commit = done.stdout.strip()
    dirty = git("status", "--porcelain", cwd=folder).stdout.splitlines()
    notice = f"isolation: git worktrees, starting from commit {commit[:12]}"
    if dirty:
        notice += (f" ({len(dirty)} uncommitted change(s) in your folder are NOT included; "
                   "commit them first to include them)")
    return {"isolation": "git", "start_commit": commit}, notice


@dataclass(frozen=True, slots=True)
class Workspace:
    """A new hive's folder, made ready, and its isolation."""

    folder: Path
    config: JSON
    """The hive config entries: `isolation`, and `start_commit` under git."""
    notice: str
    """One line for the person (the CLI's stderr, the server's log, MCP's answer)."""


def check_isolation(requested: str | None) -> None:
    """ConfigError unless `requested` is None, "git" or "none"."""
    if requested is not None and requested not in ISOLATIONS:
        raise ConfigError(f"isolation {requested!r} is not one of {', '.join(ISOLATIONS)}; "
                          "nothing was created")


def prepare_workspace(folder: str | Path, requested: str | None, *,
                      fixture: Path | None = None) -> Workspace:
    """Make a new hive's folder ready and decide its isolation (the module's rule); blocking
    (git). ConfigError saying why, with nothing made or copied, when it can't be had."""
    check_isolation(requested)
    path = Path(folder).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"workspace {path} is a file, not a folder; nothing was created")
    ours = not path.exists() or not any(path.iterdir())
    if not ours and requested != "none":
        isolation_config(path, requested)  # refuses a folder that is not a repository, first
    path.mkdir(parents=True, exist_ok=True)
    if fixture is not None:
        shutil.copytree(fixture, path, dirs_exist_ok=True)
    if ours and requested != "none":
        init_repo(path)  # a folder ruflo creates: a repository, so the hive runs isolated
    config, notice = isolation_config(path, requested)
    return Workspace(path, config, notice)


def isolation_of(hive: Hive) -> str:
    """The isolation a stored hive runs with (hives from before isolation share their folder)."""
    value = hive.config.get("isolation")
    return value if isinstance(value, str) and value in ISOLATIONS else "none"


def open_isolation(store: Store, hive: Hive) -> Integrator | None:
    """Set up a git hive's integration branch and clean its leftovers; None for a shared
    folder."""
    if isolation_of(hive) != "git" or not hive.workspace:
        return None
    repo = HiveRepo(hive.workspace, hive.id)
    start = hive.config.get("start_commit")
    fresh = not (repo.integration / ".git").exists()
    commit, _ = repo.prepare(start if isinstance(start, str) else None)
    if fresh:
        store.append_event(hive.id, EventKind.ISOLATION_READY,
                           data={"isolation": "git", "branch": repo.branch,
                                 "start_commit": commit, "integration": str(repo.integration)})
    claimed = {t.id for t in store.list_tasks(hive.id) if t.state is TaskState.CLAIMED}
    stale = [task_id for task_id in repo.leftovers() if task_id not in claimed]
    for task_id in stale:
        repo.remove_attempt(task_id)
    if stale:
        store.append_event(hive.id, EventKind.WORKTREES_CLEANED, data={"tasks": stale})
    return Integrator(repo)


def hive_repo(hive: Hive) -> HiveRepo:
    """The repository of a git hive; ConfigError saying why for any other."""
    if isolation_of(hive) != "git" or not hive.workspace:
        raise ConfigError(f"hive {hive.id} shares its folder (isolation none): its result is "
                          f"the folder {hive.workspace} itself; there is no branch to show")
    if not is_git_repo(hive.workspace):
        raise ConfigError(f"hive {hive.id}'s workspace {hive.workspace} is no longer a git "
                          "repository")
    return HiveRepo(hive.workspace, hive.id)


def worktree_bytes(hive: Hive) -> int | None:
    """Bytes on disk of a git hive's worktrees (integration + attempts in flight); None for a
    hive that shares its folder or whose workspace is no longer a repository."""
    if isolation_of(hive) != "git" or not hive.workspace or not is_git_repo(hive.workspace):
        return None
    return HiveRepo(hive.workspace, hive.id).disk_bytes()


def isolation_summary(hive: Hive) -> JSON:
    """A hive's isolation from its config alone (no git run): the API's hive and the hive page,
    which are read on every change."""
    kind = isolation_of(hive)
    if kind != "git":
        return {"isolation": kind}
    return {"isolation": kind, "branch": integration_branch(hive.id),
            "start_commit": hive.config.get("start_commit")}


def isolation_json(hive: Hive) -> JSON:
    """What `hive show` and the API say about a hive's isolation."""
    kind = isolation_of(hive)
    if kind != "git" or not hive.workspace or not is_git_repo(hive.workspace):
        return {"isolation": kind}
    repo = HiveRepo(hive.workspace, hive.id)
    return {"isolation": kind, "branch": repo.branch,
            "start_commit": hive.config.get("start_commit"),
            "live_worktrees": len(repo.leftovers()), "disk_bytes": repo.disk_bytes()}


PATCH_LIMIT = 64 * 1024
"""Bytes of a task's patch that `task_git` returns; the rest is left to `git diff`."""


def task_git(hive: Hive, history: Sequence[Event], *,
             patch_limit: int = PATCH_LIMIT) -> JSON | None:
    """A task's branch, commit, merge state, diff stat and patch under git isolation, from its
    events (`history`: the task's own); None when it has no commit. `diff` and `patch` are None
    when the workspace is no longer a repository or git no longer knows the commits."""
    commits = [e for e in history if e.kind == EventKind.TASK_COMMITTED]
    if not commits:
        return None
    last = commits[-1].data
    info: JSON = {
        "branch": last.get("branch"), "commit": last.get("commit"), "base": last.get("base"),
        "files": last.get("files"),
        "merged": any(e.kind == EventKind.TASK_MERGED for e in history),
        "diff": None, "patch": None, "patch_truncated": False}
    if hive.workspace and is_git_repo(hive.workspace):
        top = Path(hive.workspace)
        base, commit = str(last.get("base")), str(last.get("commit"))
        done = git("diff", "--stat", base, commit, cwd=top, check=False)
        info["diff"] = done.stdout if done.returncode == 0 else None
        patch = capped_patch(top, base, commit, patch_limit)
        if patch is not None:
            info["patch"], info["patch_truncated"] = patch
    return info


def hive_diff(hive: Hive, *, patch_limit: int = PATCH_LIMIT) -> JSON | None:
    """A git hive's result: its integration branch against its start commit, as the changed
    files, a diff stat and the patch (cut at `patch_limit` bytes, `patch_truncated` says so);
    None for a hive that shares its folder, or when git no longer knows the branch."""
    start = hive.config.get("start_commit")
    if (isolation_of(hive) != "git" or not hive.workspace or not isinstance(start, str)
            or not is_git_repo(hive.workspace)):
        return None
    top = Path(hive.workspace)
    branch = integration_branch(hive.id)
    names = git("diff", "--name-only", "-z", start, branch, cwd=top, check=False)
    stat = git("diff", "--stat", start, branch, cwd=top, check=False)
    patch = capped_patch(top, start, branch, patch_limit)
    if names.returncode != 0 or stat.returncode != 0 or patch is None:
        return None
    return {"branch": branch, "start_commit": start,
            "files": [name for name in names.stdout.split("\0") if name],
            "diff": stat.stdout, "patch": patch[0], "patch_truncated": patch[1]}
