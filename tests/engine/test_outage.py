"""A gateway outage is not a task failure: the live engine against a real ScriptedGateway that
answers 503 for a while, then refuses connections (stopped), then comes back on the same port.
The hive pauses "gateway unreachable", looks again cheaply, resumes by itself and ends done, with
no attempt charged to a task and a person told both ways. On SQLite and Postgres."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ruflo.agents.commands import command_env
from ruflo.config import load_settings
from ruflo.engine.board_engine import BoardEngine, LiveParams
from ruflo.engine.control import (
    GATEWAY_UNREACHABLE,
    PAUSED_BY_PERSON,
    pause_hive,
    resume_after_outage,
    resume_hive,
)
from ruflo.engine.server_hosting import EngineRunner
from ruflo.errors import GatewayError
from ruflo.gateway.client import GatewayClient, RetryPolicy
from ruflo.gateway.scripted import ScriptedGateway
from ruflo.model import HiveStatus, TaskState
from ruflo.notify import Dispatcher
from ruflo.notify.testing import ProviderStandIn
from ruflo.notify.webhook import WebhookSender
from ruflo.server.hive_runner import StoreRunner
from ruflo.store.sql import SqlStore
from waiting import WITHIN, until, wait_for_event

from .test_live import assert_no_double_holders, board, make_hive, work_rules

KEY = "sk-outage-test"
FAST = LiveParams(lease_seconds=2.0, time_unit=0.05, poll_seconds=0.2, probe_initial=0.05,
                  probe_max=0.2)
"""Looks at a down gateway every 0.05 s growing to 0.2 s (1 s to 30 s by default)."""


class WatchedClient(GatewayClient):
    """The real client, noting what each look at the gateway found (for the test to wait on)."""

    looks: list[str]

    async def probe(self) -> None:
        try:
            await super().probe()
        except GatewayError as error:
            self.looks.append(str(error))
            raise
        self.looks.append("answered")


def watched(server: ScriptedGateway, store: SqlStore) -> WatchedClient:
    client = WatchedClient(server.base_url, KEY, store=store,
                           retry=RetryPolicy(attempts=2, timeout=5, wait_initial=0.01,
                                             wait_max=0.05))
    client.looks = []
    return client


@pytest.fixture
def webhook() -> Iterator[ProviderStandIn]:
    with ProviderStandIn("webhook") as stand_in:
        yield stand_in


@pytest.fixture
def dispatcher(store: SqlStore, webhook: ProviderStandIn) -> Iterator[Dispatcher]:
    """Wired as `ruflo serve` wires it: the store's after-commit listener feeds it."""
    with Dispatcher({"webhook": WebhookSender(webhook.url)}, record_failure=store.append_event,
                    hive_name=lambda hive_id: store.get_hive(hive_id).name,
                    backoff=0.05) as started:
        store.add_listener(started.offer)
        yield started
        store.remove_listener(started.offer)


def received(webhook: ProviderStandIn) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in webhook.received]


def count(looks: list[str], said: str) -> int:
    return sum(said in look for look in looks)


