"""A hive whose integration branch lives on a git remote, so `ruflo worker`s on machines that
share no folder can work on it (a Postgres hive with `git_remote`). Depends on
agents/gitwork.py and ruflo.errors.

The remote's `ruflo/<hive>` is the hive's result. Each machine keeps its own copy: a worker a
bare repository of its own (`RemoteRepo.clone`, under its workspace folder), the machine that
made the hive the user's repository. Attempts are cut from the remote branch's latest head
(fetched into the private ref `refs/ruflo-remote/<hive>`), their commits pushed as
`ruflo-tasks/<hive>/<task>`; a merge is made on the fetched head and pushed, and a push the
remote refuses because someone moved the branch first means fetch and merge again (the
Integrator, agents/isolated.py, holds the store's merge lock around it so that is rare).
"""

from __future__ import annotations

import fcntl
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ruflo.agents.gitwork import MAX_FILE_BYTES, AttemptTree, GitError, HiveRepo, git
from ruflo.errors import ConfigError

__all__ = ["RemoteRepo", "check_remote", "stored_url"]

REMOTE_TIMEOUT = 300.0
"""Seconds a fetch or push may take before it is given up (GitError)."""
CHECK_TIMEOUT = 60.0
"""Seconds the start's reachability check may take."""


def stored_url(url: str) -> str:
    """The remote as the hive stores it: a URL or `host:path` as given, a local path made
    absolute (workers resolve it on their own machine)."""
    head = url.split("/", 1)[0]
    if "://" in url or ":" in head:
        return url
    return str(Path(url).expanduser().resolve())


def check_remote(url: str, start: str, workspace: Path) -> str:
    """Check that the remote answers and holds `start` (the commit the hive starts from);
    returns the URL to store. ConfigError, one line, when not: nothing is stored then."""
    stored = stored_url(url)
    try:
        listed = git("ls-remote", stored, cwd=workspace, check=False, timeout=CHECK_TIMEOUT)
    except GitError as error:
        raise ConfigError(f"git remote {url} cannot be reached ({error}); nothing was "
                          "stored") from None
    if listed.returncode != 0:
        why = (listed.stderr.strip().splitlines() or ["no answer"])[0]
        raise ConfigError(f"git remote {url} cannot be reached: {why}; nothing was stored")
    for line in listed.stdout.splitlines():
        tip = line.split()[0] if line.strip() else ""
        if tip and git("merge-base", "--is-ancestor", start, tip, cwd=workspace,
                       check=False).returncode == 0:
            return stored  # the remote has a commit we know that contains the start
    with tempfile.TemporaryDirectory(prefix="ruflo-remote-check-") as scratch:
        git("init", "--quiet", "--bare", scratch)
        try:
            found = git("fetch", "--quiet", "--depth=1", "--no-tags", stored, start,
                        cwd=Path(scratch), check=False, timeout=CHECK_TIMEOUT)
        except GitError as error:
            raise ConfigError(f"git remote {url}: {error}; nothing was stored") from None
    if found.returncode != 0:
        raise ConfigError(f"git remote {url} does not have commit {start[:12]}, which the hive "
                          f"starts from: push it there first (git push {url} "
                          f"{start[:12]}:refs/heads/BRANCH); nothing was stored")
    return stored


