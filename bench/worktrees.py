"""Git isolation's cost per attempt on a big repository: ruflo's create-work-merge-remove cycle
(agents/gitwork.py: worktree on a task branch, commit of the attempt's tree, merge into the
integration branch under the hive's lock, worktree removed) against plain git doing the same
(`git worktree add -b`, `git add -A && git commit`, `git merge --no-ff`, `git worktree remove`),
in the same run on the same generated repository. Prints wall and CPU (this process and its git
children) per attempt, and ruflo's ratio to plain git (target: at most 1.2).

    PYTHONPATH=src python bench/worktrees.py [--files 10000] [--mb 50] [--attempts 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ruflo.agents.gitwork import HiveRepo, git, init_repo


def cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def generate(folder: Path, files: int, total_mb: int) -> None:
    size = total_mb * 1024 * 1024 // files
    for n in range(files):
        sub = folder / f"pkg{n // 100:03d}"
        sub.mkdir(exist_ok=True)
        (sub / f"mod{n:05d}.py").write_bytes(os.urandom(size // 2).hex().encode()[:size])
    init_repo(folder)


def ruflo_cycle(repo: HiveRepo, n: int) -> None:
    task = f"t{n}"
    tree = repo.open_attempt(task)
    (tree.path / f"pkg000/work{n}.py").write_text(f"x = {n}\n")
    commit, _ = repo.commit_attempt(tree, f"task {task}")
    handle = repo.lock()
    try:
        assert repo.merge(commit, f"merge {task}").merged
    finally:
        repo.unlock(handle)
    repo.remove_attempt(task)


def plain_cycle(top: Path, integration: Path, n: int) -> None:
    path = top.parent / f"plain-{n}"
    git("worktree", "add", "--quiet", "-b", f"plain-tasks/t{n}", str(path), "plain", cwd=top)
    (path / f"pkg000/plain{n}.py").write_text(f"x = {n}\n")
    git("add", "-A", ".", cwd=path)
    git("commit", "--quiet", "-m", f"task {n}", cwd=path)
    git("merge", "--quiet", "--no-ff", "-m", f"merge {n}", f"plain-tasks/t{n}", cwd=integration)
    git("worktree", "remove", "--force", str(path), cwd=top)


def measure(label: str, attempts: int, one: Callable[[int], None]) -> tuple[float, float]:
    wall0, cpu0 = time.perf_counter(), cpu()
    for n in range(attempts):
        one(n)
    wall, used = (time.perf_counter() - wall0) / attempts, (cpu() - cpu0) / attempts
    print(f"{label:<28} wall {wall * 1000:8.1f} ms/attempt   cpu {used * 1000:8.1f} ms/attempt")
    return wall, used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--mb", type=int, default=50)
    parser.add_argument("--attempts", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        top = Path(scratch) / "repo"
        top.mkdir()
        started = time.perf_counter()
        generate(top, args.files, args.mb)
        count = subprocess.run(["git", "-C", str(top), "ls-files"], capture_output=True,
                               text=True, check=True).stdout.count("\n")
        print(f"repository: {count} files, {args.mb} MB, generated in "
              f"{time.perf_counter() - started:.1f} s; {args.attempts} attempts each")
        repo = HiveRepo(top, "bench")
        repo.prepare()
        git("branch", "plain", "HEAD", cwd=top)
        integration = Path(scratch) / "plain-integration"
        git("worktree", "add", "--quiet", str(integration), "plain", cwd=top)
        # Alternate so both see the same cache state; one warm-up each first.
        plain_cycle(top, integration, 10_000)
        ruflo_cycle(repo, 10_000)
        plain = measure("plain git", args.attempts, lambda n: plain_cycle(top, integration, n))
        ours = measure("ruflo", args.attempts, lambda n: ruflo_cycle(repo, n))
        print(f"ruflo / plain git: wall {ours[0] / plain[0]:.2f}x, cpu {ours[1] / plain[1]:.2f}x "
              "(target <= 1.2x)")


if __name__ == "__main__":
    main()
