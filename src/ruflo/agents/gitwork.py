"""Git isolation: each attempt works in its own git worktree on a task branch cut from the hive's
integration branch (`ruflo/<hive>`; task branches `ruflo-tasks/<hive>/<task>`); ruflo commits the attempt's tree on its behalf (outside the
sandbox) and merges it into the integration branch, one merge at a time per hive. Depends on
ruflo.errors only; git is driven through its CLI with an explicit `-C`/`--git-dir`, no user or
system configuration and a fixed identity.

Where things live: everything ruflo keeps is under the repository's common git folder,
`<git-dir>/ruflo/<hive>/`: `integration/` (a worktree on the integration branch, where merges
happen), `attempts/<task>/` (one worktree per attempt in flight), `merge.lock`. The user's
checked-out branch and working tree are never touched; only `apply_to_user_branch` merges into
them, and it refuses a dirty tree.

What an attempt cannot do to the integration branch: its tree is committed by ruflo with
`write-tree`/`commit-tree` on the commit the attempt started from, so whatever it did to the
history (reset, rewritten commits, a deleted `.git` file) does not reach the integration branch;
a file over `max_file_bytes` or a symlink that leads out of the worktree refuses the commit.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ruflo.errors import WorkspaceError

__all__ = ["AttemptTree", "Conflict", "GitError", "HiveRepo", "MergeResult", "capped_patch", "git",
           "init_repo", "is_git_repo", "shown"]

IDENTITY = ("-c", "user.name=ruflo", "-c", "user.email=ruflo@localhost",
            "-c", "commit.gpgsign=false", "-c", "core.hooksPath=/dev/null",
            "-c", "merge.conflictstyle=merge")

MAX_FILE_BYTES = 50 * 1024 * 1024
"""A file larger than this in an attempt's tree refuses its commit."""


class GitError(WorkspaceError):
    """A git command failed; the message names it and git's own words."""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL="/dev/null", GIT_TERMINAL_PROMPT="0",
               LC_ALL="C")
    return env


def git(*args: str, cwd: Path | None = None, check: bool = True,
        git_dir: Path | None = None, work_tree: Path | None = None,
        timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    argv = ["git", *IDENTITY]
    if git_dir is not None:
        argv += ["--git-dir", str(git_dir)]
    if work_tree is not None:
        argv += ["--work-tree", str(work_tree)]
    if cwd is not None:
        argv += ["-C", str(cwd)]
    argv += list(args)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, env=_env(), check=False,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise GitError(f"git {' '.join(args[:3])} gave no answer in {timeout:g} s") from None
    if check and done.returncode != 0:
        raise GitError(f"git {' '.join(args[:3])} failed: "
                       f"{(done.stderr or done.stdout).strip()[:500]}")
    return done


def capped_patch(top: Path, base: str, commit: str, limit: int) -> tuple[str, bool] | None:
    """The patch from `base` to `commit`, at most `limit` bytes of it (git is stopped once that
    much is read) and whether it was cut; None when git cannot diff the two."""
    argv = ["git", *IDENTITY, "-C", str(top), "diff", "--no-color", "--no-ext-diff", base, commit]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          env=_env()) as proc:
        assert proc.stdout is not None
        data = proc.stdout.read(limit + 1)
        cut = len(data) > limit
        if cut:
            proc.kill()
        code = proc.wait()
    if code != 0 and not cut:
        return None
    return data[:limit].decode("utf-8", "replace"), cut


def is_git_repo(folder: str | os.PathLike[str]) -> bool:
    """Whether `folder` is the top of a git working tree."""
    path = Path(folder)
    if not path.is_dir():
        return False
    done = git("rev-parse", "--show-toplevel", cwd=path, check=False)
    return done.returncode == 0 and Path(done.stdout.strip()).resolve() == path.resolve()


def init_repo(folder: str | os.PathLike[str]) -> str:
    """Make `folder` a repository holding what is in it as its first commit (ruflo's own
    folders: demo, compare, the default workspace); returns the commit."""
    path = Path(folder)
    if not is_git_repo(path):
        git("init", "--quiet", "--initial-branch=main", cwd=path)
        git("add", "-A", ".", cwd=path)
        git("commit", "--quiet", "--allow-empty", "-m", "ruflo: start", cwd=path)
    return git("rev-parse", "HEAD", cwd=path).stdout.strip()


