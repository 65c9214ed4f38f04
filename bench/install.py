"""What the main job's install costs on a fresh clone (`scripts/install --main`, the step
`scripts/run` takes first), against the full install `scripts/test` makes, in one run; then
whether semantic memory search works in the light install.

    python3 bench/install.py [--cold] [--main-only]

Each install is a `git clone` of this repository's HEAD (commit first: the work tree's changes
are not in it) into a temp dir, then its scripts/install, timed: wall time, and CPU time
(user+sys of the install's processes). Sizes are of the clone's .venv: on disk (allocated blocks)
and apparent, in MiB. pip's cache makes a repeat run quicker: the output says whether it was
warm; --cold gives each install an empty cache of its own (the network to the index is used).
Targets for the main install: <= 90 s and <= 400 MiB. Needs git and Python 3.11+ (python3).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 90.0
TARGET_MIB = 400.0
MIB = 1024 * 1024
TEST_ONLY = ("torch", "sentence_transformers", "playwright", "litellm", "pytest", "mypy", "onnx",
             "psycopg")
"""Import names the main job's install must not bring (onnx only writes the committed graphs;
the main job runs on SQLite, without the Postgres driver)."""
ONNX_RUNTIME = ("onnxruntime", "protobuf", "flatbuffers")
"""What ONNX Runtime brings for `ruflo mcp`, whose searches would run on numpy without it."""

NOTES = {
    "bread": "Sourdough: feed the starter, knead, proof overnight, bake at 250 C",
    "oom": "Pods get OOMKilled when they exceed the container memory limit",
    "tax": "VAT returns are due on the 20th of the month",
}
QUERY = "how do I make a loaf with wild yeast"
"""Shares no word with any note: only a semantic ranking finds `bread`."""

SIZES = """
import importlib.metadata as md, json, os
sizes = {}
for dist in md.distributions():
    total = 0
    for file in dist.files or []:
        try:
            total += os.path.getsize(file.locate())
        except OSError:
            pass
    sizes[dist.metadata["Name"]] = total
