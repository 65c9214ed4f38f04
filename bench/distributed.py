"""Benchmark of the distributed board (issue 11): claims per second with 1, 2, 4 and 8 `ruflo
worker` processes on Postgres (8 agents each) and with one process on SQLite, in one run, and the
scaling ratio 8 vs 1.

The executor is trivial (a task completes the moment it is claimed), so this measures the board
(claim, finish, events, notifications, the engines following them), not an LLM. Claims per second
are taken from the event log: claims / (last claim - first claim), so process start-up is not
counted. Each Postgres run uses a fresh schema in database `test` on 127.0.0.1:5432. Beside each
figure: the worker processes' CPU-seconds, and per task the write transactions (transaction ids
handed out) and WAL flushes of the whole server (so other activity on it shows up there too).

Usage: python bench/distributed.py [--tasks 2000] [--agents 8]
(internally also: python bench/distributed.py --worker URL HIVE_ID AGENTS)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from ruflo.agents import OutcomeKind, RunContext, TaskOutcome
from ruflo.engine.live import LiveEngine, LiveParams
from ruflo.engine.worker import Worker, WorkerParams
from ruflo.model import AdapterKind, Agent, Hive, HiveStatus, Mode, Task
from ruflo.store import open_store
from ruflo.store.sql import SqlStore

PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=3"
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
PROCESSES = (1, 2, 4, 8)
TIME_UNIT = 0.01
PG_OPTIONS = ""
"""Extra server options for the workers' sessions (--synchronous-commit off adds one)."""
LEASE = 30.0


class Instant:
    """Completes every task at once: the cheapest executor there is."""

    async def run(self, task: Task, agent: Agent, hive: Hive, ctx: RunContext) -> TaskOutcome:
        return TaskOutcome(OutcomeKind.COMPLETE, result="done")


def instant(_: Agent) -> Instant:
    return Instant()


def make_hive(store: SqlStore, workspace: Path, tasks: int, agents: int) -> Hive:
    hive_id = f"bench-{uuid.uuid4().hex[:8]}"
    hive = Hive(id=hive_id, name="bench", mode=Mode.SWARM, objective="claims",
                workspace=str(workspace), config={"time_unit": TIME_UNIT, "seed": 1})
    crew = [Agent(id=f"{hive_id}-a{n}", hive_id=hive_id, name=f"a{n}", skills=("x",),
                  adapter=AdapterKind.PROCESS, adapter_config={"command": ["true"]})
            for n in range(agents)]
    board = [Task(id=f"{hive_id}-t{n}", hive_id=hive_id, title=f"t{n}", skills=("x",))
             for n in range(tasks)]
    return store.create_hive(hive, agents=crew, tasks=board)


def claims_per_second(store: SqlStore, hive_id: str) -> tuple[float, int]:
    claims = store.events(hive_id, kinds=["task_claimed"])
    span = (claims[-1].ts - claims[0].ts).total_seconds() if len(claims) > 1 else 0.0
    return (len(claims) / span if span > 0 else float("nan")), len(claims)


# -- one worker process ----------------------------------------------------------------------------

def serve_worker(url: str, hive_id: str, agents: int) -> int:
    store = open_store(url)
    try:
        worker = Worker(store, url, WorkerParams(agents=agents, hive_id=hive_id,
                                                 lease_seconds=LEASE, poll_seconds=1.0),
                        executors=instant)

        async def main() -> int:
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, worker.stop)
            return await worker.run()

        return asyncio.run(main())
    finally:
        store.close()


# -- the runs --------------------------------------------------------------------------------------

class Run:
    """One Postgres run's figures."""

    def __init__(self, rate: float, claims: int, cpu: float, writes: float,
                 flushes: float) -> None:
        self.rate, self.claims, self.cpu = rate, claims, cpu
        self.writes, self.flushes = writes, flushes


