"""A `ruflo worker` process (a real subprocess) is the process driving its hive, so it is the one
that looks for a gateway that stopped answering and resumes the hive when it answers again; a
watcher in the terminal waits through the outage. Built-in LLM agents against a ScriptedGateway
over real HTTP, on the shared Postgres."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent_scripts import work_rules
from ruflo.engine.control import GATEWAY_UNREACHABLE
from ruflo.engine.worker import watch_hive
from ruflo.gateway.scripted import ScriptedGateway
from ruflo.model import Agent, Hive, HiveStatus, Mode, Task, TaskState
from ruflo.store.sql import SqlStore

from .harness import start_worker, stop_all, wait_for, worker_env

KEY = "sk-worker-outage"


@pytest.mark.postgres
@pytest.mark.slow
def test_the_worker_looks_for_the_gateway_and_resumes_its_hive(
        pg_store: SqlStore, pg_schema_url: str, gateway_server: ScriptedGateway,
        tmp_path: Path) -> None:
    names = ["t1", "t2", "t3"]
    for name in names:
        gateway_server.add_rules(*work_rules(name))
    workspace = tmp_path / "ws"
    workspace.mkdir()
    hive = pg_store.create_hive(
        Hive(id="hive-o", name="outage", mode=Mode.SWARM, objective="write the files",
             workspace=str(workspace), config={"time_unit": 0.05}),
        agents=[Agent(id=f"hive-o-a{n}", hive_id="hive-o", name=f"agent-{n}") for n in range(2)],
        tasks=[Task(id=f"hive-o-{n}", hive_id="hive-o", title=n,
                    verify=f"grep -qx {n} {n}.txt") for n in names])
    gateway_server.set_fault("unavailable")
    env = worker_env(pg_schema_url, tmp_path / "data", lease_seconds=3.0)
    env.update({"OPENAI_BASE_URL": gateway_server.base_url, "OPENAI_API_KEY": KEY,
                "RUFLO_GATEWAY_PROBE_SECONDS": "0.2"})
    worker = start_worker(0, ["--hive", hive.id, "--agents", "2", "--poll-seconds", "1"], env,
                          tmp_path / "logs")
    said: list[str] = []
    try:
        wait_for(lambda: pg_store.get_hive(hive.id).pause_reason == GATEWAY_UNREACHABLE, 120,
                 "the hive paused for the gateway", [worker])
        looked = gateway_server.models_count
        wait_for(lambda: gateway_server.models_count >= looked + 2, 30,
                 "the worker looked at the gateway again", [worker])
        gateway_server.clear_fault()
        final = asyncio.run(asyncio.wait_for(
            watch_hive(pg_store, hive.id, pg_schema_url, say=said.append, lease_seconds=3.0,
                       poll_seconds=0.5), 120))
        assert final.status is HiveStatus.DONE, (final.pause_reason, worker.output[-3000:])
        assert worker.process.wait(timeout=30) == 0, worker.output[-3000:]
    finally:
        stop_all([worker])

    tasks = pg_store.list_tasks(hive.id)
    assert all(t.state is TaskState.DONE and t.verified for t in tasks)
    assert not pg_store.events(hive.id, kinds=["task_failed"])
    assert len(pg_store.events(hive.id, kinds=["gateway_back"])) >= 1
