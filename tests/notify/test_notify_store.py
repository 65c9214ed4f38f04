"""End to end with the real SQLite store: its after-commit listener feeds the dispatcher, and a
provider's refusal comes back as a `notify_failed` event on the hive, which carries on."""

from __future__ import annotations

from pathlib import Path

from ruflo.model import Approval, ApprovalKind, Hive, HiveStatus, Mode, new_id
from ruflo.notify import Dispatcher, TelegramSender
from ruflo.notify.testing import ProviderStandIn, Reply
from ruflo.store import open_store


def test_store_events_become_messages_and_failures_become_events(
        tmp_path: Path, telegram: ProviderStandIn) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'ruflo.db'}")
    try:
        hive = store.create_hive(Hive(id=new_id(), name="docs", mode=Mode.SWARM,
                                      objective="write the docs"))
        dispatcher = Dispatcher(
            {"telegram": TelegramSender("123:abc", "7", api_base=telegram.url)},
            record_failure=store.append_event,
            hive_name=lambda hive_id: store.get_hive(hive_id).name, backoff=0.01).start()
        store.add_listener(dispatcher.offer)
        telegram.script(Reply(200), Reply(400, {"ok": False, "error_code": 400,
                                                "description": "Bad Request: chat not found"}))
        store.create_approval(Approval(id="ap1", hive_id=hive.id, kind=ApprovalKind.STRATEGY,
                                       subject="switch the plan to a two-pass review"))
        assert dispatcher.wait_idle(10)
        store.set_hive_status(hive.id, HiveStatus.PAUSED, reason="gateway refused the key")
        assert dispatcher.wait_idle(10)
        # the hive goes on regardless of the refused notification
        store.set_hive_status(hive.id, HiveStatus.RUNNING)
        dispatcher.close()

        approval, paused = telegram.texts()
        assert "hive 'docs'" in approval
        assert "two-pass review" in approval
        assert "paused: gateway refused the key" in paused
        [failed] = store.events(hive.id, kinds=["notify_failed"])
        assert failed.data["description"] == "Bad Request: chat not found"
        assert failed.data["notification"] == "hive_paused"
        assert store.get_hive(hive.id).status is HiveStatus.RUNNING
    finally:
        store.close()
