"""Two real `ruflo serve` processes on one store (SQLite and Postgres): exactly one drives a hive.
The second sees the first's live driver lease, leaves the hive alone and says so in one line, so
no claim is released and no task runs twice; when the first is SIGKILLed, the second takes the
hive over once the lease has run out and finishes it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent_scripts import work_rules
from ruflo.engine.driving import DRIVER_LEASE_SECONDS
from ruflo.gateway.scripted import ScriptedGateway
from ruflo.model import Agent, Hive, HiveStatus, Mode, Task, TaskState
from ruflo.store import open_store
from ruflo.store.sql import SqlStore
from waiting import wait_until

RUFLO = [sys.executable, "-c", "from ruflo.cli import main; main()"]
KEY = "sk-two-servers"
TASKS = 16


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], bool], seconds: float, what: str,
             logs: tuple[Path, ...] = ()) -> None:
    """`waiting.wait_until`, failing with the servers' logs."""
    wait_until(check, within=seconds, what=what, explain=lambda: "\n".join(
        f"--- {log.name}\n{log.read_text(errors='replace')[-4000:]}"
        for log in logs if log.exists()))


def serve(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    with log.open("w") as out:
        process = subprocess.Popen([*RUFLO, "serve", "--port", str(port)], env=env,
                                   stdout=out, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        assert process.poll() is None, log.read_text()
        try:
            return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(healthy, 90, f"ruflo serve on {port}", (log,))
    return process, base


def make_hive(store: SqlStore, workspace: Path) -> Hive:
    """16 tasks, two agents, each attempt a second long: the run outlasts the second's start."""
    hive = Hive(id="hive-two", name="two servers", mode=Mode.SWARM, objective="write the files",
                workspace=str(workspace), config={"time_unit": 0.05, "lease_seconds": 5.0})
    crew = [Agent(id=f"hive-two-a{i}", hive_id=hive.id, name=f"agent-{i}") for i in range(2)]
    tasks = [Task(id=f"hive-two-t{n:02d}", hive_id=hive.id, title=f"t{n:02d}",
                  verify=f"grep -qx t{n:02d} t{n:02d}.txt") for n in range(TASKS)]
    return store.create_hive(hive, agents=crew, tasks=tasks)


def write_calls(gateway: ScriptedGateway) -> Counter[str]:
    """Gateway calls that start an attempt (turn 1 writes the task's file), per task title."""
    return Counter(str(r["rule"]).removesuffix("-write") for r in list(gateway.requests)
                   if str(r.get("rule") or "").endswith("-write"))


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_two_servers_on_one_store_drive_a_hive_once(kind: str, tmp_path: Path,
                                                    request: pytest.FixtureRequest) -> None:
    data = tmp_path / "data"
    url = (f"sqlite:///{data / 'ruflo.db'}" if kind == "sqlite"
           else str(request.getfixturevalue("pg_schema_url")))
    store = open_store(url)
    gateway = ScriptedGateway({"keys": [KEY], "cost": 0.0001})
    for n in range(TASKS):
        gateway.add_rules(*work_rules(f"t{n:02d}", delay=1.0))
    gateway_url = gateway.start()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RUFLO_", "OPENAI_", "LITELLM_", "DATABASE_URL", "TASK_MODEL"))}
    env.update(RUFLO_DATA_DIR=str(data), OPENAI_BASE_URL=gateway_url, OPENAI_API_KEY=KEY,
               RUFLO_CONFIG="", XDG_CONFIG_HOME=str(tmp_path / "config"))
    if kind == "postgres":
        env["DATABASE_URL"] = url
    logs = (tmp_path / "first.log", tmp_path / "second.log")
    servers: list[subprocess.Popen[str]] = []
    try:
        hive = make_hive(store, tmp_path / "ws")
        first, _ = serve(env, logs[0])
        servers.append(first)
        wait_for(lambda: store.hive_driver(hive.id) is not None, 30, "the first to drive", logs)
        driver = store.hive_driver(hive.id)
        assert driver is not None
        assert driver.pid == first.pid

        second, second_url = serve(env, logs[1])
        servers.append(second)
        line = f"hive {hive.id} is driven by {driver.host}:{first.pid} (lease until "
        wait_for(lambda: line in logs[1].read_text(), 30, "the second's line", logs)
        assert "this server leaves it alone" in logs[1].read_text()
        shown = httpx.get(f"{second_url}/api/v2/hives/{hive.id}", timeout=10)
        assert shown.status_code == 200, "the second still shows the hive"

        # Both run side by side for a while: nothing is released, no task is tried twice.
        wait_for(lambda: store.count_tasks(hive.id).get(TaskState.DONE, 0) >= 6, 120,
                 "six tasks done", logs)
        assert store.get_hive(hive.id).status is HiveStatus.RUNNING, "slow enough to overlap"
        assert not store.events(hive.id, kinds=["task_released", "lease_expired"])
        assert max(t.attempts for t in store.list_tasks(hive.id)) == 1
        assert max(write_calls(gateway).values()) == 1
        assert store.hive_driver(hive.id).pid == first.pid  # type: ignore[union-attr]

        # The first dies without a word; the second takes over after the lease and finishes.
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        in_flight = {t.title for t in store.list_tasks(hive.id, states=[TaskState.CLAIMED])}
        wait_for(lambda: getattr(store.hive_driver(hive.id), "pid", None) == second.pid,
                 DRIVER_LEASE_SECONDS + 30, "the second to take over", logs)
        wait_for(lambda: store.get_hive(hive.id).status is HiveStatus.DONE, 120,
                 "the hive to finish", logs)
        done = Counter(e.task_id for e in store.events(hive.id, kinds=["task_done"]))
        assert sorted(done) == [t.id for t in store.list_tasks(hive.id)]
        assert set(done.values()) == {1}, "each task done exactly once"
        calls = write_calls(gateway)
        assert set(calls) == {f"t{n:02d}" for n in range(TASKS)}
        twice = {title for title, count in calls.items() if count > 1}
        assert twice <= in_flight, "only what the killed server held in flight ran again"
        assert max(calls.values()) <= 2
        said = logs[1].read_text()
        assert "its driver's lease ran out; this server takes it over" in said
        assert said.count("leaves it alone") == 1, "said once, not at every look"
        assert "Traceback" not in said
    finally:
        for server in servers:
            if server.poll() is None:
                server.send_signal(signal.SIGTERM)
                try:
                    server.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()
        gateway.stop()
        store.close()
    assert store_after(url, hive.id) is None, "the second let the lease go as the hive ended"


def store_after(url: str, hive_id: str) -> Any:
    store = open_store(url)
    try:
        return store.hive_driver(hive_id)
    finally:
        store.close()
