"""The first claim on a hive of 40,000 tasks (REST or MCP, no task named): the hive's policy is
rebuilt from the store for it. Times that claim with this tree beside the same claim with ruflo
as of a base commit (default 3b077d8, which read every task's full row), in the same run, on the
same store, each in a fresh process, and checks that both chose the same task.

    .venv/bin/python bench/first_claim.py [--quick] [--base REV]

Two boards: 40,000 open tasks (bench/peers.py's claims hive) and 40,000 tasks of which 39,000
are done with a result and a description of a few KB each (a hive that has run for a while).
SQLite, and Postgres when it answers on 127.0.0.1:5432. Each claim is rolled back, so every
process meets the same board. Figures are medians of the rounds: wall time, with the claiming
process's CPU time beside it (the machine may be shared).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

from peers import seed_tasks

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=3"
TASKS = 40_000
STILL_OPEN = 1_000
"""Open tasks on the board of a hive that has run a while; the rest are done."""


# -- one claim, in a fresh process -------------------------------------------------------------

class _Undo(Exception):
    """Rolls the claim back after it is timed: the next process meets the same board."""


def claim_once(url: str, hive_id: str, at: str) -> None:
    """The REST route's first claim for a new agent (policy refresh, then register, decide and
    claim in one transaction), timed; prints the figures as JSON. Runs on whichever ruflo is
    first on PYTHONPATH."""
    import time
    from datetime import datetime

    from ruflo.engine.stored_policy import StoredPolicies
    from ruflo.model import Agent, new_id
    from ruflo.store import open_store

    store = open_store(url)
    hive = store.get_hive(hive_id)
    moment = datetime.fromisoformat(at)
    policies = StoredPolicies(clock=lambda: moment)  # both runs decide at the same instant
    answer: dict[str, Any] = {}
    wall, cpu = time.perf_counter(), time.process_time()
    policies.refresh(store, hive)
    try:
        with store.transaction():
            agent = store.add_agent(Agent(id=new_id(), hive_id=hive.id, name="first",
                                          role="rest", skills=("python",),
                                          adapter_config={"via": "rest"}))
            chosen = policies.decide(store, hive, agent)
            task = None if chosen.task_id is None else store.claim_task(
                hive.id, agent.id, lease_seconds=60, task_id=chosen.task_id)
            answer = {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu,
                      "task": None if task is None else task.id}
            raise _Undo
    except _Undo:
        pass
    finally:
        store.close()
    print(json.dumps(answer))


@dataclass
class Claims:
    walls: list[float]
    cpus: list[float]
    tasks: set[str | None]

    @property
    def wall(self) -> float:
        return statistics.median(self.walls)

    @property
    def cpu(self) -> float:
        return statistics.median(self.cpus)


def run_claim(src: Path, url: str, hive_id: str, at: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{Path(__file__).parent}"}
    done = subprocess.run([sys.executable, __file__, "--claim", url, hive_id, at], env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the claim with {src} failed:\n{done.stderr[-2000:]}")
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def compare(label: str, sources: dict[str, Path], url: str, hive_id: str, at: str,
            rounds: int) -> None:
    results = {name: Claims([], [], set()) for name in sources}
    for _ in range(rounds):
        for name, src in sources.items():  # alternated, so both meet the same load
            got = run_claim(src, url, hive_id, at)
            results[name].walls.append(got["wall"])
            results[name].cpus.append(got["cpu"])
            results[name].tasks.add(got["task"])
    base, now = results["base"], results["this tree"]
    same = base.tasks == now.tasks and len(now.tasks) == 1
    print(f"  {label}")
    for name, claims in results.items():
        print(f"    {name:9} {claims.wall * 1000:8.0f} ms wall {claims.cpu * 1000:8.0f} ms CPU")
    print(f"    base / this tree: x{base.wall / now.wall:.1f} wall, x{base.cpu / now.cpu:.1f} CPU;"
          f" same task chosen: {'yes' if same else 'NO'}", flush=True)


# -- the boards ----------------------------------------------------------------------------------

def finish_most(execute: Callable[[str, tuple[Any, ...]], None], mark: str, hive_id: str,
                keep_open: int) -> None:
    """Mark all but the last `keep_open` tasks done, with the text a finished task carries,
    straight in the store (as seed_tasks posts them)."""
    sql = (f"UPDATE tasks SET state = 'done', attempts = 1, result = {mark}, description = {mark}, "
           f"finished_at = created_at + 1, updated_at = created_at + 1 WHERE id IN (SELECT id "
           f"FROM tasks WHERE hive_id = {mark} ORDER BY ord LIMIT {mark})")
    execute(sql, ("tests passed; changed files: " + "src/x.py " * 300,
                  "what to do and why: " + "context " * 200, hive_id, TASKS - keep_open))


def boards(store: Any, tasks: int,
           execute: Callable[[str, tuple[Any, ...]], None], mark: str) -> list[tuple[str, str]]:
    open_board = seed_tasks(store, tasks, name="claims")
    ran_a_while = seed_tasks(store, tasks, name="ran a while")
    finish_most(execute, mark, ran_a_while, STILL_OPEN)
    return [(f"{tasks:,} open tasks", open_board),
            (f"{tasks:,} tasks, {tasks - STILL_OPEN:,} done with results", ran_a_while)]


def base_source(rev: str, into: Path) -> Path:
    """src/ of `rev`, unpacked from this repository (nothing in the work tree is touched)."""
    done = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "src"], capture_output=True,
                          check=False)
    if done.returncode != 0:
        raise SystemExit(f"can't read {rev!r} from {ROOT} ({done.stderr.decode().strip()}); "
                         "nothing was measured")
    with tarfile.open(fileobj=BytesIO(done.stdout)) as archive:
        archive.extractall(into, filter="data")
    return into / "src"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one round instead of three")
    parser.add_argument("--base", default="3b077d8", help="the commit to compare with")
    parser.add_argument("--claim", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.claim:
        claim_once(*args.claim)
        return
    work = Path(tempfile.mkdtemp(prefix="ruflo-first-claim-"))
    try:
        measure(args.base, 1 if args.quick else 3, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure(base: str, rounds: int, work: Path) -> None:
    import sqlite3
    from datetime import timedelta

    from ruflo.model import utcnow
    from ruflo.store import open_store

    sources = {"base": base_source(base, work / "base"), "this tree": ROOT / "src"}
    at = (utcnow() + timedelta(minutes=5)).isoformat()
    load = os.getloadavg()[0]
    print(f"first claim on a hive of {TASKS:,} tasks: base {base} vs this tree, median of "
          f"{rounds} round(s); load average {load:.1f} on {os.cpu_count()} cores", flush=True)

    url = f"sqlite:///{work / 'ruflo.db'}"
    store = open_store(url)

    def on_sqlite(sql: str, params: tuple[Any, ...]) -> None:
        with sqlite3.connect(work / "ruflo.db") as db:
            db.execute(sql, params)

    print("SQLite")
    for label, hive_id in boards(store, TASKS, on_sqlite, "?"):
        compare(label, sources, url, hive_id, at, rounds)
    store.close()

    try:
        import psycopg

        schema = f"bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
    except Exception as error:  # any reason Postgres can't be used: say it and stop there
        print(f"Postgres: skipped ({str(error).strip().splitlines()[0]})")
        return
    pg_url = f"postgresql://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
    try:
        store = open_store(pg_url)

        def on_postgres(sql: str, params: tuple[Any, ...]) -> None:
            with psycopg.connect(pg_url, autocommit=True) as conn:
                conn.execute(sql, params)

        print("Postgres")
        for label, hive_id in boards(store, TASKS, on_postgres, "%s"):
            compare(label, sources, pg_url, hive_id, at, rounds)
        store.close()
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


if __name__ == "__main__":
    main()
