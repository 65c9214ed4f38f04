"""Benchmark of the distributed board (issue 11): claims per second with 1, 2, 4 and 8 `ruflo
worker` processes on Postgres (8 agents each) and with one process on SQLite, in one run, and the
scaling ratio 8 vs 1, in two sections:

- board-bound: a task completes the moment it is claimed, so this measures the board (claim,
  finish, events, notifications, the engines following them) and nothing else: the ceiling of
  one hive. On one small machine the workers and Postgres share its cores, so the ceiling is
  CPU: each line shows the workers' and the server's CPU per task.
- agent-bound: a task waits (0.5 s by default) before it completes, as an agent waits on its
  model; this is what adding workers is for, and where it should scale until the board-bound
  ceiling is reached.

Workers are started while the hive is paused (a cluster's workers are up before work arrives)
and the figures count from the resume; claims per second are claims / (last claim - first
claim) from the event log. Each Postgres run uses a fresh schema in database `test` on
127.0.0.1:5432. Per task also: write transactions (transaction ids handed out) and WAL flushes of
the whole server (so other activity on it shows up there too).

Usage: python bench/distributed.py [--tasks 2000] [--agents 8] [--work-ms 500] [--work-tasks 320]
(internally also: python bench/distributed.py --worker URL HIVE_ID AGENTS WORK_SECONDS)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from ruflo.agents import OutcomeKind, RunContext, TaskOutcome
from ruflo.engine.board_engine import BoardEngine, LiveParams
from ruflo.engine.control import pause_hive, resume_hive
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


class Waiting:
    """Completes every task after `seconds` of waiting (0: at once, the cheapest executor there
    is), as a real agent waits on its model: no CPU spent."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def run(self, task: Task, agent: Agent, hive: Hive, ctx: RunContext) -> TaskOutcome:
        if self.seconds:
            await asyncio.sleep(self.seconds)
        return TaskOutcome(OutcomeKind.COMPLETE, result="done")


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

def serve_worker(url: str, hive_id: str, agents: int, work: float) -> int:
    store = open_store(url)
    try:
        worker = Worker(store, url, WorkerParams(agents=agents, hive_id=hive_id,
                                                 lease_seconds=LEASE, poll_seconds=1.0),
                        executors=lambda _: Waiting(work))

        async def main() -> int:
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, worker.stop)
            return await worker.run()

        return asyncio.run(main())
    finally:
        store.close()


# -- the runs --------------------------------------------------------------------------------------

class Run:
    """One Postgres run's figures."""

    def __init__(self, rate: float, claims: int, cpu: float, server_cpu: float, writes: float,
                 flushes: float) -> None:
        self.rate, self.claims, self.cpu, self.server_cpu = rate, claims, cpu, server_cpu
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


def cpu_of(pids: list[int], *, reaped: bool = False) -> float:
    """CPU-seconds the running processes have used so far (from /proc); with `reaped`, also
    that of their children that have exited (Postgres: the backends of closed connections)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
            if reaped:
                total += int(fields[13]) + int(fields[14])  # cutime, cstime
    return total / os.sysconf("SC_CLK_TCK")


def postgres_pids() -> list[int]:
    """The local Postgres server's processes (postmaster, backends, WAL writer...)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError, PermissionError):
                if (entry / "comm").read_text().strip() == "postgres":
                    pids.append(int(entry.name))
    return pids


