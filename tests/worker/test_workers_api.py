"""`GET /api/v2/hives/{id}/workers` over real HTTP: the workers hosting a hive's agents, their
agents and liveness, from the store (a worker that stopped heartbeating is shown not alive)."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import httpx

from ruflo.config import load_settings
from ruflo.model import AgentStatus, utcnow
from ruflo.server.app import create_app
from ruflo.store import open_store

from .harness import make_hive

sys.path.insert(0, str(Path(__file__).parent.parent / "server"))
from server_thread import ServerThread


def test_workers_route_lists_hosts_agents_and_liveness(tmp_path: Path) -> None:
    settings = load_settings({"RUFLO_DATA_DIR": str(tmp_path / "data"), "RUFLO_CONFIG": "",
                              "RUFLO_LEASE_SECONDS": "3"})
    store = open_store(settings)
    thread = ServerThread(create_app(settings, store, None), None)
    try:
        url = thread.start()
        hive = make_hive(store, tmp_path / "ws", tasks=1, agents=3)
        # w-old's last heartbeat is older than a lease (3 s); w-new has just registered.
        store.register_worker("w-old", hive_id=hive.id, host="node-a:1", agents=8,
                              now=utcnow() - timedelta(seconds=3.2))
        agents = store.list_agents(hive.id)
        store.update_agent(agents[0].id, worker_id="w-old")
        store.update_agent(agents[1].id, worker_id="w-new", status=AgentStatus.WORKING,
                           current_task=f"{hive.id}-t0000")
        store.register_worker("w-new", hive_id=None, host="node-b:2", agents=8)
        with httpx.Client(base_url=url, timeout=10) as http:
            shown = http.get(f"/api/v2/hives/{hive.id}/workers")
            missing = http.get("/api/v2/hives/no-such-hive/workers")
    finally:
        thread.stop()
        store.close()
    assert shown.status_code == 200, shown.text
    workers = {w["id"]: w for w in shown.json()["workers"]}
    assert set(workers) == {"w-old", "w-new"}, "the third agent is hosted by nobody"
    assert workers["w-new"]["alive"] is True
    assert workers["w-old"]["alive"] is False
    assert workers["w-new"]["host"] == "node-b:2"
    assert [a["current_task"] for a in workers["w-new"]["agents"]] == [f"{hive.id}-t0000"]
    assert missing.status_code == 404
