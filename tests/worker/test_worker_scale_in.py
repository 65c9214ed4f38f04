"""Scale-in as Kubernetes does it, on the worker the manifests define: `ruflo worker` with the
rendered Deployment's own arguments, on a real Postgres, hosting two hives whose agents hold
claims with commands that ignore SIGTERM; then what the kubelet does on scale-down: SIGTERM, and
SIGKILL if the process is still there after terminationGracePeriodSeconds. The worker must be
gone before that, every claim handed back by its holder (task_released, the task open again at
once), none left to lease expiry."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from ruflo.model import HiveStatus, TaskState
from ruflo.store.sql import SqlStore

from .harness import make_hive, start_worker, stop_all, wait_for, worker_env

WORKER_MANIFEST = (Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "overlays" /
                   "workers" / "deployment-worker.yaml")
AGENT_GRACE = 2.0
"""The agents' `grace`: their commands ignore SIGTERM, so each is SIGKILLed after this."""


def worker_deployment() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(WORKER_MANIFEST.read_text())
    assert document["kind"] == "Deployment"
    return document


@pytest.mark.postgres
@pytest.mark.slow
def test_scale_in_hands_every_claim_back_within_the_grace_period(
        pg_store: SqlStore, pg_schema_url: str, tmp_path: Path) -> None:
    spec = worker_deployment()["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    args = container["args"]
    assert args[:2] == ["worker", "--all-hives"]
    grace_period = spec["terminationGracePeriodSeconds"]
    assert grace_period > AGENT_GRACE

    stubborn = ("sh", "-c", "trap '' TERM; sleep 600")
    hives = [make_hive(pg_store, tmp_path / f"ws-{n}", tasks=4, agents=2, command=stubborn,
                       hive_id=f"hive-{n}") for n in range(2)]
    for hive in hives:
        for agent in pg_store.list_agents(hive.id):
            config = dict(agent.adapter_config, grace=AGENT_GRACE)
            pg_store.update_agent(agent.id, adapter_config=config)
    env = worker_env(pg_schema_url, tmp_path / "data", lease_seconds=600)
    worker = start_worker(0, args[1:], env, tmp_path / "logs")
    try:
        def holding() -> bool:
            return all(len(pg_store.list_tasks(h.id, states=[TaskState.CLAIMED])) == 2
                       for h in hives)

        wait_for(holding, 120, "two claims in each hive", [worker])
        held = {t.id: t.assignee for h in hives
                for t in pg_store.list_tasks(h.id, states=[TaskState.CLAIMED])}
        assert len(held) == 4

        # The kubelet: SIGTERM, then SIGKILL once the grace period is over.
        worker.process.send_signal(signal.SIGTERM)
        try:
            code = worker.process.wait(timeout=grace_period)
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()
            pytest.fail(f"the worker outlived terminationGracePeriodSeconds ({grace_period} s) "
                        f"and was SIGKILLed:\n{worker.output[-3000:]}")
        assert code == 0, worker.output[-3000:]
    finally:
        stop_all([worker])

    released = {e.task_id: e.agent_id for h in hives
                for e in pg_store.events(h.id, kinds=["task_released"])}
    assert released == held, "every claim handed back by its holder"
    for hive in hives:
        assert not pg_store.events(hive.id, kinds=["lease_expired"])
        assert pg_store.count_tasks(hive.id)[TaskState.OPEN] == 4
        assert all(a.worker_id is None for a in pg_store.list_agents(hive.id))
        assert pg_store.get_hive(hive.id).status is HiveStatus.RUNNING
    assert pg_store.list_workers() == []


@pytest.mark.postgres
@pytest.mark.slow
def test_a_claim_the_engine_lost_track_of_is_handed_back_too(
        pg_store: SqlStore, pg_schema_url: str, tmp_path: Path) -> None:
    """A claim can commit in the store just as the engine stops, before its attempt begins
    (seen under load: the engine released the attempt in flight and not that one). Made here on
    purpose, straight in the store for an agent the worker hosts: on SIGTERM the worker releases
    it with the agent instead of leaving it to the lease."""
    hive = make_hive(pg_store, tmp_path / "ws", tasks=4, agents=2, command=("sleep", "600"))
    env = worker_env(pg_schema_url, tmp_path / "data", lease_seconds=600)
    args = worker_deployment()["spec"]["template"]["spec"]["containers"][0]["args"]
    worker = start_worker(0, args[1:], env, tmp_path / "logs")
    try:
        wait_for(lambda: len(pg_store.list_tasks(hive.id, states=[TaskState.CLAIMED])) == 2,
                 120, "two claims", [worker])
        agent = f"{hive.id}-a00"
        stray = pg_store.claim_task(hive.id, agent, lease_seconds=600)
        assert stray is not None
        worker.process.send_signal(signal.SIGTERM)
        assert worker.process.wait(timeout=60) == 0, worker.output[-3000:]
    finally:
        stop_all([worker])
    assert pg_store.count_tasks(hive.id)[TaskState.OPEN] == 4
    released = [e for e in pg_store.events(hive.id, kinds=["task_released"])
                if e.task_id == stray.id]
    assert [(e.agent_id, e.data["reason"]) for e in released] == [(agent, "the worker stopped")]
