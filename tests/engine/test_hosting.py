"""engine/hosting.py, what `ruflo worker` and the server share: adopting free agents (room, live
and silent hosts, outside clients' agents, an earlier run under the same id), the heartbeat's
answer to being declared lost, and the pages of hives that want hosting. SQLite and Postgres."""

from __future__ import annotations

from ruflo.engine.hosting import PAGE, Host, every_hive, wants_hosting
from ruflo.model import Agent, Hive, HiveStatus, Mode
from ruflo.store.sql import SqlStore


def make_hive(store: SqlStore, hive_id: str = "h-1", *, agents: int = 4) -> Hive:
    crew = [Agent(id=f"{hive_id}-a{n}", hive_id=hive_id, name=f"a{n}") for n in range(agents)]
    return store.create_hive(Hive(id=hive_id, name=hive_id, mode=Mode.SWARM, objective="o"),
                             crew)


def worker_host(store: SqlStore, host_id: str) -> Host:
    return Host(store, host_id, kind="worker", host=f"{host_id}.local", lease_seconds=60.0,
                capacity=2, announce=True)


def test_a_worker_adopts_up_to_its_room_and_says_so(store: SqlStore) -> None:
    make_hive(store)
    host = worker_host(store, "w-1")
    host.register()
    taken = host.adopt("h-1", room=2, mine=set())
    assert [a.id for a in taken] == ["h-1-a0", "h-1-a1"]
    assert [a.worker_id for a in store.list_agents("h-1")] == ["w-1", "w-1", None, None]
    attached = store.events("h-1", kinds=["worker_attached"])
    assert [e.data for e in attached] == [
        {"worker_id": "w-1", "host": "w-1.local", "agents": ["h-1-a0", "h-1-a1"]}]


def test_live_hosts_keep_their_agents(store: SqlStore) -> None:
    make_hive(store)
    for worker_id in ("w-live", "w-also-live"):
        worker_host(store, worker_id).register()
    store.update_agent("h-1-a0", worker_id="w-live")
    store.update_agent("h-1-a1", worker_id="w-also-live")
    store.update_agent("h-1-a2", worker_id="w-never-registered")
    newcomer = worker_host(store, "w-new")
    taken = newcomer.adopt("h-1", room=10, mine=set())
    assert [a.id for a in taken] == ["h-1-a2", "h-1-a3"]
    assert store.events("h-1", kinds=["worker_lost"])[0].data["worker_id"] == "w-never-registered"


def test_a_silent_host_is_declared_lost_and_its_agents_move(store: SqlStore) -> None:
    make_hive(store, agents=2)
    silent = worker_host(store, "w-silent")
    silent.register()
    store.update_agent("h-1-a0", worker_id="w-silent")
    newcomer = worker_host(store, "w-new")
    newcomer.stale_after = 0.0  # any beat older than now is too old
    taken = newcomer.adopt("h-1", room=10, mine=set())
    assert {a.id for a in taken} == {"h-1-a0", "h-1-a1"}
    assert [w["id"] for w in store.list_workers()] == []  # w-new never registered here
    lost = store.events("h-1", kinds=["worker_lost"])
    assert [e.data["worker_id"] for e in lost] == ["w-silent"]


def test_outside_clients_agents_are_never_adopted(store: SqlStore) -> None:
    make_hive(store, agents=1)
    store.add_agent(Agent(id="h-1-rest", hive_id="h-1", name="rest",
                          adapter_config={"via": "rest"}))
    host = worker_host(store, "w-1")
    assert [a.id for a in host.adopt("h-1", mine=set())] == ["h-1-a0"]


def test_an_earlier_run_under_the_same_id_left_its_agents_free(store: SqlStore) -> None:
    make_hive(store, agents=2)
    host = worker_host(store, "pod-1")
    host.register()
    store.update_agent("h-1-a0", worker_id="pod-1")
    store.update_agent("h-1-a1", worker_id="pod-1")
    # hosting a0 already (mine), it takes a1 back, left by its previous run
    assert [a.id for a in host.adopt("h-1", mine={"h-1-a0"})] == ["h-1-a1"]


def test_a_server_takes_other_servers_agents_but_not_live_workers(store: SqlStore) -> None:
    make_hive(store, agents=3)
    for worker_id in ("server:old:1", "w-live"):
        store.register_worker(worker_id, hive_id=None, host="x", agents=0)
    store.update_agent("h-1-a0", worker_id="server:old:1")
    store.update_agent("h-1-a1", worker_id="w-live")
    server = Host(store, "server:new:2", kind="server", host="new:2", lease_seconds=60.0,
                  keeps_agents=lambda w: not str(w["id"]).startswith("server:"))
    assert [a.id for a in server.adopt("h-1")] == ["h-1-a0", "h-1-a2"]
    assert store.events("h-1", kinds=["worker_attached", "worker_lost"]) == []


async def test_the_heartbeat_asks_what_to_do_when_declared_lost(store: SqlStore) -> None:
    host = Host(store, "w-1", kind="worker", host="x", lease_seconds=60.0,
                heartbeat_seconds=0.01)
    host.register()
    store.unregister_worker("w-1")  # another host declared it lost
    asked: list[str] = []

    def on_lost() -> bool:
        asked.append("lost")
        return False  # stop beating

    await host.beat(on_lost)
    assert asked == ["lost"]


def test_every_hive_reads_past_the_first_page(store: SqlStore) -> None:
    for n in range(PAGE + 1):
        store.create_hive(Hive(id=f"h-{n:04d}", name="h", mode=Mode.SWARM, objective="o"))
    store.set_hive_status("h-0000", HiveStatus.PAUSED, reason="a person paused it")
    hives = list(every_hive(store))
    assert len({h.id for h in hives}) == PAGE + 1
    assert [h.id for h in hives if not wants_hosting(h)] == ["h-0000"]
