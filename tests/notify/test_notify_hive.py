"""Notifications from a real hive: the live engine runs against a ScriptedGateway that refuses the
key, the store's listener feeds the dispatcher wired as `ruflo serve`/`orchestrate` wire it, and a
local stand-in for Telegram receives the pause message. A sender that hangs leaves the hive
untouched: the engine pauses at once, and the failure ends up as a `notify_failed` event."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from ruflo.agents.commands import command_env
from ruflo.commands.serve import hive_notifications
from ruflo.config import Settings, load_settings
from ruflo.engine.board_engine import BoardEngine, LiveParams
from ruflo.gateway.client import GatewayClient
from ruflo.gateway.scripted import ScriptedGateway
from ruflo.model import Agent, Hive, HiveStatus, Mode, Task, TaskState
from ruflo.notify import Dispatcher
from ruflo.notify.testing import ProviderStandIn, Reply
from ruflo.store import open_store
from ruflo.store.sql import SqlStore

KEY = "sk-notify-hive"
FAST = LiveParams(lease_seconds=2.0, time_unit=0.05, poll_seconds=0.2)


@pytest.fixture
def gateway_server() -> Iterator[ScriptedGateway]:
    server = ScriptedGateway({"keys": [KEY], "cost": 0.0001})
    server.start()
    server.revoke_key(KEY)  # the kill switch was pulled before the hive started
    yield server
    server.stop()


@pytest.fixture
def settings(tmp_path: Path, gateway_server: ScriptedGateway,
             telegram: ProviderStandIn) -> Settings:
    return load_settings({"RUFLO_DATA_DIR": str(tmp_path / "data"), "RUFLO_CONFIG": "",
                          "OPENAI_BASE_URL": gateway_server.base_url, "OPENAI_API_KEY": KEY,
                          "RUFLO_TELEGRAM_BOT_TOKEN": "123:abc",
                          "RUFLO_TELEGRAM_CHAT_ID": "42",
                          "RUFLO_TELEGRAM_API_BASE": telegram.url})


@pytest.fixture
def store(settings: Settings) -> Iterator[SqlStore]:
    opened = open_store(settings)
    yield opened
    opened.close()


def make_hive(store: SqlStore, tmp_path: Path) -> Hive:
    hive = Hive(id="nh1", name="release notes", mode=Mode.SWARM, objective="write the notes",
                workspace=str(tmp_path / "workspace"))
    return store.create_hive(hive, agents=[Agent(id="nh1-a0", hive_id="nh1", name="agent-0")],
                             tasks=[Task(id="nh1-t1", hive_id="nh1", title="draft")])


async def run_hive(store: SqlStore, hive: Hive, client: GatewayClient) -> Hive:
    engine = BoardEngine(store, hive.id, gateway=client, params=FAST, env=command_env())
    return await asyncio.wait_for(engine.run(), 30)


async def test_a_refused_key_pauses_the_hive_and_telegram_hears_of_it(
        store: SqlStore, client: GatewayClient, settings: Settings, telegram: ProviderStandIn,
        tmp_path: Path) -> None:
    hive = make_hive(store, tmp_path)
    trace: list[str] = []

    with hive_notifications(settings, store, echo=trace.append):
        paused = await run_hive(store, hive, client)
    # Leaving the block gave the send in flight its time to finish.

    assert (paused.status, paused.pause_reason) == (HiveStatus.PAUSED,
                                                      "gateway refused the key")
    assert any(line.startswith("notify telegram: ready") for line in trace)
    [message] = telegram.received
    assert message.path == "/bot123:abc/sendMessage"
    body = message.json()
    assert body["chat_id"] == "42"
    assert "'release notes'" in body["text"]
    assert "paused: gateway refused the key" in body["text"]
    assert "ruflo hive resume nh1" in body["text"]
    assert store.get_task("nh1-t1").state is TaskState.OPEN, "nothing was lost"
    assert not store.events(hive.id, kinds=["notify_failed"])


async def test_a_hanging_sender_leaves_the_hive_alone_and_is_recorded(
        store: SqlStore, client: GatewayClient, settings: Settings, telegram: ProviderStandIn,
        tmp_path: Path) -> None:
    hive = make_hive(store, tmp_path)
    telegram.script(Reply(hang=True), Reply(hang=True))
    dispatcher = Dispatcher.from_settings(
        settings, record_failure=store.append_event,
        hive_name=lambda hive_id: store.get_hive(hive_id).name,
        send_timeout=1.5, attempts=2, backoff=0.05).start()
    store.add_listener(dispatcher.offer)
    try:
        paused = await run_hive(store, hive, client)

        # The engine is done pausing while the message is still stuck in the sender.
        assert paused.status is HiveStatus.PAUSED
        assert not dispatcher.wait_idle(0), "the send was still in flight"
        assert await asyncio.to_thread(dispatcher.wait_idle, 20)
    finally:
        store.remove_listener(dispatcher.offer)
        dispatcher.close()

    [failed] = store.events(hive.id, kinds=["notify_failed"])
    assert failed.data["sender"] == "telegram"
    assert failed.data["notification"] == "hive_paused"
    assert failed.data["attempts"] == 2
    assert "no answer within 1.5 s" in failed.data["description"]
    assert len(telegram.received) == 2, "bounded retries: two tries, then it gave up"
    after = store.get_hive(hive.id)
    assert (after.status, after.pause_reason) == (HiveStatus.PAUSED, "gateway refused the key")
    assert store.get_task("nh1-t1").state is TaskState.OPEN


async def test_a_sender_that_hangs_once_still_delivers_on_the_retry(
        store: SqlStore, client: GatewayClient, settings: Settings, telegram: ProviderStandIn,
        tmp_path: Path) -> None:
    hive = make_hive(store, tmp_path)
    telegram.script(Reply(hang=True))
    with Dispatcher.from_settings(settings, record_failure=store.append_event,
                                  send_timeout=0.5, attempts=3, backoff=0.05) as dispatcher:
        store.add_listener(dispatcher.offer)
        try:
            await run_hive(store, hive, client)
            assert await asyncio.to_thread(dispatcher.wait_idle, 20)
        finally:
            store.remove_listener(dispatcher.offer)
        stats = dispatcher.stats

    assert (stats.sent, stats.retried, stats.failed) == (1, 1, 0)
    first, second = telegram.texts()
    assert first == second
    assert "gateway refused the key" in second
    assert not store.events(hive.id, kinds=["notify_failed"])


def test_doctor_counts_recent_notify_failures(store: SqlStore, settings: Settings,
                                              tmp_path: Path) -> None:
    from ruflo.commands.doctor import check_notify_failures, doctor_checks

    hive = make_hive(store, tmp_path)
    clean = check_notify_failures(settings)
    assert (clean.ok, clean.fatal) == (True, False)
    assert "no failed notifications" in clean.detail

    for description in ("no answer within 15 s", "Bad Request: chat not found"):
        store.append_event(hive.id, "notify_failed", data={
            "sender": "telegram", "notification": "hive_paused", "description": description,
            "attempts": 3})
    found = check_notify_failures(settings)

    assert (found.ok, found.fatal) == (False, False), "a warning, not a failed doctor"
    assert found.detail.startswith("2 notification(s) could not be delivered")
    assert "telegram: Bad Request: chat not found" in found.detail
    assert "notify delivery" in [check.name for check in doctor_checks(settings)]