@pytest.mark.slow
async def test_503_then_refused_connections_pause_the_hive_which_resumes_by_itself(
        store: SqlStore, gateway_server: ScriptedGateway, dispatcher: Dispatcher,
        webhook: ProviderStandIn, tmp_path: Path) -> None:
    names = ["t1", "t2", "t3", "t4"]
    gateway_server.add_rules(*work_rules("t2", delay=0.5))  # in flight when the outage begins
    for name in names:
        gateway_server.add_rules(*work_rules(name))
    hive = make_hive(store, tmp_path, board(names), agents=2)
    client = watched(gateway_server, store)
    running = asyncio.create_task(BoardEngine(store, hive.id, gateway=client, params=FAST,
                                             env=command_env()).run())
    try:
        await until(lambda: any(r["rule"] == "t2-write" for r in gateway_server.requests),
                    what="t2's first turn never reached the gateway")
        gateway_server.set_fault("unavailable")  # every answer is a 503 from now on

        await until(lambda: store.get_hive(hive.id).pause_reason == GATEWAY_UNREACHABLE,
                    what="the hive never paused for the gateway")
        await until(lambda: count(client.looks, "503") >= 2, what="no look found the 503")
        gateway_server.stop()  # now connections are refused
        await until(lambda: count(client.looks, "connection failed") >= 2,
                    what="no look found the connection refused")
        assert not running.done(), "a CLI run waits through an outage"
        assert store.get_hive(hive.id).status is HiveStatus.PAUSED
        gateway_server.clear_fault()
        gateway_server.start()  # back, on the same port

        final = await asyncio.wait_for(running, 60)
    finally:
        running.cancel()
        await client.aclose()

    assert final.status is HiveStatus.DONE, final.pause_reason
    tasks = store.list_tasks(hive.id)
    assert all(t.state is TaskState.DONE and t.verified for t in tasks)
    assert not store.events(hive.id, kinds=["task_failed"])
    assert not store.events(hive.id, kinds=["agent_lost"]), "every agent worked on after it"
    releases = store.events(hive.id, kinds=["task_released"])
    assert releases, "the claims in flight went back to the board"
    assert not [e for e in releases if "attempt failed" in str(e.data.get("reason"))], \
        "no attempt was charged to a task"
    # Each task was claimed once before the outage and at most once more after it (or after a
    # look that found the gateway back while it was still warming up).
    assert max(t.attempts for t in tasks) <= 3, [(t.title, t.attempts) for t in tasks]
    assert_no_double_holders(store, hive.id)
    paused = [e for e in store.events(hive.id, kinds=["hive_paused"])]
    assert [e.data["reason"] for e in paused] == [GATEWAY_UNREACHABLE] * len(paused)
    assert len(store.events(hive.id, kinds=["gateway_unreachable"])) == len(paused)
    back = store.events(hive.id, kinds=["gateway_back"])
    assert len(back) == len(paused) >= 1
    assert back[-1].data["looks"] >= 4

    assert await asyncio.to_thread(dispatcher.wait_idle, 20)
    sent = received(webhook)
    kinds = [m["kind"] for m in sent]
    assert kinds.index("hive_paused") < kinds.index("gateway_back") < kinds.index("hive_done")
    pause_text = next(m["text"] for m in sent if m["kind"] == "hive_paused")
    assert "paused: gateway unreachable" in pause_text
    assert "resumes the hive by itself" in pause_text
    back_text = next(m["text"] for m in sent if m["kind"] == "gateway_back")
    assert "resumed by itself" in back_text
    assert not store.events(hive.id, kinds=["notify_failed"])


@pytest.mark.slow
async def test_a_persons_pause_during_the_outage_wins_and_their_resume_tries_again(
        store: SqlStore, gateway_server: ScriptedGateway, tmp_path: Path) -> None:
    names = ["t1", "t2"]
    for name in names:
        gateway_server.add_rules(*work_rules(name))
    hive = make_hive(store, tmp_path, board(names), agents=2)
    client = watched(gateway_server, store)
    gateway_server.set_fault("unavailable")
    engine = BoardEngine(store, hive.id, gateway=client, params=FAST, env=command_env())
    running = asyncio.create_task(engine.run())
    try:
        await until(lambda: store.get_hive(hive.id).pause_reason == GATEWAY_UNREACHABLE,
                    what="the hive never paused for the gateway")
        # A person's resume while the gateway is still down just tries again: the work pauses
        # the hive for the gateway once more, and no attempt is charged.
        resume_hive(store, hive.id)
        await until(lambda: len(store.events(hive.id, kinds=["hive_paused"])) == 2,
                    what="the retried work did not pause the hive again")
        await until(lambda: store.get_hive(hive.id).pause_reason == GATEWAY_UNREACHABLE)

        # A person's pause replaces the outage's: the engine stops looking, and the gateway's
        # return does not undo the pause.
        pause_hive(store, hive.id, reason=PAUSED_BY_PERSON)
        paused = await asyncio.wait_for(running, 30)
        assert (paused.status, paused.pause_reason) == (HiveStatus.PAUSED, PAUSED_BY_PERSON)
        gateway_server.clear_fault()
        await client.probe()
        assert store.get_hive(hive.id).pause_reason == PAUSED_BY_PERSON

        resume_hive(store, hive.id)
        final = await asyncio.wait_for(BoardEngine(store, hive.id, gateway=client, params=FAST,
                                                  env=command_env()).run(), 30)
    finally:
        running.cancel()
        await client.aclose()

    assert final.status is HiveStatus.DONE, final.pause_reason
    assert not store.events(hive.id, kinds=["gateway_back"]), "only people resumed it"
    assert not store.events(hive.id, kinds=["task_failed"])
    assert max(t.attempts for t in store.list_tasks(hive.id)) <= 3


