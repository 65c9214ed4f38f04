"""Which isolation a hive runs with, decided when it starts, and setting it up when an engine
drives it. Depends on the model, the Store protocol and agents/gitwork.py + agents/isolated.py.

`isolation_config` (the starters): a workspace that is a git repository gets `git` (each attempt
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

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ruflo.agents.gitremote import RemoteRepo, check_remote
from ruflo.agents.gitwork import HiveRepo, capped_patch, git, is_git_repo
from ruflo.agents.isolated import Integrator
from ruflo.errors import ConfigError
from ruflo.event_kinds import EventKind
from ruflo.model import JSON, Event, Hive, TaskState

if TYPE_CHECKING:
    from ruflo.store.base import Store

__all__ = ["SHARED_NOTICE", "hive_repo", "isolation_config", "isolation_json", "isolation_of",
           "open_isolation", "remote_of", "task_git", "worktree_bytes"]

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
    if requested is not None and requested not in ISOLATIONS:
        raise ConfigError(f"isolation {requested!r} is not one of {', '.join(ISOLATIONS)}")
    if remote is not None and requested == "none":
        raise ConfigError("a git remote needs git isolation, not --isolation none; nothing was "
                          "stored")
    if remote is not None and dialect != "postgresql":
        raise ConfigError("a git remote is for workers on other machines, which share the "
                          "Postgres store: set DATABASE_URL=postgresql://... (a SQLite hive "
                          "stays on one machine); nothing was stored")
    if requested == "none":
        return {"isolation": "none"}, SHARED_NOTICE
    folder = Path(workspace).expanduser().resolve()
    if not is_git_repo(folder):
        raise ConfigError(f"workspace {folder} is not a git repository: run `git init` there "
                          "(and commit what the hive should start from), or pass "
                          "--isolation none to let the agents share the folder")
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
