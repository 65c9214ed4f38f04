"""A hive split across two `ruflo worker` processes on Postgres is one trace in Phoenix: both
workers join the trace context the hive keeps in its config."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from ruflo.engine.start import HiveSpec, create_hive
from ruflo.gateway.scripted import ScriptedGateway
from ruflo.model import Agent, HiveStatus, Mode, Task
from ruflo.store.sql import SqlStore
from worker.harness import start_worker, stop_all, wait_for, worker_env

from .scripted_hive import RULES
from .test_traces import phoenix, spans_of  # noqa: F401 (the module-scoped fixture)

pytestmark = [pytest.mark.postgres, pytest.mark.integration, pytest.mark.slow]


def test_two_workers_one_trace(pg_store: SqlStore, pg_schema_url: str, phoenix: str,  # noqa: F811
                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every first turn waits at the gate until both workers hold an agent: both do work.
    rules = [{**RULES[0], "hold": "go"}, RULES[1]]
    gateway = ScriptedGateway({"keys": ["k"], "cost": 0.0001, "rules": rules})
    gateway.start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", phoenix)
    from ruflo import telemetry

    telemetry.reset()
    try:
        spec = HiveSpec(objective="split", mode=Mode.SWARM, name="split",
                        agents=[Agent(id=f"w{n}", hive_id="", name=f"agent-{n}",
                                      skills=("py",)) for n in range(2)],
                        tasks=[Task(id=f"s{n}", hive_id="", title=f"task {n}", skills=("py",))
                               for n in range(4)],
                        workspace=str(tmp_path / "ws"), config={"time_unit": 0.02}, id="split")
        hive = create_hive(pg_store, spec)
        telemetry.flush()
        env = worker_env(pg_schema_url, tmp_path / "data", lease_seconds=5)
        env.update(OPENAI_BASE_URL=gateway.base_url, OPENAI_API_KEY="k", RUFLO_SANDBOX="off",
                   OTEL_EXPORTER_OTLP_ENDPOINT=phoenix, OTEL_SERVICE_NAME="ruflo-worker")
        args = ["--hive", hive.id, "--agents", "1", "--poll-seconds", "1"]
        workers = [start_worker(n, args, env, tmp_path / "logs") for n in range(2)]
        try:
            wait_for(lambda: all(a.worker_id for a in pg_store.list_agents(hive.id)), 120,
                     "both agents adopted", workers)
            gateway.open_gate("go")
            wait_for(lambda: pg_store.get_hive(hive.id).status is not HiveStatus.RUNNING, 120,
                     "the hive to end", workers)
            for worker in workers:
                assert worker.process.wait(timeout=60) == 0, worker.output[-3000:]
        finally:
            stop_all(workers)
    finally:
        gateway.stop()
        telemetry.reset()
    assert pg_store.get_hive(hive.id).status is HiveStatus.DONE
    trace_id = hive.config["traceparent"].split("-")[1]
    attempts: list[dict[str, Any]] = []
    spans: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    while len(attempts) < 4 and time.monotonic() < deadline:
        spans = spans_of(phoenix, trace_id)
        attempts = [s for s in spans if s["name"].startswith("attempt ")]
        time.sleep(0.2)
    assert len(attempts) == 4
    hive_span = hive.config["traceparent"].split("-")[2]
    assert all(a["parent_id"] == hive_span for a in attempts)
    # One agent per worker (--agents 1): two agents' attempts are two processes' spans.
    assert {a["attributes"]["ruflo.agent.id"] for a in attempts} == {"w0", "w1"}
    calls = [s for s in spans if s["attributes"].get("gen_ai.operation.name") == "chat"]
    ledger = pg_store.ledger(hive_id=hive.id)
    assert sorted((c["attributes"]["gen_ai.usage.input_tokens"],
                   c["attributes"]["gen_ai.usage.output_tokens"]) for c in calls) == sorted(
        (e.prompt_tokens, e.completion_tokens) for e in ledger)