@pytest.mark.slow
async def test_a_key_refused_during_the_outage_ends_it_and_waits_for_a_person(
        store: SqlStore, gateway_server: ScriptedGateway, tmp_path: Path) -> None:
    gateway_server.add_rules(*work_rules("t1"))
    hive = make_hive(store, tmp_path, board(["t1"]), agents=1)
    client = watched(gateway_server, store)
    gateway_server.set_fault("unavailable")
    running = asyncio.create_task(BoardEngine(store, hive.id, gateway=client, params=FAST,
                                             env=command_env()).run())
    try:
        await until(lambda: store.get_hive(hive.id).pause_reason == GATEWAY_UNREACHABLE,
                    what="the hive never paused for the gateway")
        gateway_server.revoke_key(KEY)  # the kill switch, pulled while the gateway was down
        gateway_server.clear_fault()
        paused = await asyncio.wait_for(running, 30)
    finally:
        running.cancel()
        await client.aclose()

    assert (paused.status, paused.pause_reason) == (HiveStatus.PAUSED, "gateway refused the key")
    assert not store.events(hive.id, kinds=["gateway_back"])
    assert store.get_task(f"{hive.id}h-t1").state is TaskState.OPEN, "nothing was lost"


async def test_the_agent_whose_call_met_a_refused_key_works_on_after_a_resume(
        store: SqlStore, gateway_server: ScriptedGateway, tmp_path: Path) -> None:
    """The work that pauses the hive hands its own task back; it is not cancelled as work in
    flight is, which used to end its agent's loop (the agent was lost for the rest of the run)."""
    gateway_server.add_rules(*work_rules("t1"))
    hive = make_hive(store, tmp_path, board(["t1"]), agents=1)
    client = watched(gateway_server, store)
    gateway_server.revoke_key(KEY)
    params = LiveParams(lease_seconds=2.0, time_unit=0.05, poll_seconds=0.2,
                        stop_on_pause=False)
    running = asyncio.create_task(BoardEngine(store, hive.id, gateway=client, params=params,
                                             env=command_env()).run())
    try:
        # The gateway client pauses the hive as it meets the refused key; the engine hands the
        # task back, then follows the pause (a resume in between: the test below).
        await wait_for_event(store, hive.id, "task_released",
                             where=lambda e: e.data["reason"].startswith("hive paused"))
        assert store.get_hive(hive.id).status is HiveStatus.PAUSED
        gateway_server.restore_key(KEY)
        resume_hive(store, hive.id)
        final = await asyncio.wait_for(running, WITHIN)
    finally:
        running.cancel()
        await client.aclose()

    assert final.status is HiveStatus.DONE, final.pause_reason
    assert not store.events(hive.id, kinds=["agent_lost"])


async def test_a_resume_between_the_clients_pause_and_the_give_back_stands(
        store: SqlStore, gateway_server: ScriptedGateway, tmp_path: Path) -> None:
    """The gateway client pauses the hive as it meets the refused key, before the engine hears
    of it. A person who resumes in that window (here: from the client's `on_pause` hook, which
    runs after the pause and before the error reaches the engine) is not undone: the engine
    hands the task back without pausing again, and the hive finishes."""
    gateway_server.add_rules(*work_rules("t1"))
    hive = make_hive(store, tmp_path, board(["t1"]), agents=1)
    client = watched(gateway_server, store)
    resumed: list[HiveStatus] = []

    def resume_in_the_window(hive_id: str, error: GatewayError) -> None:
        resumed.append(store.get_hive(hive_id).status)  # the client's pause, as it left it
        gateway_server.restore_key(KEY)
        resume_hive(store, hive_id)

    client.on_pause = resume_in_the_window
    gateway_server.revoke_key(KEY)
    params = LiveParams(lease_seconds=2.0, time_unit=0.05, poll_seconds=0.2,
                        stop_on_pause=False)
    running = asyncio.create_task(BoardEngine(store, hive.id, gateway=client, params=params,
                                             env=command_env()).run())
    try:
        final = await asyncio.wait_for(running, WITHIN)
    finally:
        running.cancel()
        await client.aclose()

    assert resumed == [HiveStatus.PAUSED], "the client paused the hive before the engine knew"
    assert final.status is HiveStatus.DONE, final.pause_reason
    assert len(store.events(hive.id, kinds=["hive_paused"])) == 1, "paused once, by the client"
    released = store.events(hive.id, kinds=["task_released"])
    assert [e.data["reason"] for e in released][:1] == ["hive paused: gateway refused the key"]
    assert store.get_task(f"{hive.id}h-t1").state is TaskState.DONE