class RemoteRepo(HiveRepo):
    """A hive's repository whose integration branch is the remote's `ruflo/<hive>`."""

    def __init__(self, folder: str | Path, hive_id: str, url: str) -> None:
        super().__init__(folder, hive_id)
        self.remote = url
        self.tracking = f"refs/ruflo-remote/{hive_id}"
        """Where the remote's integration branch is fetched to (a ref no one checks out)."""

    @classmethod
    def clone(cls, folder: Path, hive_id: str, url: str) -> RemoteRepo:
        """This machine's own copy of the remote: a bare repository at `folder`, made at first
        use (it fetches only what the hive needs), reused after."""
        folder.mkdir(parents=True, exist_ok=True)
        if any(folder.iterdir()):
            bare = git("rev-parse", "--is-bare-repository", cwd=folder, check=False)
            if bare.stdout.strip() != "true":
                raise ConfigError(f"{folder} exists and is not ruflo's copy of {url}: empty it "
                                  "or give the worker another --workspace; nothing was changed")
        else:
            git("init", "--quiet", "--bare", str(folder))
        return cls(folder, hive_id, url)

    # -- talking to the remote -------------------------------------------------------------------
    @contextmanager
    def _fetching(self) -> Iterator[None]:
        """One fetch at a time in this copy (threads and processes alike: git locks the refs
        it updates and refuses a second writer rather than waiting)."""
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.home / "fetch.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def _fetch(self, *refspecs: str) -> None:
        assert self.remote is not None
        git("fetch", "--quiet", "--no-tags", "--no-write-fetch-head", self.remote, *refspecs,
            cwd=self.top, timeout=REMOTE_TIMEOUT)

    def fetch_integration(self) -> str:
        """Fetch the remote's integration branch; returns its head."""
        with self._fetching():
            self._fetch(f"+refs/heads/{self.branch}:{self.tracking}")
            return git("rev-parse", self.tracking, cwd=self.top).stdout.strip()

    def _push(self, source: str, branch: str, *, force: bool) -> tuple[bool, str]:
        assert self.remote is not None
        args = ["push", "--quiet", "--porcelain", *(["--force"] if force else []), self.remote,
                f"{source}:refs/heads/{branch}"]
        done = git(*args, cwd=self.top, check=False, timeout=REMOTE_TIMEOUT)
        return done.returncode == 0, (done.stdout + done.stderr).strip()

    # -- the hive's start --------------------------------------------------------------------
    def prepare(self, start: str | None = None) -> tuple[str, list[str]]:
        """Create the remote's integration branch at `start` unless it exists (whoever comes
        first; a second creator finds it there), and this copy's integration worktree on its
        head. Returns the head and no uncommitted paths (the copy has no working tree of the
        user's)."""
        if start is None:
            raise GitError(f"hive {self.hive_id} names no start commit; it cannot use a remote")
        assert self.remote is not None
        listed = git("ls-remote", "--heads", self.remote, f"refs/heads/{self.branch}",
                     cwd=self.top, timeout=REMOTE_TIMEOUT).stdout
        if not listed.strip():
            self.obtain(start)
            self._push(start, self.branch, force=False)  # refused when another made it: fine
        head = self.fetch_integration()
        with self.worktree_lock():  # prune would drop an attempt another process is adding
            if not (self.integration / ".git").exists():
                git("worktree", "prune", cwd=self.top)
                git("worktree", "add", "--quiet", "--force", "-B", self.branch,
                    str(self.integration), head, cwd=self.top)
        return head, []

    # -- what HiveRepo asks of a remote ----------------------------------------------------------
    def attempt_base(self) -> str:
        return self.fetch_integration()

    def obtain(self, commit: str) -> None:
        if git("cat-file", "-e", f"{commit}^{{commit}}", cwd=self.top,
               check=False).returncode == 0:
            return
        with self._fetching():
            try:
                self._fetch(commit)
            except GitError as error:
                raise GitError(f"commit {commit[:12]} is not on the remote {self.remote}: "
                               f"{error}") from None

    def commit_attempt(self, tree: AttemptTree, message: str, *,
                       max_file_bytes: int = MAX_FILE_BYTES) -> tuple[str, list[str]]:
        """Commit as HiveRepo does, then push the task branch to the remote (a retried attempt
        replaces it)."""
        commit, changed = super().commit_attempt(tree, message, max_file_bytes=max_file_bytes)
        pushed, said = self._push(commit, tree.branch, force=True)
        if not pushed:
            raise GitError(f"pushing the attempt's branch to {self.remote} failed: {said[:300]}")
        return commit, changed

    def catch_up(self) -> str:
        head = self.fetch_integration()
        git("reset", "--hard", "--quiet", head, cwd=self.integration)
        return head

    def publish(self) -> bool:
        pushed, said = self._push(self.branch, self.branch, force=False)
        if pushed:
            git("update-ref", self.tracking, self.branch, cwd=self.top)
            return True
        if "rejected" in said or "non-fast-forward" in said or "fetch first" in said:
            return False
        raise GitError(f"pushing {self.branch} to {self.remote} failed: {said[:300]}")

    # -- what a person uses ----------------------------------------------------------------------
    def pull_result(self) -> str:
        """Bring the remote's integration branch into this repository's `ruflo/<hive>` (the
        user's machine, before `hive diff` / `hive apply`); returns its head."""
        head = self.fetch_integration()
        if (self.integration / ".git").exists():
            handle = self.lock()
            try:
                git("reset", "--hard", "--quiet", head, cwd=self.integration)
            finally:
                self.unlock(handle)
        else:
            git("update-ref", f"refs/heads/{self.branch}", head, cwd=self.top)
        return head
