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
and the leftovers of a killed process removed. A Postgres hive may keep its integration branch
on a git remote (`git_remote`, agents/gitremote.py): workers on other machines then work in a
copy of their own and push.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ruflo.agents.gitremote import RemoteRepo, check_remote
from ruflo.agents.gitwork import (
    GitError,
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
           "isolation_summary", "open_isolation", "prepare_workspace", "remote_of", "task_git",
           "worktree_bytes"]

ISOLATIONS = ("git", "none")
SHARED_NOTICE = ("ISOLATION OFF: every agent edits the one shared folder at once (no worktrees, "
                 "no merges); parallel edits can clobber each other")


def isolation_config(workspace: str | Path, requested: str | None, *,
                     start: str | None = None, remote: str | None = None,
                     dialect: str = "sqlite") -> tuple[JSON, str]:
    """The hive config entries for its isolation and a one-line notice for the person.
    `requested`: "git", "none" or None (git when the workspace is a repository). `remote`: a
    git remote the hive's integration branch lives on, for workers on other machines (a
    Postgres store only: `dialect`); it must answer and hold the start commit."""
    check_isolation(requested, remote=remote, dialect=dialect)
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
    config: JSON = {"isolation": "git", "start_commit": commit}
    if remote is not None:
        config["git_remote"] = check_remote(remote, commit, folder)
        notice += f"; integration branch on the remote {config['git_remote']}"
    return config, notice


def remote_of(hive: Hive) -> str | None:
    """The git remote a git hive's integration branch lives on, or None."""
    value = hive.config.get("git_remote")
    return value if isinstance(value, str) and value and isolation_of(hive) == "git" else None


@dataclass(frozen=True, slots=True)
class Workspace:
    """A new hive's folder, made ready, and its isolation."""

    folder: Path
    config: JSON
    """The hive config entries: `isolation`, and under git `start_commit` (and `git_remote`)."""
    notice: str
    """One line for the person (the CLI's stderr, the server's log, MCP's answer)."""


def check_isolation(requested: str | None, *, remote: str | None = None,
                    dialect: str = "sqlite") -> None:
    """ConfigError unless `requested` is None, "git" or "none", and a `remote` goes with git
    isolation on a Postgres store."""
    if requested is not None and requested not in ISOLATIONS:
        raise ConfigError(f"isolation {requested!r} is not one of {', '.join(ISOLATIONS)}; "
                          "nothing was created")
    if remote is not None and requested == "none":
        raise ConfigError("a git remote needs git isolation, not --isolation none; nothing was "
                          "stored")
    if remote is not None and dialect != "postgresql":
        raise ConfigError("a git remote is for workers on other machines, which share the "
                          "Postgres store: set DATABASE_URL=postgresql://... (a SQLite hive "
                          "stays on one machine); nothing was stored")


def prepare_workspace(folder: str | Path, requested: str | None, *,
                      fixture: Path | None = None, remote: str | None = None,
                      dialect: str = "sqlite") -> Workspace:
    """Make a new hive's folder ready and decide its isolation (the module's rule; `remote`
    and `dialect` as for `isolation_config`); blocking (git). ConfigError saying why, with
    nothing made or copied, when it can't be had."""
    check_isolation(requested, remote=remote, dialect=dialect)
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
    config, notice = isolation_config(path, requested, remote=remote, dialect=dialect)
    return Workspace(path, config, notice)


def isolation_of(hive: Hive) -> str:
    """The isolation a stored hive runs with (hives from before isolation share their folder)."""
    value = hive.config.get("isolation")
    return value if isinstance(value, str) and value in ISOLATIONS else "none"