@pytest.mark.slow
async def test_a_server_started_on_a_hive_paused_for_the_gateway_looks_for_it_and_resumes_it(
        store: SqlStore, gateway_server: ScriptedGateway, tmp_path: Path) -> None:
    """A server (re)started while a hive was paused for the gateway drives it as a running one:
    nobody else would look for the gateway. A hive a person paused stays as it is."""
    for name in ("t1", "t2"):
        gateway_server.add_rules(*work_rules(name))
    quick = {"time_unit": 0.05, "lease_seconds": 2.0}
    outage = make_hive(store, tmp_path, board(["t1", "t2"]), agents=2, config=quick)
    store.set_hive_status(outage.id, HiveStatus.PAUSED, reason=GATEWAY_UNREACHABLE)
    held = make_hive(store, tmp_path, board(["t1"]), agents=1, config=quick)
    store.set_hive_status(held.id, HiveStatus.PAUSED, reason=PAUSED_BY_PERSON)
    settings = load_settings({"RUFLO_DATA_DIR": str(tmp_path / "data"), "RUFLO_CONFIG": "",
                              "OPENAI_BASE_URL": gateway_server.base_url, "OPENAI_API_KEY": KEY,
                              "RUFLO_GATEWAY_PROBE_SECONDS": "0.1"})
    client = watched(gateway_server, store)
    runner = EngineRunner(store, client, settings, poll_seconds=0.2)
    try:
        await runner.attach()
        await until(lambda: store.get_hive(outage.id).status is HiveStatus.DONE,
                    what="the hive paused for the gateway was not resumed and finished")
    finally:
        await runner.aclose()
        await client.aclose()

    assert client.looks == ["answered"], "one look, 0.1 s after the start (the setting)"
    [back] = store.events(outage.id, kinds=["gateway_back"])
    assert back.data["looks"] == 1
    assert all(t.verified for t in store.list_tasks(outage.id))
    assert (store.get_hive(held.id).status, store.get_hive(held.id).pause_reason) == \
        (HiveStatus.PAUSED, PAUSED_BY_PERSON)
    assert not store.events(held.id, kinds=["engine_started"])


def test_only_the_outage_pause_ends_by_itself(store: SqlStore, tmp_path: Path) -> None:
    hive = make_hive(store, tmp_path, board(["t1"]), agents=1)

    def stands() -> tuple[HiveStatus, str | None]:
        now = store.get_hive(hive.id)
        return now.status, now.pause_reason

    assert resume_after_outage(store, hive.id) is None, "a running hive is left alone"
    pause_hive(store, hive.id, reason=GATEWAY_UNREACHABLE)
    assert resume_after_outage(store, hive.id, data={"looks": 3}) is not None
    assert stands() == (HiveStatus.RUNNING, None)
    [back] = store.events(hive.id, kinds=["gateway_back"])
    assert back.data == {"looks": 3}

    # A person's pause (or the kill switch's) replaces the outage's and is never undone by it.
    for reason in (PAUSED_BY_PERSON, "gateway refused the key"):
        resume_hive(store, hive.id)
        pause_hive(store, hive.id, reason=GATEWAY_UNREACHABLE)
        pause_hive(store, hive.id, reason=reason)
        assert stands() == (HiveStatus.PAUSED, reason)
        assert resume_after_outage(store, hive.id) is None
        pause_hive(store, hive.id, reason=GATEWAY_UNREACHABLE)
        assert stands() == (HiveStatus.PAUSED, reason), "an outage does not replace it"
    assert len(store.events(hive.id, kinds=["gateway_back"])) == 1


async def test_a_server_without_engines_lets_a_person_replace_the_outage_pause(
        store: SqlStore, tmp_path: Path) -> None:
    hive = make_hive(store, tmp_path, board(["t1"]), agents=1)
    pause_hive(store, hive.id, reason=GATEWAY_UNREACHABLE)
    paused = await StoreRunner(store).pause(hive.id, reason=PAUSED_BY_PERSON)
    assert paused.pause_reason == PAUSED_BY_PERSON
    assert resume_after_outage(store, hive.id) is None


def test_a_person_pausing_while_the_gateway_comes_back_always_wins(
        store: SqlStore, tmp_path: Path) -> None:
    """The engine's resume and a person's pause at the same moment, from two threads (two
    connections on Postgres): whichever commits first, the hive ends paused by the person."""
    hive = make_hive(store, tmp_path, board(["t1"]), agents=1)
    for _ in range(15):
        pause_hive(store, hive.id, reason=GATEWAY_UNREACHABLE)
        start = threading.Barrier(2)

        def engine_side(start: threading.Barrier) -> None:
            start.wait()
            resume_after_outage(store, hive.id)

        def person_side(start: threading.Barrier) -> None:
            start.wait()
            pause_hive(store, hive.id, reason=PAUSED_BY_PERSON)

        threads = [threading.Thread(target=side, args=(start,))
                   for side in (engine_side, person_side)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        after = store.get_hive(hive.id)
        assert (after.status, after.pause_reason) == (HiveStatus.PAUSED, PAUSED_BY_PERSON)
        resume_hive(store, hive.id)
