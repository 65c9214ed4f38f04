"""Helpers for the worker tests: a swarm hive of process agents on a shared Postgres, `ruflo
worker` processes started as real subprocesses, and the claim history rebuilt from events."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ruflo.model import AdapterKind, Agent, Event, Hive, Mode, Task
from ruflo.store.sql import SqlStore
from waiting import wait_until

RUFLO = Path(sys.executable).parent / "ruflo"


def make_hive(store: SqlStore, workspace: Path, *, tasks: int, agents: int,
              command: Sequence[str] = ("sleep", "0.05"), hive_id: str = "hive-d",
              time_unit: float = 0.02) -> Hive:
    """A swarm hive whose agents' work is a cheap process command: the board, the claims and
    the leases are real; the work costs no LLM call."""
    workspace.mkdir(parents=True, exist_ok=True)
    hive = Hive(id=hive_id, name="distributed", mode=Mode.SWARM, objective="many small tasks",
                workspace=str(workspace), config={"time_unit": time_unit, "seed": 7})
    crew = [Agent(id=f"{hive_id}-a{n:02d}", hive_id=hive_id, name=f"agent-{n:02d}",
                  skills=("chores",), adapter=AdapterKind.PROCESS,
                  adapter_config={"command": list(command), "timeout": 30})
            for n in range(agents)]
    board = [Task(id=f"{hive_id}-t{n:04d}", hive_id=hive_id, title=f"chore {n}",
                  skills=("chores",)) for n in range(tasks)]
    return store.create_hive(hive, agents=crew, tasks=board)


def worker_env(database_url: str, data_dir: Path, *, lease_seconds: float) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENAI_", "LITELLM_", "RUFLO_", "DATABASE_URL"))}
    env.update({"DATABASE_URL": database_url, "RUFLO_DATA_DIR": str(data_dir),
                "RUFLO_LEASE_SECONDS": str(lease_seconds),
                "XDG_CONFIG_HOME": str(data_dir / "config")})
    return env


@dataclass
class WorkerProcess:
    number: int
    process: subprocess.Popen[str]
    log: Path

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_worker(number: int, args: Sequence[str], env: dict[str, str],
                 logs: Path) -> WorkerProcess:
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"worker-{number}.log"
    with log.open("w") as out:
        process = subprocess.Popen([str(RUFLO), "worker", *args], env=env, stdout=out,
                                   stderr=subprocess.STDOUT, text=True)
    return WorkerProcess(number, process, log)


def wait_for(condition: Callable[[], bool], timeout: float, what: str,
             workers: Sequence[WorkerProcess] = ()) -> None:
    """`waiting.wait_until`, failing with the workers' logs."""
    wait_until(condition, within=timeout, what=what, explain=lambda: "\n".join(
        f"--- worker {w.number} (rc={w.process.poll()})\n{w.output[-3000:]}" for w in workers))


def stop_all(workers: Sequence[WorkerProcess]) -> None:
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()


@dataclass(frozen=True)
class Claim:
    task_id: str
    agent_id: str
    start: int
    """Seq of the task_claimed event."""
    end: int | None
    """Seq of the event that ended it (done, failed, released, lease expired); None if open."""
    ended_by: str | None


def claim_history(events: Sequence[Event]) -> list[Claim]:
    """Every claim interval, rebuilt from the event log alone. A claim starts at task_claimed and
    ends at the first task_done/task_failed/task_released/lease_expired/task_cancelled of that
    task. A claim event on a task that is already claimed is recorded as an overlap (end=start)
    so the check below catches it."""
    open_claims: dict[str, tuple[str, int]] = {}
    claims: list[Claim] = []
    overlaps: list[Claim] = []
    for event in events:
        task_id = event.task_id
        if task_id is None:
            continue
        if event.kind == "task_claimed":
            assert event.agent_id is not None
            if task_id in open_claims:
                holder, start = open_claims[task_id]
                overlaps.append(Claim(task_id, holder, start, None, "overlapped"))
            open_claims[task_id] = (event.agent_id, event.seq)
        elif event.kind in ("task_done", "task_failed", "task_released", "lease_expired",
                            "task_cancelled") and task_id in open_claims:
            holder, start = open_claims.pop(task_id)
            claims.append(Claim(task_id, holder, start, event.seq, event.kind))
    claims += [Claim(t, a, s, None, None) for t, (a, s) in open_claims.items()]
    return claims + overlaps