def open_isolation(store: Store, hive: Hive, *, clones: Path | None = None) -> Integrator | None:
    """Set up a git hive's integration branch and clean its leftovers; None for a shared
    folder. A hive on a git remote works in this machine's own copy of it, under `clones`
    (a worker's workspace folder: `<clones>/<hive id>`), or without `clones` in the hive's
    workspace (the machine that made it)."""
    if isolation_of(hive) != "git" or not hive.workspace:
        return None
    remote = remote_of(hive)
    repo: HiveRepo
    if remote is None:
        repo = HiveRepo(hive.workspace, hive.id)
    elif clones is not None:
        repo = RemoteRepo.clone(clones / hive.id, hive.id, remote)
    elif is_git_repo(hive.workspace):
        repo = RemoteRepo(hive.workspace, hive.id, remote)
    else:
        raise ConfigError(f"hive {hive.id} keeps its work on the git remote {remote}, and its "
                          f"workspace {hive.workspace} is not a repository on this machine: host "
                          f"its agents with `ruflo worker --hive {hive.id}` (each worker keeps a "
                          "copy of its own); nothing was changed")
    start = hive.config.get("start_commit")
    fresh = not (repo.integration / ".git").exists()
    commit, _ = repo.prepare(start if isinstance(start, str) else None)
    if fresh:
        store.append_event(hive.id, EventKind.ISOLATION_READY,
                           data={"isolation": "git", "branch": repo.branch,
                                 "start_commit": commit, "integration": str(repo.integration),
                                 "remote": remote})
    claimed = {t.id for t in store.list_tasks(hive.id) if t.state is TaskState.CLAIMED}
    stale = [task_id for task_id in repo.leftovers() if task_id not in claimed]
    for task_id in stale:
        repo.remove_attempt(task_id)
    if stale:
        store.append_event(hive.id, EventKind.WORKTREES_CLEANED, data={"tasks": stale})
    return Integrator(repo)


def hive_repo(hive: Hive) -> HiveRepo:
    """The repository of a git hive; ConfigError saying why for any other. A hive on a git
    remote: its `ruflo/<hive>` is fetched from the remote into the workspace first."""
    if isolation_of(hive) != "git" or not hive.workspace:
        raise ConfigError(f"hive {hive.id} shares its folder (isolation none): its result is "
                          f"the folder {hive.workspace} itself; there is no branch to show")
    remote = remote_of(hive)
    if not is_git_repo(hive.workspace):
        fetch = (f"; its result is on {remote}: git fetch {remote} ruflo/{hive.id}"
                 if remote is not None else "")
        raise ConfigError(f"hive {hive.id}'s workspace {hive.workspace} is not a git "
                          f"repository (here){fetch}")
    if remote is None:
        return HiveRepo(hive.workspace, hive.id)
    repo = RemoteRepo(hive.workspace, hive.id, remote)
    repo.pull_result()
    return repo


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
            "start_commit": hive.config.get("start_commit"), "git_remote": remote_of(hive)}


def isolation_json(hive: Hive) -> JSON:
    """What `hive show` and the API say about a hive's isolation."""
    kind = isolation_of(hive)
    if kind != "git" or not hive.workspace or not is_git_repo(hive.workspace):
        return {"isolation": kind}
    repo = HiveRepo(hive.workspace, hive.id)
    return {"isolation": kind, "branch": repo.branch, "remote": remote_of(hive),
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
    None for a hive that shares its folder, or when git no longer knows the branch. A hive on a
    git remote: fetched from it first (`hive_repo`)."""
    start = hive.config.get("start_commit")
    if isolation_of(hive) != "git" or not isinstance(start, str):
        return None
    try:
        repo = hive_repo(hive)
    except (ConfigError, GitError):
        return None
    top, branch = repo.top, repo.branch
    names = git("diff", "--name-only", "-z", start, branch, cwd=top, check=False)
    stat = git("diff", "--stat", start, branch, cwd=top, check=False)
    patch = capped_patch(top, start, branch, patch_limit)
    if names.returncode != 0 or stat.returncode != 0 or patch is None:
        return None
    return {"branch": branch, "start_commit": start,
            "files": [name for name in names.stdout.split("\0") if name],
            "diff": stat.stdout, "patch": patch[0], "patch_truncated": patch[1]}
