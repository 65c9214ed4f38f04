"""The server's hive runner (engine/server_hosting.py) against the real SQLite store and a ScriptedGateway
over real HTTP: hives it starts run to done, it re-attaches to hives a previous server left
running (their claims go back to the board), a resume brings back an engine that is gone, its
shutdown hands every claim back, an engine that can't run pauses its hive with the reason, and
agents a live `ruflo worker` hosts are left to that worker."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent_scripts import work_rules
from ruflo.config import Settings, load_settings
from ruflo.engine.clock import ManualClock
from ruflo.engine.server_hosting import SERVER_PREFIX, EngineRunner
from ruflo.errors import Conflict
from ruflo.gateway.client import GatewayClient
from ruflo.gateway.scripted import ScriptedGateway
from ruflo.model import Agent, AgentStatus, ApprovalStatus, Hive, HiveStatus, Mode, Task, TaskState
from ruflo.store import open_store
from ruflo.store.sql import SqlStore
from waiting import stays, until

KEY = "sk-runner-test"
FAST = {"time_unit": 0.05, "lease_seconds": 1.0}


@pytest.fixture
def settings(tmp_path: Path, gateway_server: ScriptedGateway) -> Settings:
    return load_settings({"RUFLO_DATA_DIR": str(tmp_path / "data"), "RUFLO_CONFIG": "",
                          "OPENAI_BASE_URL": gateway_server.base_url, "OPENAI_API_KEY": KEY,
                          "RUFLO_LEASE_SECONDS": "1"})


@pytest.fixture
def store(settings: Settings) -> Iterator[SqlStore]:
    opened = open_store(settings)
    yield opened
    opened.close()


@pytest.fixture
async def runner(store: SqlStore, client: GatewayClient,
                 settings: Settings) -> AsyncIterator[EngineRunner]:
    made = EngineRunner(store, client, settings, poll_seconds=0.2)
    yield made
    await made.aclose()


def make_hive(store: SqlStore, tmp_path: Path, names: list[str], *, agents: int = 2,
              config: dict[str, Any] | None = None, workspace: bool = True) -> Hive:
    hive_id = f"hive{len(store.list_hives())}"
    folder = tmp_path / f"ws-{hive_id}"
    hive = Hive(id=hive_id, name="runner", mode=Mode.SWARM, objective="write the files",
                workspace=str(folder) if workspace else None, config=config or dict(FAST))
    crew = [Agent(id=f"{hive_id}-a{i}", hive_id=hive_id, name=f"agent-{i}")
            for i in range(agents)]
    tasks = [Task(id=f"{hive_id}-{n}", hive_id=hive_id, title=n, verify=f"grep -qx {n} {n}.txt")
             for n in names]
    return store.create_hive(hive, agents=crew, tasks=tasks)


def status(store: SqlStore, hive_id: str) -> HiveStatus:
    return store.get_hive(hive_id).status


async def test_a_started_hive_runs_to_done_and_its_engine_lets_go(
        store: SqlStore, runner: EngineRunner, gateway_server: ScriptedGateway,
        tmp_path: Path) -> None:
    for name in ("t1", "t2", "t3"):
        gateway_server.add_rules(*work_rules(name))
    await runner.attach()  # nothing was running: nothing to take up
    assert not runner.hosting
    hive = make_hive(store, tmp_path, ["t1", "t2", "t3"])
    await runner.start(hive.id)
    assert hive.id in runner.hosting
    await until(lambda: status(store, hive.id) is HiveStatus.DONE)
    await until(lambda: hive.id not in runner.hosting)

    assert {t.state for t in store.list_tasks(hive.id)} == {TaskState.DONE}
    assert all(a.worker_id is None for a in store.list_agents(hive.id)), "agents let go"
    assert [w["id"] for w in store.list_workers()] == [runner.id]


async def test_an_empty_board_gets_the_objective_planned_by_the_servers_gateway(
        store: SqlStore, runner: EngineRunner, gateway_server: ScriptedGateway,
        tmp_path: Path) -> None:
    hive = make_hive(store, tmp_path, [], agents=1)
    plan = {"tasks": [{"id": "files", "title": "write the files"}]}
    gateway_server.add_rules({"match": {"system": "You plan work"},
                              "reply": {"content": json.dumps(plan)}},
                             *work_rules("write the files"))

    await runner.start(hive.id)
    await until(lambda: status(store, hive.id) is HiveStatus.DONE)

    [task] = store.list_tasks(hive.id)
    assert (task.title, task.state) == ("write the files", TaskState.DONE)
    assert store.events(hive.id, kinds=["objective_planned"]), "engine/start.py's rule"


async def test_reattaches_to_a_hive_a_crashed_server_left_running(
        store: SqlStore, runner: EngineRunner, gateway_server: ScriptedGateway,
        tmp_path: Path) -> None:
    for name in ("t1", "t2"):
        gateway_server.add_rules(*work_rules(name))
    hive = make_hive(store, tmp_path, ["t1", "t2"])
    # What a server killed mid-task leaves: a claim with a lease, agents marked as its own.
    gone = f"{SERVER_PREFIX}old-host:1"
    store.register_worker(gone, hive_id=None, host="old-host", agents=0)
    for agent in store.list_agents(hive.id):
        store.update_agent(agent.id, worker_id=gone, status=AgentStatus.WORKING)
    held = store.claim_task(hive.id, f"{hive.id}-a0", lease_seconds=600, task_id=f"{hive.id}-t1")
    assert held is not None
    other = make_hive(store, tmp_path, ["t3"])
    store.set_hive_status(other.id, HiveStatus.PAUSED, reason="paused by a person")

    await runner.attach()

    assert set(runner.hosting) == {hive.id}, "only running hives are taken up"
    await until(lambda: status(store, hive.id) is HiveStatus.DONE)
    released = store.events(hive.id, kinds=["task_released"])
    assert [e.task_id for e in released] == [f"{hive.id}-t1"]
    assert store.events(hive.id, kinds=["server_reattached"])
    done = [e.task_id for e in store.events(hive.id, kinds=["task_done"])]
    assert sorted(done) == [f"{hive.id}-t1", f"{hive.id}-t2"], "each task done exactly once"


async def test_shutdown_hands_the_claims_in_flight_back(
        store: SqlStore, runner: EngineRunner, gateway_server: ScriptedGateway,
        tmp_path: Path) -> None:
    gateway_server.add_rules(*work_rules("slow", delay=30))
    hive = make_hive(store, tmp_path, ["slow"])
    await runner.start(hive.id)
    await until(lambda: bool(store.list_tasks(hive.id, states=[TaskState.CLAIMED])))

    started = asyncio.get_running_loop().time()
    await runner.aclose()

    assert asyncio.get_running_loop().time() - started < runner.stop_seconds
    [task] = store.list_tasks(hive.id)
    assert task.state is TaskState.OPEN
    assert task.assignee is None
    [released] = store.events(hive.id, kinds=["task_released"])
    assert released.data["reason"] == "the engine stopped"
    assert status(store, hive.id) is HiveStatus.RUNNING, "the next server takes it up"
    assert all(a.worker_id is None for a in store.list_agents(hive.id))
    assert store.list_workers() == []


async def test_pause_releases_and_waits_then_resume_goes_on(
        store: SqlStore, runner: EngineRunner, gateway_server: ScriptedGateway,
        tmp_path: Path) -> None:
    gateway_server.add_rules(*work_rules("t1", delay=30))
    hive = make_hive(store, tmp_path, ["t1"], agents=1)
    await runner.start(hive.id)
    await until(lambda: bool(store.list_tasks(hive.id, states=[TaskState.CLAIMED])))

    paused = await runner.pause(hive.id, reason="lunch")

    assert (paused.status, paused.pause_reason) == (HiveStatus.PAUSED, "lunch")
    assert not store.list_tasks(hive.id, states=[TaskState.CLAIMED])
    assert hive.id in runner.hosting, "the engine waits for a resume"
    calls = gateway_server.chat_count
    await stays(lambda: gateway_server.chat_count == calls, what="a gateway call while paused")

    gateway_server.set_rules(work_rules("t1"))
    await runner.resume(hive.id)
    await until(lambda: status(store, hive.id) is HiveStatus.DONE)
    assert store.get_task(f"{hive.id}-t1").state is TaskState.DONE


async def test_resume_starts_an_engine_when_none_runs(
        store: SqlStore, runner: EngineRunner, gateway_server: ScriptedGateway,
        tmp_path: Path) -> None:
    gateway_server.add_rules(*work_rules("t1"))
    hive = make_hive(store, tmp_path, ["t1"], agents=1)
    store.set_hive_status(hive.id, HiveStatus.PAUSED, reason="paused before the restart")
    await runner.attach()
    assert not runner.hosting

    await runner.resume(hive.id)

    await until(lambda: status(store, hive.id) is HiveStatus.DONE)


async def test_cancel_ends_the_engine_and_the_tasks(
        store: SqlStore, runner: EngineRunner, gateway_server: ScriptedGateway,
        tmp_path: Path) -> None:
    gateway_server.add_rules(*work_rules("t1", delay=30))
    hive = make_hive(store, tmp_path, ["t1", "t2"], agents=1)
    await runner.start(hive.id)
    await until(lambda: bool(store.list_tasks(hive.id, states=[TaskState.CLAIMED])))

    cancelled = await runner.cancel(hive.id)

    assert cancelled.status is HiveStatus.CANCELLED
    assert hive.id not in runner.hosting
    assert {t.state for t in store.list_tasks(hive.id)} == {TaskState.CANCELLED}
    with pytest.raises(Conflict):
        await runner.resume(hive.id)
    assert (await runner.cancel(hive.id)).status is HiveStatus.CANCELLED


async def test_an_engine_that_cannot_run_pauses_its_hive_with_the_reason(
        store: SqlStore, runner: EngineRunner, tmp_path: Path) -> None:
    no_folder = make_hive(store, tmp_path, ["t1"], workspace=False)
    bad_config = make_hive(store, tmp_path, ["t1"], config={"time_unit": "fast"})
    negative = make_hive(store, tmp_path, ["t1"], config={"lease_seconds": -1})

    for hive in (no_folder, bad_config, negative):
        await runner.start(hive.id)
    await until(lambda: all(status(store, h.id) is HiveStatus.PAUSED
                            for h in (no_folder, bad_config, negative)))

    assert "no workspace folder" in (store.get_hive(no_folder.id).pause_reason or "")
    assert "'time_unit' must be a number" in (store.get_hive(bad_config.id).pause_reason or "")
    assert "must be positive" in (store.get_hive(negative.id).pause_reason or "")
    assert store.events(no_folder.id, kinds=["engine_error"])
    await until(lambda: not runner.hosting)
    assert all(a.worker_id is None for h in (no_folder, bad_config, negative)
               for a in store.list_agents(h.id))


async def test_agents_of_a_live_worker_are_left_to_it(
        store: SqlStore, runner: EngineRunner, gateway_server: ScriptedGateway,
        tmp_path: Path) -> None:
    gateway_server.add_rules(*work_rules("t1"))
    hive = make_hive(store, tmp_path, ["t1"], agents=2)
    store.register_worker("w-live", hive_id=None, host="elsewhere", agents=1)
    store.update_agent(f"{hive.id}-a0", worker_id="w-live")
    everyone_elsewhere = make_hive(store, tmp_path, ["t2"], agents=1)
    store.update_agent(f"{everyone_elsewhere.id}-a0", worker_id="w-live")

    await runner.start(hive.id)
    await runner.start(everyone_elsewhere.id)

    assert runner.hosting[hive.id].agents == [f"{hive.id}-a1"]
    assert everyone_elsewhere.id not in runner.hosting
    await until(lambda: status(store, hive.id) is HiveStatus.DONE)
    [done] = store.events(hive.id, kinds=["task_done"])
    assert done.agent_id == f"{hive.id}-a1"
    assert store.get_agent(f"{hive.id}-a0").worker_id == "w-live"


async def test_agents_driven_by_rest_or_mcp_clients_are_never_hosted(
        store: SqlStore, runner: EngineRunner, gateway_server: ScriptedGateway,
        tmp_path: Path) -> None:
    gateway_server.add_rules(*work_rules("t1"))
    hive = make_hive(store, tmp_path, ["t1"], agents=1)
    store.add_agent(Agent(id=f"{hive.id}-rest", hive_id=hive.id, name="rest-client",
                          adapter_config={"via": "rest"}))
    store.add_agent(Agent(id=f"{hive.id}-mcp", hive_id=hive.id, name="mcp-client",
                          adapter_config={"via": "mcp"}))
    only_outside = make_hive(store, tmp_path, ["t2"], agents=0)
    store.add_agent(Agent(id=f"{only_outside.id}-mcp", hive_id=only_outside.id,
                          name="mcp-client", adapter_config={"via": "mcp"}))

    await runner.start(hive.id)
    await runner.start(only_outside.id)

    assert runner.hosting[hive.id].agents == [f"{hive.id}-a0"]
    assert only_outside.id not in runner.hosting
    await until(lambda: status(store, hive.id) is HiveStatus.DONE)
    assert store.get_agent(f"{hive.id}-rest").worker_id is None
    assert gateway_server.chat_count == 2, "only the hosted agent called the gateway"


async def test_a_silent_workers_agents_are_adopted(
        store: SqlStore, client: GatewayClient, settings: Settings,
        gateway_server: ScriptedGateway, tmp_path: Path) -> None:
    for name in ("t1", "t2"):
        gateway_server.add_rules(*work_rules(name))
    hive = make_hive(store, tmp_path, ["t1", "t2"], agents=2)
    clock = ManualClock()
    runner = EngineRunner(store, client, settings, poll_seconds=0.2, clock=clock)
    store.register_worker("w-silent", hive_id=None, host="elsewhere", agents=1,
                          now=clock.utcnow())
    store.register_worker("w-live", hive_id=None, host="elsewhere", agents=1,
                          now=clock.utcnow())
    store.update_agent(f"{hive.id}-a0", worker_id="w-silent")
    store.update_agent(f"{hive.id}-a1", worker_id="w-live")
    try:
        clock.advance(runner.as_host.stale_after)
        store.worker_heartbeat("w-live", now=clock.utcnow())
        clock.advance(0.1)  # w-silent is silent for longer than `stale_after` now, w-live not

        await runner.start(hive.id)

        assert runner.hosting[hive.id].agents == [f"{hive.id}-a0"]
        # Policy time is the clock's too: the agent's look-again waits end as it moves.
        await until(lambda: status(store, hive.id) is HiveStatus.DONE,
                    meanwhile=lambda: clock.advance(0.05))
        assert store.get_agent(f"{hive.id}-a1").worker_id == "w-live"
    finally:
        await runner.aclose()


async def test_an_approved_budget_override_sets_the_engine_going(
        store: SqlStore, runner: EngineRunner, gateway_server: ScriptedGateway,
        tmp_path: Path) -> None:
    from ruflo.engine.approvals import open_budget_override

    gateway_server.add_rules(*work_rules("t1"))
    hive = make_hive(store, tmp_path, ["t1"], agents=1)
    store.set_hive_status(hive.id, HiveStatus.PAUSED, reason="the hive's budget is spent")
    approval = open_budget_override(store, hive.id, scope="hive", scope_id=hive.id,
                                    spent="100 tokens")

    decided = await runner.decide_approval(approval.id, ApprovalStatus.APPROVED,
                                           decided_by="ana")

    assert decided.status is ApprovalStatus.APPROVED
    await until(lambda: status(store, hive.id) is HiveStatus.DONE)


async def test_a_second_runner_leaves_a_driven_hive_alone_then_takes_over_when_it_dies(
        store: SqlStore, client: GatewayClient, settings: Settings,
        gateway_server: ScriptedGateway, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """Two servers on one store: the second sees the first's live driver lease and leaves the
    hive alone (one line), so no claim is released and no task runs twice; when the first dies
    without a word, the second takes the hive over once the lease has run out."""
    names = [f"n{i}" for i in range(8)]
    for name in names:
        gateway_server.add_rules(*work_rules(name, delay=1.0))
    hive = make_hive(store, tmp_path, names, agents=2)
    clock = ManualClock()
    first = EngineRunner(store, client, settings, poll_seconds=0.2, server_id="server:one:1",
                         driver_lease_seconds=1.0, clock=clock)
    second = EngineRunner(store, client, settings, poll_seconds=0.2, server_id="server:two:2",
                          driver_lease_seconds=1.0, clock=clock)
    try:
        await first.start(hive.id)
        await until(lambda: bool(store.list_tasks(hive.id, states=[TaskState.CLAIMED])),
                    meanwhile=lambda: clock.advance(0.05))
        caplog.set_level("WARNING", logger="ruflo.engine.server_hosting")
        await second.attach()
        assert second.hosting == {}
        assert hive.id in second.watching
        said = [r.getMessage() for r in caplog.records if "leaves it alone" in r.getMessage()]
        assert said == [f"hive {hive.id} is driven by one:1 (lease until "
                        f"{store.hive_driver(hive.id).driver_until:%Y-%m-%d %H:%M:%S} UTC); "
                        "this server leaves it alone"]
        def lease_until() -> datetime:
            driver = store.hive_driver(hive.id)
            assert driver is not None
            return driver.driver_until

        for step in range(1, 7):  # several renewals of the first and looks of the second
            clock.advance(first.driving.renew_every)
            await until(lambda: lease_until() > clock.utcnow() + timedelta(seconds=0.9),
                        what=f"renewal {step} of the first's driver lease")
        assert store.hive_driver(hive.id).who == "one:1"
        assert not store.events(hive.id, kinds=["task_released"])

        # The first dies as a SIGKILL leaves it: no release, no word; its lease runs out.
        hosting = first.hosting[hive.id]
        for helper in (first._keep, first._beat):
            assert helper is not None
            helper.cancel()
        hosting.lost = True
        hosting.engine.abandon()
        first.driving.held.clear()
        clock.advance(1.0)  # the first's driver lease runs out
        await until(lambda: store.hive_driver(hive.id) is not None
                    and store.hive_driver(hive.id).who == "two:2",
                    meanwhile=lambda: clock.advance(second.driving.renew_every))
        await until(lambda: status(store, hive.id) is HiveStatus.DONE,
                    meanwhile=lambda: clock.advance(0.05))
        taken = store.events(hive.id, kinds=["server_reattached"])
        assert [e.data.get("server") for e in taken] == ["server:two:2"]
        done = sorted(e.task_id or "" for e in store.events(hive.id, kinds=["task_done"]))
        assert done == sorted(f"{hive.id}-{n}" for n in names), "each task done exactly once"
    finally:
        await second.aclose()
        await first.aclose()
    assert store.hive_driver(hive.id) is None, "the engine let the lease go when the hive ended"


async def test_a_driver_that_lost_its_lease_stops_without_touching_the_claims(
        store: SqlStore, client: GatewayClient, settings: Settings,
        gateway_server: ScriptedGateway, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """A server stalled past its lease, and another process took the hive: at its next renewal
    it stops its engine at once and releases nothing (the claims are the new driver's)."""
    from ruflo.model import HiveDriver, utcnow

    gateway_server.add_rules(*work_rules("slow", delay=30))
    hive = make_hive(store, tmp_path, ["slow"], agents=1)
    runner = EngineRunner(store, client, settings, poll_seconds=0.2, server_id="server:one:1",
                          driver_lease_seconds=1.0)
    try:
        await runner.start(hive.id)
        await until(lambda: bool(store.list_tasks(hive.id, states=[TaskState.CLAIMED])))
        mine = store.hive_driver(hive.id)
        assert mine is not None
        # What a long stall looks like from the store: the lease ran out, another took it.
        store.take_hive(mine, lease_seconds=1.0, now=utcnow() - timedelta(seconds=60))
        now = utcnow()
        store.take_hive(HiveDriver(hive_id=hive.id, instance="new-driver", host="two", pid=2,
                                   driving_since=now, driver_until=now), lease_seconds=600)
        await until(lambda: hive.id not in runner.hosting)
        assert "lost its driver lease to two:2 while silent" in caplog.text
        assert store.hive_driver(hive.id).instance == "new-driver"  # type: ignore[union-attr]
        assert not store.events(hive.id, kinds=["task_released"]), "the claim was left alone"
        assert store.list_tasks(hive.id, states=[TaskState.CLAIMED])
        assert status(store, hive.id) is HiveStatus.RUNNING
        assert runner.watching == {hive.id: "new-driver"}
    finally:
        await runner.aclose()
    assert store.hive_driver(hive.id).instance == "new-driver", "not released by the loser"  # type: ignore[union-attr]
