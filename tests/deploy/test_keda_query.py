"""The KEDA trigger's SQL (components/keda-workers/scaledobject.yaml) run on a real Postgres store
made by ruflo: it returns the work of the busiest running swarm hive that workers can host
(ready or claimed tasks, capped by the hive's roster of hosted agents), and KEDA's arithmetic on
it gives the workers that hive needs."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_files import K8S

from ruflo.model import AdapterKind, Agent, Hive, HiveStatus, Mode, Task
from ruflo.store import open_store
from ruflo.store.sql import SqlStore

pytestmark = pytest.mark.postgres

SCALED_OBJECT = K8S / "components" / "keda-workers" / "scaledobject.yaml"
WORKER = K8S / "overlays" / "workers" / "deployment-worker.yaml"


def trigger() -> dict[str, Any]:
    document = yaml.safe_load(SCALED_OBJECT.read_text())
    (found,) = document["spec"]["triggers"]
    assert found["type"] == "postgresql"
    metadata: dict[str, Any] = found["metadata"]
    return metadata


@pytest.fixture
def store(pg_schema_url: str) -> Iterator[SqlStore]:
    opened = open_store(pg_schema_url)
    assert isinstance(opened, SqlStore)
    yield opened
    opened.close()


def run_query(url: str) -> float:
    """What KEDA reads: the query's one value, on a plain libpq connection."""
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn:
        row = conn.execute(trigger()["query"]).fetchone()
    assert row is not None
    return float(row[0])


def hive(store: SqlStore, hive_id: str, *, tasks: int, agents: int, mode: Mode = Mode.SWARM,
         external: int = 0, workspace: Path) -> Hive:
    crew = [Agent(id=f"{hive_id}-a{n}", hive_id=hive_id, name=f"a{n}", skills=("x",),
                  adapter=AdapterKind.PROCESS, adapter_config={"command": ["true"]})
            for n in range(agents)]
    crew += [Agent(id=f"{hive_id}-e{n}", hive_id=hive_id, name=f"e{n}", skills=("x",),
                   adapter=AdapterKind.PROCESS, adapter_config={"via": "rest"})
             for n in range(external)]
    board = [Task(id=f"{hive_id}-t{n}", hive_id=hive_id, title=f"t{n}", skills=("x",))
             for n in range(tasks)]
    workspace.mkdir(parents=True, exist_ok=True)
    return store.create_hive(Hive(id=hive_id, name=hive_id, mode=mode, objective="o",
                                  workspace=str(workspace)), agents=crew, tasks=board)


def test_the_query_counts_what_workers_can_host(store: SqlStore, pg_schema_url: str,
                                                tmp_path: Path) -> None:
    assert run_query(pg_schema_url) == 0, "an empty board needs no worker"
    # A small hive: one task claimed, one ready, one waiting on a dependency.
    small = hive(store, "small", tasks=2, agents=8, workspace=tmp_path / "small")
    store.post_tasks(small.id, [Task(id="small-later", hive_id=small.id, title="later",
                                     skills=("x",), depends_on=("small-t0",))])
    assert store.claim_task(small.id, "small-a0", lease_seconds=60, task_id="small-t1")
    assert run_query(pg_schema_url) == 2, "claimed and ready count; waiting does not"
    # The busiest hive: 20 ready tasks, but only 12 agents to host (and 5 external ones,
    # which no worker hosts).
    hive(store, "busy", tasks=20, agents=12, external=5, workspace=tmp_path / "busy")
    # Neither a paused hive nor a round-robin one is hosted by workers.
    hive(store, "paused", tasks=50, agents=50, workspace=tmp_path / "paused")
    store.set_hive_status("paused", HiveStatus.PAUSED, reason="by hand")
    hive(store, "dealt", tasks=50, agents=50, mode=Mode.ROUND_ROBIN,
         workspace=tmp_path / "dealt")

    value = run_query(pg_schema_url)
    assert value == 12
    per_worker = float(trigger()["targetQueryValue"])
    assert math.ceil(value / per_worker) == 2, "KEDA's replicas: ceil(value / target)"


def test_the_target_is_the_workers_agents_per_hive() -> None:
    args = yaml.safe_load(WORKER.read_text())["spec"]["template"]["spec"]["containers"][0]["args"]
    assert trigger()["targetQueryValue"] == args[args.index("--agents") + 1]
    assert float(trigger()["activationTargetQueryValue"]) == 0