def integration_branch(hive_id: str) -> str:
    """The branch a hive's verified attempts are merged into."""
    return f"ruflo/{hive_id}"


@dataclass(frozen=True, slots=True)
class Conflict:
    """Files a merge could not join, with both sides of each (truncated)."""

    files: tuple[str, ...]
    ours: dict[str, str]
    theirs: dict[str, str]


@dataclass(frozen=True, slots=True)
class MergeResult:
    merged: bool
    commit: str | None
    """The integration branch's head after the merge (None on a conflict)."""
    conflict: Conflict | None = None


@dataclass(frozen=True, slots=True)
class AttemptTree:
    """One attempt's worktree."""

    path: Path
    git_dir: Path
    """The worktree's own git folder (in the repository's `.git/worktrees/`)."""
    branch: str
    base: str
    """The commit the attempt started from."""
    extra_parent: str | None = None
    """An integration attempt: the task commit being merged (the second parent)."""


class HiveRepo:
    """A hive's view of the user's repository."""

    remote: str | None = None
    """The git remote the hive's integration branch lives on (agents/gitremote.py); None: it
    lives in this repository."""

    def __init__(self, workspace: str | os.PathLike[str], hive_id: str) -> None:
        self.top = Path(workspace).resolve()
        self.hive_id = hive_id
        common = git("rev-parse", "--git-common-dir", cwd=self.top).stdout.strip()
        self.common = (self.top / common).resolve()
        self.home = self.common / "ruflo" / hive_id
        self.branch = integration_branch(hive_id)
        self.integration = self.home / "integration"

    # -- the hive's start --------------------------------------------------------------------
    def prepare(self, start: str | None = None) -> tuple[str, list[str]]:
        """Create the integration branch at `start` (default: the user's HEAD commit) and its
        worktree; idempotent. Returns the start commit and the user's uncommitted paths (not
        included: the hive starts from the named commit)."""
        dirty = [line[3:] for line in
                 git("status", "--porcelain", cwd=self.top).stdout.splitlines() if line]
        exists = git("rev-parse", "--verify", "--quiet", f"refs/heads/{self.branch}",
                     cwd=self.top, check=False).returncode == 0
        if exists:
            commit = self.head()
        else:
            commit = git("rev-parse", "--verify", f"{start or 'HEAD'}^{{commit}}",
                         cwd=self.top).stdout.strip()
            git("branch", self.branch, commit, cwd=self.top)
        with self.worktree_lock():  # prune would drop an attempt another process is adding
            if not (self.integration / ".git").exists():
                git("worktree", "prune", cwd=self.top)
                git("worktree", "add", "--quiet", str(self.integration), self.branch,
                    cwd=self.top)
        return commit, dirty

    def head(self) -> str:
        return git("rev-parse", f"refs/heads/{self.branch}", cwd=self.top).stdout.strip()

    def attempt_base(self) -> str:
        """The commit a new attempt starts from: the integration branch's head."""
        return self.head()

    def obtain(self, commit: str) -> None:
        """Make sure `commit` is here (a remote's commits are fetched first)."""

    def catch_up(self) -> str:
        """Bring the integration worktree to the integration branch's latest head and return it
        (call holding `lock`); here the branch is this repository's own."""
        git("reset", "--hard", "--quiet", self.branch, cwd=self.integration)
        return self.head()

    def publish(self) -> bool:
        """Make the integration branch's new head the hive's (call holding `lock`); False when
        someone else moved it first. Here the branch is already the hive's."""
        return True

    # -- attempts ------------------------------------------------------------------------------
    def attempt_path(self, task_id: str) -> Path:
        return self.home / "attempts" / task_id

    def open_attempt(self, task_id: str, *, merge: str | None = None) -> AttemptTree:
        """A fresh worktree for the task on branch `ruflo/<hive>/<task>` at the integration
        head; `merge`: a commit merged in (conflict markers left for the agent to resolve)."""
        path = self.attempt_path(task_id)
        branch = f"ruflo-tasks/{self.hive_id}/{task_id}"
        base = self.attempt_base()  # may fetch (a remote hive): outside the lock
        with self.worktree_lock():
            # git's worktree bookkeeping is not safe for two adds at once (one may read the
            # other's half-written .git/worktrees entry): attempts start one at a time.
            self._remove_attempt(task_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            git("worktree", "add", "--quiet", "--force", "-B", branch, str(path), base,
                cwd=self.top)
        git_dir = Path(git("rev-parse", "--absolute-git-dir", cwd=path).stdout.strip())
        if merge is not None:
            self.obtain(merge)
            git("merge", "--no-commit", "--no-ff", merge, cwd=path, check=False)
        return AttemptTree(path, git_dir, branch, base, merge)

    def attempt_tree(self, task_id: str, base: str, *,
                     merge: str | None = None) -> AttemptTree | None:
        """The worktree an earlier `open_attempt` cut at `base` (None when it is gone)."""
        path = self.attempt_path(task_id)
        git_dir = self.common / "worktrees"
        # Under the lock: another attempt being added or removed meanwhile leaves entries of
        # git's bookkeeping half-written or half-gone.
        with self.worktree_lock():
            listing = git("worktree", "list", "--porcelain", cwd=self.top).stdout
            if f"worktree {path}\n" not in listing + "\n" or not path.is_dir():
                return None
            found = [d for d in git_dir.iterdir() if (d / "gitdir").is_file()
                     and Path((d / "gitdir").read_text().strip()).parent == path]
        if not found:
            return None
        return AttemptTree(path, found[0], f"ruflo-tasks/{self.hive_id}/{task_id}", base, merge)

    def commit_attempt(self, tree: AttemptTree, message: str, *,
                       max_file_bytes: int = MAX_FILE_BYTES) -> tuple[str, list[str]]:
        """Commit what the attempt left (everything, untracked files too) on its base; returns
        the commit and the changed paths. GitError for an oversized file or an outward
        symlink (nothing is committed)."""
        # The attempt's own .git file may be gone or rewritten: name its git folder outright.
        dotgit = tree.path / ".git"
        if dotgit.is_dir() and not dotgit.is_symlink():
            shutil.rmtree(dotgit)
        else:
            dotgit.unlink(missing_ok=True)
        dotgit.write_text(f"gitdir: {tree.git_dir}\n")
        self._check_tree(tree, max_file_bytes)
        # `add -A` makes the index the worktree's content whatever the attempt did to it or to
        # the history; the commit's parent is the base ruflo cut, not the attempt's HEAD.
        git("add", "-A", ".", cwd=tree.path, git_dir=tree.git_dir, work_tree=tree.path)
        tree_id = git("write-tree", git_dir=tree.git_dir).stdout.strip()
        parents = ["-p", tree.base] + (["-p", tree.extra_parent] if tree.extra_parent else [])
        commit = git("commit-tree", tree_id, *parents, "-m", message,
                     git_dir=tree.git_dir).stdout.strip()
        git("update-ref", f"refs/heads/{tree.branch}", commit, cwd=self.top)
        names = git("diff", "--name-only", "-z", tree.base, commit, cwd=self.top).stdout
        changed = [name for name in names.split("\0") if name]
        return commit, changed

    def _check_tree(self, tree: AttemptTree, max_file_bytes: int) -> None:
        """Refuse what must not be committed, looking only at what the attempt changed."""
        listing = git("status", "--porcelain", "-z", "--untracked-files=all",
                      "--ignore-submodules", cwd=tree.path, git_dir=tree.git_dir,
                      work_tree=tree.path).stdout
        root = tree.path
        for entry in listing.split("\0"):
            if len(entry) < 4 or (entry[0] in "RC" and entry[3:] == ""):
                continue
            shown_path = entry[3:]
            path = root / shown_path
            if not path.is_symlink() and not path.exists():
                continue
            if path.is_symlink():
                target = Path(os.path.realpath(path))
                if target != root and not target.is_relative_to(root):
                    raise GitError(f"{shown_path} is a symlink pointing out of the repository: "
                                   "not committed")
            elif path.is_file() and path.stat().st_size > max_file_bytes:
                raise GitError(f"{shown_path} is larger than {max_file_bytes} bytes: "
                               "not committed")
            elif tree.extra_parent is not None and path.is_file() and _has_markers(path):
                raise GitError(f"{shown_path} still holds conflict markers: resolve them (keep "
                               "both sides' intent) and finish again")

    def remove_attempt(self, task_id: str) -> None:
        with self.worktree_lock():
            self._remove_attempt(task_id)

    def _remove_attempt(self, task_id: str) -> None:
        # `worktree prune` would drop a worktree another attempt is adding: under the lock only.
        path = self.attempt_path(task_id)
        if path.exists():
            git("worktree", "remove", "--force", "--force", str(path), cwd=self.top, check=False)
            shutil.rmtree(path, ignore_errors=True)
        git("worktree", "prune", cwd=self.top)

    def leftovers(self) -> list[str]:
        """Task ids of attempt worktrees on disk (after a kill, those nobody works in)."""
        folder = self.home / "attempts"
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []

    @contextlib.contextmanager
    def worktree_lock(self) -> Iterator[None]:
        """Hold the hive's worktree lock (blocks), across processes on this machine."""
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.home / "worktree.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- integration ---------------------------------------------------------------------------
    def lock(self) -> IO[str]:
        """Take the hive's merge lock (blocks): one merge at a time per hive, across processes
        on this machine. Give it back with `unlock`."""
        self.home.mkdir(parents=True, exist_ok=True)
        handle = open(self.home / "merge.lock", "w")  # noqa: SIM115 (held across awaits)
        fcntl.flock(handle, fcntl.LOCK_EX)
        return handle

    @staticmethod
    def unlock(handle: IO[str]) -> None:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()

    def merge(self, commit: str, message: str) -> MergeResult:
        """Merge `commit` into the integration branch (call holding `lock`). A conflict is
        aborted and described; the branch is left as it was."""
        cwd = self.integration
        git("reset", "--hard", "--quiet", self.branch, cwd=cwd)
        if git("merge-base", "--is-ancestor", commit, "HEAD", cwd=cwd,
               check=False).returncode == 0:
            return MergeResult(True, self.head())  # already in (a restart after the merge)
        done = git("merge", "--no-ff", "-m", message, commit, cwd=cwd, check=False)
        if done.returncode == 0:
            return MergeResult(True, self.head())
        unmerged = git("diff", "--name-only", "-z", "--diff-filter=U", cwd=cwd).stdout
        files = tuple(name for name in unmerged.split("\0") if name)
        ours = {f: self._side(":2", f) for f in files}
        theirs = {f: self._side(":3", f) for f in files}
        git("merge", "--abort", cwd=cwd, check=False)
        git("reset", "--hard", "--quiet", self.branch, cwd=cwd)
        if not files:
            raise GitError(f"merging {commit[:12]} failed: {(done.stderr or done.stdout)[:300]}")
        return MergeResult(False, None, Conflict(files, ours, theirs))

    def undo_last_merge(self, to: str) -> None:
        """Set the integration branch back to `to` (a merge whose result failed verify)."""
        git("reset", "--hard", "--quiet", to, cwd=self.integration)

    def _side(self, stage: str, path: str) -> str:
        done = git("show", f"{stage}:{path}", cwd=self.integration, check=False)
        return done.stdout[:1500] if done.returncode == 0 else "(deleted)"

    # -- what a person uses ---------------------------------------------------------------------
    def diff(self, start: str, *, stat: bool = False) -> str:
        args = ["diff", "--stat"] if stat else ["diff"]
        return git(*args, start, self.branch, cwd=self.top).stdout

    def apply_to_user_branch(self) -> str:
        """Merge the integration branch into the user's checked-out branch; refuses a dirty
        tree. Returns the user's new HEAD."""
        if git("status", "--porcelain", "--untracked-files=no", cwd=self.top).stdout.strip():
            raise GitError(f"{self.top} has uncommitted changes: commit or stash them first; "
                           "nothing was applied")
        done = git("merge", "--no-ff", "-m", f"ruflo: apply hive {self.hive_id}", self.branch,
                   cwd=self.top, check=False)
        if done.returncode != 0:
            git("merge", "--abort", cwd=self.top, check=False)
            raise GitError(f"applying {self.branch} conflicts with your branch: merge it by hand "
                           f"(git merge {self.branch}); nothing was applied")
        return git("rev-parse", "HEAD", cwd=self.top).stdout.strip()

    def disk_bytes(self) -> int:
        total = 0
        for folder, _dirs, files in os.walk(self.home):
            for name in files:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(folder, name)).st_size
        return total


def _has_markers(path: Path) -> bool:
    try:
        if path.stat().st_size > 2_000_000:
            return False
        text = path.read_bytes()
    except OSError:
        return False
    return b"\n<<<<<<< " in b"\n" + text and b"\n>>>>>>> " in text


def shown(paths: Sequence[str]) -> str:
    """Paths for a message: the first 20 and how many more."""
    return ", ".join(paths[:20]) + (f" and {len(paths) - 20} more" if len(paths) > 20 else "")
