"""`ruflo worker` processes around one Postgres hive: four workers of eight agents finish 500
tasks exactly once although one is SIGKILLed mid-run; SIGTERM hands claims back; `--all-hives`
takes up hives posted later; SQLite and non-swarm hives are refused.

The work is simulated with the process adapter: each agent's command is `sleep 0.05` (no LLM, no
gateway), so the board, claims, leases, notifications and processes are all real."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from ruflo.engine.worker import hive_workers, watch_hive
from ruflo.model import HiveStatus, Mode, TaskState
from ruflo.store.sql import SqlStore
from waiting import until

from .harness import (
    RUFLO,
    claim_history,
    make_hive,
    start_worker,
    stop_all,
    wait_for,
    worker_env,
)

LEASE = 3.0


@pytest.mark.postgres
@pytest.mark.slow
def test_four_workers_complete_every_task_once_though_one_is_killed(
        pg_store: SqlStore, pg_schema_url: str, tmp_path: Path) -> None:
    hive = make_hive(pg_store, tmp_path / "ws", tasks=500, agents=32)
    env = worker_env(pg_schema_url, tmp_path / "data", lease_seconds=LEASE)
    args = ["--hive", hive.id, "--agents", "8", "--poll-seconds", "1"]
    workers = [start_worker(n, args, env, tmp_path / "logs") for n in range(4)]
    try:
        victim = workers[1]
        wait_for(lambda: len(pg_store.list_workers()) == 4, 120, "four workers registered",
                 workers)
        wait_for(lambda: all(a.worker_id for a in pg_store.list_agents(hive.id)), 60,
                 "every agent adopted", workers)
        victim_worker = pg_store.get_agent(f"{hive.id}-a08").worker_id
        victim_agents = {a.id for a in pg_store.list_agents(hive.id)
                         if a.worker_id == victim_worker}
        assert len(victim_agents) == 8
        # The 8 agents of a worker are split by the hive's roster order, so worker 1's pid
        # decides nothing: find the process hosting them by its log line.
        victim = next(w for w in workers if victim_worker in w.output)

        def victim_busy() -> bool:
            done = pg_store.count_tasks(hive.id)[TaskState.DONE]
            held = pg_store.list_tasks(hive.id, states=[TaskState.CLAIMED])
            return done >= 100 and sum(t.assignee in victim_agents for t in held) >= 2

        wait_for(victim_busy, 120, "100 tasks done and the victim holding claims", workers)
        victim.process.kill()
        killed_at = time.time()
        victim.process.wait(timeout=10)
        wait_for(lambda: pg_store.get_hive(hive.id).status is not HiveStatus.RUNNING, 180,
                 "the hive to end", workers)
        for worker in workers:
            if worker is not victim:
                assert worker.process.wait(timeout=30) == 0, worker.output[-3000:]
    finally:
        stop_all(workers)

    assert pg_store.get_hive(hive.id).status is HiveStatus.DONE
    events = pg_store.events(hive.id)
    done = Counter(e.task_id for e in events if e.kind == "task_done")
    assert len(done) == 500, "every task completed"
    assert set(done.values()) == {1}, "no task completed twice"
    assert not [e for e in events if e.kind == "task_failed"]

    claims = claim_history(events)
    assert not [c for c in claims if c.ended_by == "overlapped"], "a task claimed twice at once"
    assert not [c for c in claims if c.end is None], "a claim left open"
    by_agent: dict[str, list[tuple[int, int]]] = {}
    for claim in claims:
        assert claim.end is not None
        by_agent.setdefault(claim.agent_id, []).append((claim.start, claim.end))
    for agent, spans in by_agent.items():
        spans.sort()
        assert all(a[1] < b[0] for a, b in itertools.pairwise(spans)), \
            f"agent {agent} held two claims at once (hosted twice?)"

    # The claims the dead worker held when it died ended by lease expiry (nobody released
    # them), and other workers' agents completed those tasks afterwards.
    seq_ts = {e.seq: e.ts.timestamp() for e in events}
    held_at_death = [c for c in claims if c.agent_id in victim_agents and c.end is not None
                     and seq_ts[c.start] < killed_at < seq_ts[c.end] - 0.2]
    assert held_at_death, "the victim died holding claims"
    for claim in held_at_death:
        assert claim.ended_by == "lease_expired", claim
        finisher = next(c for c in claims if c.task_id == claim.task_id and
                        c.ended_by == "task_done")
        assert claim.end is not None
        assert finisher.start > claim.end
        assert finisher.agent_id not in victim_agents

    # Live workers let go of their agents and unregistered; the dead one is shown not alive.
    left = pg_store.list_workers()
    assert [w["id"] for w in left] == [victim_worker]
    shown = hive_workers(pg_store, hive.id, stale_after=LEASE)
    assert [(w["id"], w["alive"], len(w["agents"])) for w in shown] == [(victim_worker, False, 8)]


@pytest.mark.postgres
@pytest.mark.slow
def test_sigterm_hands_back_what_the_worker_holds(
        pg_store: SqlStore, pg_schema_url: str, tmp_path: Path) -> None:
    hive = make_hive(pg_store, tmp_path / "ws", tasks=5, agents=2, command=("sleep", "60"))
    env = worker_env(pg_schema_url, tmp_path / "data", lease_seconds=30)
    worker = start_worker(0, ["--hive", hive.id, "--agents", "2"], env, tmp_path / "logs")
    try:
        wait_for(lambda: len(pg_store.list_tasks(hive.id, states=[TaskState.CLAIMED])) == 2,
                 120, "two claims", [worker])
        held = {t.id: t.assignee for t in pg_store.list_tasks(hive.id,
                                                                states=[TaskState.CLAIMED])}
        worker.process.terminate()
        assert worker.process.wait(timeout=20) == 0, worker.output[-3000:]
    finally:
        stop_all([worker])
    assert pg_store.count_tasks(hive.id)[TaskState.OPEN] == 5
    released = {e.task_id: e.agent_id for e in pg_store.events(hive.id, kinds=["task_released"])}
    assert released == held, "every claim handed back at once, by its holder, not by lease"
    assert not pg_store.events(hive.id, kinds=["lease_expired"])
    assert pg_store.list_workers() == []
    assert all(a.worker_id is None for a in pg_store.list_agents(hive.id))
    assert pg_store.get_hive(hive.id).status is HiveStatus.RUNNING
    assert "handed back" in worker.output


@pytest.mark.postgres
@pytest.mark.slow
def test_all_hives_takes_up_hives_posted_later_and_a_watcher_follows_them(
        pg_store: SqlStore, pg_schema_url: str, tmp_path: Path) -> None:
    env = worker_env(pg_schema_url, tmp_path / "data", lease_seconds=LEASE)
    # A long safety-net poll: the new hive must be found through its notification.
    worker = start_worker(0, ["--all-hives", "--agents", "3", "--poll-seconds", "60"], env,
                          tmp_path / "logs")
    said: list[str] = []
    try:
        wait_for(lambda: len(pg_store.list_workers()) == 1, 120, "the worker registered",
                 [worker])
        first = make_hive(pg_store, tmp_path / "ws1", tasks=6, agents=2, hive_id="hive-1",
                          command=("true",))
        second = make_hive(pg_store, tmp_path / "ws2", tasks=6, agents=4, hive_id="hive-2",
                           command=("true",))

        async def watch() -> list[HiveStatus]:
            return [(await watch_hive(pg_store, h.id, pg_schema_url, say=said.append,
                                      lease_seconds=LEASE, poll_seconds=60)).status
                    for h in (first, second)]

        assert asyncio.run(asyncio.wait_for(watch(), 60)) == [HiveStatus.DONE] * 2
        assert worker.process.poll() is None, "--all-hives keeps running after a hive ends"
        # At most --agents per hive: the 4-agent hive ran on 3 of them.
        hosts = {e.agent_id for e in pg_store.events(second.id, kinds=["task_claimed"])}
        assert 1 <= len(hosts) <= 3
        worker.process.terminate()
        assert worker.process.wait(timeout=20) == 0, worker.output[-3000:]
    finally:
        stop_all([worker])
    assert pg_store.list_workers() == []


@pytest.mark.postgres
def test_watcher_says_when_no_worker_hosts_the_hive(pg_store: SqlStore, pg_schema_url: str,
                                                    tmp_path: Path) -> None:
    hive = make_hive(pg_store, tmp_path / "ws", tasks=1, agents=1)
    said: list[str] = []

    async def watch() -> HiveStatus:
        task = asyncio.create_task(watch_hive(pg_store, hive.id, pg_schema_url,
                                              say=said.append, poll_seconds=0.1))
        await until(lambda: said, what="the watcher said nothing")
        await asyncio.to_thread(pg_store.set_hive_status, hive.id, HiveStatus.CANCELLED)
        return (await asyncio.wait_for(task, 10)).status

    assert asyncio.run(watch()) is HiveStatus.CANCELLED
    assert len(said) == 1
    assert "no live worker" in said[0]
    assert hive.id in said[0]


def run_worker(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(RUFLO), "worker", *args], env=env, capture_output=True,
                          text=True, timeout=120)


def test_sqlite_store_is_refused(tmp_path: Path) -> None:
    env = worker_env("", tmp_path / "data", lease_seconds=LEASE)
    env.pop("DATABASE_URL")
    done = run_worker(["--hive", "anything", "--agents", "2"], env)
    assert done.returncode == 2
    assert "SQLite" in done.stderr
    assert "one machine" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "data" / "ruflo.db").exists(), "nothing was started"


def test_hive_or_all_hives_is_required(tmp_path: Path) -> None:
    env = worker_env("postgresql://nobody@127.0.0.1:1/none", tmp_path / "data",
                     lease_seconds=LEASE)
    for args in ([], ["--hive", "x", "--all-hives"]):
        done = run_worker(args, env)
        assert done.returncode == 2
        assert "--hive ID or --all-hives" in done.stderr


@pytest.mark.postgres
def test_round_robin_and_missing_hives_are_refused(pg_store: SqlStore, pg_schema_url: str,
                                                   tmp_path: Path) -> None:
    hive = make_hive(pg_store, tmp_path / "ws", tasks=2, agents=2)
    pg_store.update_hive(hive.id, mode=Mode.ROUND_ROBIN)
    env = worker_env(pg_schema_url, tmp_path / "data", lease_seconds=LEASE)
    done = run_worker(["--hive", hive.id], env)
    assert done.returncode == 2
    assert "round_robin" in done.stderr
    assert "one machine" in done.stderr
    assert pg_store.list_workers() == [], "a refused worker leaves no registration behind"
    missing = run_worker(["--hive", "no-such-hive"], env)
    assert missing.returncode == 2
    assert "no hive" in missing.stderr