def server_counters() -> tuple[int, int]:
    """Transaction ids handed out so far (one per writing transaction) and WAL flushes."""
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        xid = conn.execute("SELECT txid_current()").fetchone()
        syncs = conn.execute("SELECT wal_sync FROM pg_stat_wal").fetchone()
    assert xid is not None
    assert syncs is not None
    return int(xid[0]), int(syncs[0])


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def postgres_run(processes: int, tasks: int, agents: int, scratch: Path) -> Run:
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = f"{PG_URL}?options=-csearch_path%3D{schema}{PG_OPTIONS}"
    store = open_store(url)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        hive = make_hive(store, scratch / schema, tasks, agents * processes)
        cpu0, (xid0, sync0) = children_cpu(), server_counters()
        workers = [subprocess.Popen([sys.executable, __file__, "--worker", url, hive.id,
                                     str(agents)], stderr=subprocess.DEVNULL)
                   for _ in range(processes)]
        deadline = time.monotonic() + 600
        while store.get_hive(hive.id).status is HiveStatus.RUNNING:
            if time.monotonic() > deadline or any(w.poll() not in (None, 0) for w in workers):
                raise SystemExit(f"{processes} workers did not finish the hive")
            time.sleep(0.2)
        for worker in workers:
            worker.wait(timeout=60)  # a one-hive worker exits when its hive ends
        # The counters' own transaction takes one id; pg_stat_wal lags up to a second.
        time.sleep(1.1)
        xid1, sync1 = server_counters()
        rate, claims = claims_per_second(store, hive.id)
        return Run(rate, claims, children_cpu() - cpu0, (xid1 - xid0 - 1) / tasks,
                   (sync1 - sync0) / tasks)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.terminate()
        for worker in workers:
            worker.wait(timeout=30)
        store.close()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def sqlite_run(tasks: int, agents: int, scratch: Path) -> tuple[float, int]:
    store = open_store(f"sqlite:///{scratch / 'sqlite' / 'ruflo.db'}")
    try:
        hive = make_hive(store, scratch / "sqlite-ws", tasks, agents)
        engine = LiveEngine(store, hive.id, executors=instant,
                            params=LiveParams(lease_seconds=LEASE, time_unit=TIME_UNIT,
                                              poll_seconds=1.0))
        final = asyncio.run(engine.run())
        if final.status is not HiveStatus.DONE:
            raise SystemExit(f"the SQLite hive ended {final.status.value}")
        return claims_per_second(store, hive.id)
    finally:
        store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--agents", type=int, default=8, help="agents per worker process")
    parser.add_argument("--worker", nargs=3, metavar=("URL", "HIVE", "AGENTS"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--synchronous-commit", choices=("on", "off"), default="on",
                        help="Postgres synchronous_commit for the workers' sessions (off: a "
                             "commit does not wait for its WAL flush)")
    args = parser.parse_args()
    global PG_OPTIONS
    if args.synchronous_commit == "off":
        PG_OPTIONS = "%20-csynchronous_commit%3Doff"
    if args.worker:
        url, hive_id, agents = args.worker
        return serve_worker(url, hive_id, int(agents))

    print(f"# Claims per second: {args.tasks} tasks, {args.agents} agents per process, "
          f"trivial executor, "
          f"synchronous_commit={args.synchronous_commit} (os.cpu_count()={os.cpu_count()}, "
          f"load average {' '.join(f'{n:.1f}' for n in os.getloadavg())})", flush=True)
    with tempfile.TemporaryDirectory(prefix="ruflo-bench-") as tmp:
        scratch = Path(tmp)
        rate, claims = sqlite_run(args.tasks, args.agents, scratch)
        print(f"sqlite    1 process : {rate:8.1f} claims/s ({claims} claims)", flush=True)
        results: dict[int, float] = {}
        for processes in PROCESSES:
            run = postgres_run(processes, args.tasks, args.agents, scratch)
            results[processes] = run.rate
            print(f"postgres  {processes} process{'es' if processes > 1 else '  '}: "
                  f"{run.rate:8.1f} claims/s ({run.claims} claims, "
                  f"{processes * args.agents} agents; workers {run.cpu:5.1f} CPU-s; per task "
                  f"{run.writes:4.2f} write transactions, {run.flushes:4.2f} WAL flushes)",
                  flush=True)
    print(f"scaling 8 vs 1 process on Postgres: {results[8] / results[1]:.2f}x; "
          f"Postgres 1 process vs SQLite 1 process: {results[1] / rate:.2f}x "
          f"(load average at the end {' '.join(f'{n:.1f}' for n in os.getloadavg())})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