print(json.dumps(sizes))
"""


@dataclass
class Install:
    name: str
    command: str
    wall: float
    cpu: float
    disk_mib: float
    apparent_mib: float
    venv: Path

    def line(self) -> str:
        return (f"{self.name} ({self.command}): {self.wall:.1f} s wall, {self.cpu:.1f} s CPU; "
                f".venv {self.disk_mib:.0f} MiB on disk ({self.apparent_mib:.0f} MiB apparent)")


def venv_size(root: Path) -> tuple[float, float]:
    """(on disk, apparent) in MiB; a file with several links counts once."""
    seen: set[tuple[int, int]] = set()
    disk = apparent = 0
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            info = os.lstat(os.path.join(folder, name))
            if (info.st_dev, info.st_ino) in seen:
                continue
            seen.add((info.st_dev, info.st_ino))
            disk += info.st_blocks * 512
            apparent += info.st_size
    return disk / MIB, apparent / MIB


def cache_mib(env: dict[str, str]) -> float:
    """The size of the pip cache the installs will use."""
    found = subprocess.run([sys.executable, "-m", "pip", "cache", "dir"], env=env,
                           capture_output=True, text=True)
    folder = Path(found.stdout.strip()) if found.returncode == 0 else None
    if folder is None or not folder.is_dir():
        return 0.0
    return venv_size(folder)[0]


def install(name: str, option: str, workdir: Path, env: dict[str, str]) -> Install:
    """Clone HEAD into `workdir`/`name` and run its scripts/install `option`, timed."""
    clone = workdir / name
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([str(clone / "scripts" / "install"), option], cwd=clone, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"bench/install.py: scripts/install {option} failed "
                         f"(exit {done.returncode}); see above")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    disk, apparent = venv_size(clone / ".venv")
    return Install(name, f"scripts/install {option}", wall, cpu, disk, apparent, clone / ".venv")


def distribution_sizes(venv: Path) -> dict[str, int]:
    """Bytes (apparent) of each distribution installed in `venv`, by name."""
    found = subprocess.run([str(venv / "bin" / "python"), "-c", SIZES], capture_output=True,
                           text=True, check=True)
    sizes: dict[str, int] = json.loads(found.stdout)
    return sizes


def largest(sizes: dict[str, int], count: int) -> str:
    top = sorted(sizes.items(), key=lambda item: item[1], reverse=True)[:count]
    return ", ".join(f"{name} {size / MIB:.0f}" for name, size in top)


def ruflo(venv: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run([str(venv / "bin" / "ruflo"), *args], env=env, capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise SystemExit(f"bench/install.py: ruflo {' '.join(args)} failed "
                         f"(exit {done.returncode}): {done.stderr.strip()[-500:]}")
    return done.stdout


def check_semantic_memory(venv: Path, data_dir: Path) -> list[str]:
    """Problems with memory search in `venv` (none: it is semantic, on ONNX Runtime in
    `ruflo mcp`, and no test-only package is there)."""
    env = {**os.environ, "RUFLO_DATA_DIR": str(data_dir)}
    # Bytecode is written as on a user's machine, so the size after use below is real.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    problems = []
    present = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "import importlib.util, sys; print(' '.join(n for n in sys.argv[1:] "
         "if importlib.util.find_spec(n) is not None))", *TEST_ONLY],
        capture_output=True, text=True, check=True).stdout.split()
    if present:
        problems.append(f"packages the main job does not need are installed: {', '.join(present)}")
    report = json.loads(ruflo(venv, env, "doctor", "--json"))
    detail = next(c["detail"] for c in report["checks"] if c["name"] == "memory search")
    print(f"  ruflo doctor: memory search: {detail}")
    if not detail.startswith("semantic") or "run by ONNX Runtime" not in detail:
        problems.append("ruflo doctor does not report semantic search on ONNX Runtime")
    for key, content in NOTES.items():
        ruflo(venv, env, "memory", "store", key, content)
    ranked = json.loads(ruflo(venv, env, "memory", "search", QUERY, "--json"))
    keyword = json.loads(ruflo(venv, env, "memory", "search", QUERY, "--keyword", "--json"))
    print(f"  ruflo memory search {QUERY!r}: "
          + ", ".join(f"{hit['key']} {hit['score']:.2f}" for hit in ranked)
          + f"; with --keyword: {[hit['key'] for hit in keyword]}")
    if not ranked or ranked[0]["key"] != "bread":
        problems.append("semantic search did not rank the bread note first")
    if any(hit["key"] == "bread" for hit in keyword):
        problems.append("the query was meant to share no word with the notes")
    return problems


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cold", action="store_true",
                        help="give each install an empty pip cache of its own")
    parser.add_argument("--main-only", action="store_true",
                        help="skip the baseline (the full install scripts/test makes)")
    args = parser.parse_args()
    if shutil.which("git") is None:
        raise SystemExit("bench/install.py needs git")
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, check=True).stdout.strip()
    print(f"installing {head} (a clone of HEAD{'; uncommitted changes are not in it' if dirty else ''})"
          f" with {sys.executable} ({sys.version.split()[0]}) on {os.cpu_count()} cores")

    with tempfile.TemporaryDirectory(prefix="ruflo-install-") as temp:
        workdir = Path(temp)
        env = dict(os.environ)
        env.pop("VIRTUAL_ENV", None)
        env["PYTHON"] = sys.executable
        runs = [("main", "--main")] + ([] if args.main_only else [("full", "--no-system")])
        results = []
        for name, option in runs:
            if args.cold:
                env["PIP_CACHE_DIR"] = str(workdir / f"pip-cache-{name}")
            cached = cache_mib(env)
            state = f"warm ({cached:.0f} MiB)" if cached >= 1 else "cold (empty)"
            print(f"{name}: pip cache {state}; installing...", flush=True)
            results.append(install(name, option, workdir, env))
            print(f"  {results[-1].line()}", flush=True)

        light = results[0]
        sizes = distribution_sizes(light.venv)
        engine = sum(size for name, size in sizes.items()
                     if re.sub(r"[-_.]+", "-", name).lower() in ONNX_RUNTIME)
        print(f"  largest in the main install (apparent MiB): {largest(sizes, 12)}; ONNX "
              f"Runtime for `ruflo mcp` ({', '.join(ONNX_RUNTIME)}) takes {engine / MIB:.0f}")
        if len(results) > 1:
            full = results[1]
            print(f"baseline, the full install: {full.wall / light.wall:.1f}x the time, "
                  f"{full.disk_mib / light.disk_mib:.1f}x the disk of the main install")
        print("semantic memory in the main install:")
        problems = check_semantic_memory(light.venv, workdir / "data")
        after_use = venv_size(light.venv)[0]
        print(f"  .venv after that first use (bytecode written): {after_use:.0f} MiB on disk")
        print(f"target <= {TARGET_SECONDS:.0f} s: {verdict(light.wall <= TARGET_SECONDS)} "
              f"({light.wall:.1f} s); target <= {TARGET_MIB:.0f} MiB: "
              f"{verdict(light.disk_mib <= TARGET_MIB)} ({light.disk_mib:.0f} MiB); "
              f"semantic memory: {'works' if not problems else 'BROKEN: ' + '; '.join(problems)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