def postgres_run(processes: int, tasks: int, agents: int, work: float, scratch: Path) -> Run:
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = f"{PG_URL}?options=-csearch_path%3D{schema}{PG_OPTIONS}"
    store = open_store(url)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        hive = make_hive(store, scratch / schema, tasks, agents * processes)
        # The workers start (imports, connections, registration) while the hive is paused, as
        # a cluster's workers are up before work arrives; the figures count from the resume.
        pause_hive(store, hive.id, reason="the bench starts its workers")
        workers = [subprocess.Popen([sys.executable, __file__, "--worker", url, hive.id,
                                     str(agents), str(work)], stderr=subprocess.DEVNULL)
                   for _ in range(processes)]
        deadline = time.monotonic() + 120
        while len(store.list_workers(hive.id)) < processes:
            if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
                raise SystemExit(f"{processes} workers did not all start")
            time.sleep(0.05)
        pids = [w.pid for w in workers]
        cpu0, (xid0, sync0) = cpu_of(pids), server_counters()
        server0 = cpu_of(postgres_pids(), reaped=True)
        resume_hive(store, hive.id)
        deadline = time.monotonic() + 600
        while store.get_hive(hive.id).status is HiveStatus.RUNNING:
            if time.monotonic() > deadline or any(w.poll() not in (None, 0) for w in workers):
                raise SystemExit(f"{processes} workers did not finish the hive")
            time.sleep(0.2)
        cpu1, server1 = cpu_of(pids), cpu_of(postgres_pids(), reaped=True)
        for worker in workers:
            worker.wait(timeout=60)  # a one-hive worker exits when its hive ends
        # The counters' own transaction takes one id; pg_stat_wal lags up to a second.
        time.sleep(1.1)
        xid1, sync1 = server_counters()
        rate, claims = claims_per_second(store, hive.id)
        return Run(rate, claims, cpu1 - cpu0, server1 - server0, (xid1 - xid0 - 1) / tasks,
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
        engine = BoardEngine(store, hive.id, executors=lambda _: Waiting(0.0),
                            params=LiveParams(lease_seconds=LEASE, time_unit=TIME_UNIT,
                                              poll_seconds=1.0))
        final = asyncio.run(engine.run())
        if final.status is not HiveStatus.DONE:
            raise SystemExit(f"the SQLite hive ended {final.status.value}")
        return claims_per_second(store, hive.id)
    finally:
        store.close()


def scaling(title: str, tasks: int, agents: int, work: float, scratch: Path) -> float:
    """One section: the Postgres runs with 1, 2, 4 and 8 worker processes; the 8 vs 1 ratio."""
    print(f"## {title}: {tasks} tasks, {agents} agents per process", flush=True)
    results: dict[int, float] = {}
    for processes in PROCESSES:
        run = postgres_run(processes, tasks, agents, work, scratch)
        results[processes] = run.rate
        print(f"postgres  {processes} process{'es' if processes > 1 else '  '}: "
              f"{run.rate:8.1f} claims/s ({run.claims} claims, {processes * agents} agents; CPU "
              f"per task: workers {1000 * run.cpu / tasks:4.1f} ms, Postgres "
              f"{1000 * run.server_cpu / tasks:4.1f} ms; per task {run.writes:4.2f} write "
              f"transactions, {run.flushes:4.2f} WAL flushes)", flush=True)
    ratio = results[8] / results[1]
    print(f"scaling 8 vs 1 process on Postgres ({title.split(':')[0]}): {ratio:.2f}x", flush=True)
    return results[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=2000,
                        help="tasks of a board-bound run (default 2000)")
    parser.add_argument("--agents", type=int, default=8, help="agents per worker process")
    parser.add_argument("--work-ms", type=float, default=500.0,
                        help="how long each task of an agent-bound run waits (default 500)")
    parser.add_argument("--work-tasks", type=int, default=320,
                        help="tasks of an agent-bound run (default 320)")
    parser.add_argument("--worker", nargs=4, metavar=("URL", "HIVE", "AGENTS", "WORK"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--synchronous-commit", choices=("on", "off"), default="on",
                        help="Postgres synchronous_commit for the workers' sessions (off: a "
                             "commit does not wait for its WAL flush)")
    args = parser.parse_args()
    global PG_OPTIONS
    if args.synchronous_commit == "off":
        PG_OPTIONS = "%20-csynchronous_commit%3Doff"
    if args.worker:
        url, hive_id, agents, work = args.worker
        return serve_worker(url, hive_id, int(agents), float(work))

    print(f"# Claims per second, synchronous_commit={args.synchronous_commit} "
          f"(os.cpu_count()={os.cpu_count()}, load average "
          f"{' '.join(f'{n:.1f}' for n in os.getloadavg())}); workers are started while the "
          f"hive is paused and counted from its resume", flush=True)
    with tempfile.TemporaryDirectory(prefix="ruflo-bench-") as tmp:
        scratch = Path(tmp)
        rate, claims = sqlite_run(args.tasks, args.agents, scratch)
        print(f"sqlite    1 process : {rate:8.1f} claims/s ({claims} claims, board-bound)",
              flush=True)
        one = scaling("board-bound: a task completes the moment it is claimed", args.tasks,
                      args.agents, 0.0, scratch)
        scaling(f"agent-bound: a task waits {args.work_ms:g} ms, as an agent waits on its model",
                args.work_tasks, args.agents, args.work_ms / 1000, scratch)
    print(f"Postgres 1 process vs SQLite 1 process (board-bound): {one / rate:.2f}x "
          f"(load average at the end {' '.join(f'{n:.1f}' for n in os.getloadavg())})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
