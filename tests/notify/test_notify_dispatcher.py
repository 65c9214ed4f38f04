"""The dispatcher between a hive and the providers: the right messages, the brakes on noise, and
a hive that never waits for or breaks on a provider."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from ruflo.cli import run
from ruflo.model import Event, utcnow
from ruflo.notify import Dispatcher, ResendSender, TelegramSender, WebhookSender
from ruflo.notify.testing import ProviderStandIn, Reply


def event(event_kind: str, hive_id: str = "h1", seq: int = 1, **data: Any) -> Event:
    return Event(seq=seq, hive_id=hive_id, kind=event_kind, ts=utcnow(), data=data)


class Recorded:
    """Stands in for `store.append_event`, thread-safely."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []
        self.lock = threading.Lock()

    def __call__(self, hive_id: str, kind: str, *, data: dict[str, Any] | None = None) -> object:
        with self.lock:
            self.events.append((hive_id, kind, data or {}))
        return None


@pytest.fixture
def recorded() -> Recorded:
    return Recorded()


@pytest.fixture
def dispatcher_for(recorded: Recorded) -> Iterator[Any]:
    made: list[Dispatcher] = []

    def make(senders: dict[str, Any], **options: Any) -> Dispatcher:
        options.setdefault("backoff", 0.01)
        dispatcher = Dispatcher(senders, record_failure=recorded,
                                hive_name=lambda hive_id: {"h1": "docs"}.get(hive_id), **options)
        made.append(dispatcher.start())
        return dispatcher

    yield make
    for dispatcher in made:
        dispatcher.close(timeout=1.0)


def test_paused_on_refused_key_reaches_every_sender_with_what_to_do(
        dispatcher_for: Any, telegram: ProviderStandIn, resend: ProviderStandIn,
        webhook: ProviderStandIn) -> None:
    dispatcher = dispatcher_for({
        "telegram": TelegramSender("123:abc", "7", api_base=telegram.url),
        "email": ResendSender("re_x", "ruflo@example.org", ["me@example.org"], api_base=resend.url),
        "webhook": WebhookSender(webhook.url, secret="k")})
    dispatcher.offer(event("hive_paused", reason="gateway refused the key"))
    assert dispatcher.wait_idle(10)
    [text] = telegram.texts()
    assert "hive 'docs' (h1) paused: gateway refused the key" in text
    assert "OPENAI_API_KEY" in text
    assert "ruflo hive resume h1" in text
    [email] = resend.received
    assert email.json()["subject"] == "ruflo: 'docs' paused: gateway refused the key"
    [hook] = webhook.received
    assert hook.json()["kind"] == "hive_paused"
    assert hook.json()["data"]["hive_name"] == "docs"
    assert dispatcher.stats.sent == 3


def test_approval_and_budget_warning_messages(dispatcher_for: Any, telegram: ProviderStandIn) -> None:
    dispatcher = dispatcher_for({"telegram": TelegramSender("123:abc", "7", api_base=telegram.url)})
    dispatcher.offer(event("approval_requested", approval_id="ap9", kind="budget_override",
                           subject="raise the hive budget to 5 USD"))
    dispatcher.offer(event("budget_warning", seq=2, scope="hive", scope_id="h1", max_cost=1.0,
                           spent_cost=0.82, max_tokens=None, spent_tokens=1200, fraction=0.82))
    dispatcher.offer(event("task_claimed", seq=3))  # no rule: never sent
    assert dispatcher.wait_idle(10)
    approval, budget = sorted(telegram.texts(), key=lambda t: "budget of" in t)
    assert "waits for a person to decide: raise the hive budget to 5 USD (budget_override)" in approval
    assert "`ruflo approval approve ap9` / `ruflo approval reject ap9`" in approval
    for command in re.findall(r"`ruflo ([^`]+) ap9`", approval):  # the commands it names exist
        assert run([*command.split(), "--help"]) == 0, command
    assert "82%" in budget
    assert "(0.82 of 1.00 USD)" in budget
    assert "at 100% it stops" in budget
    assert len(telegram.received) == 2


def test_same_condition_is_sent_once_within_the_window(
        dispatcher_for: Any, telegram: ProviderStandIn) -> None:
    dispatcher = dispatcher_for({"telegram": TelegramSender("123:abc", "7", api_base=telegram.url)},
                                dedupe_seconds=600)
    for seq in range(3):
        dispatcher.offer(event("hive_paused", seq=seq, reason="gateway refused the key"))
    dispatcher.offer(event("hive_paused", seq=9, reason="budget spent"))
    assert dispatcher.wait_idle(10)
    assert len(telegram.received) == 2
    assert dispatcher.stats.deduplicated == 2


def test_rate_limit_holds_back_and_says_so_later(
        dispatcher_for: Any, telegram: ProviderStandIn) -> None:
    now = [1000.0]
    dispatcher = dispatcher_for({"telegram": TelegramSender("123:abc", "7", api_base=telegram.url)},
                                rate_per_minute=2, clock=lambda: now[0])
    for hive in ("a", "b", "c", "d"):
        dispatcher.offer(event("hive_done", hive_id=hive))
        assert dispatcher.wait_idle(10)
    assert len(telegram.received) == 2
    assert dispatcher.stats.rate_limited == 2
    now[0] += 61
    dispatcher.offer(event("hive_done", hive_id="e"))
    assert dispatcher.wait_idle(10)
    assert len(telegram.received) == 3
    assert "2 more notification(s) were held back by the rate limit" in telegram.texts()[-1]


def test_provider_error_is_recorded_with_its_description_and_not_retried(
        dispatcher_for: Any, recorded: Recorded, telegram: ProviderStandIn) -> None:
    telegram.script(Reply(400, {"ok": False, "error_code": 400,
                                "description": "Bad Request: chat not found"}))
    dispatcher = dispatcher_for({"telegram": TelegramSender("123:abc", "7", api_base=telegram.url)})
    dispatcher.offer(event("hive_failed", reason="verify command failed"))
    assert dispatcher.wait_idle(10)
    assert len(telegram.received) == 1
    [(hive_id, kind, data)] = recorded.events
    assert (hive_id, kind) == ("h1", "notify_failed")
    assert data["description"] == "Bad Request: chat not found"
    assert data["sender"] == "telegram"
    assert data["status_code"] == 400
    stats = dispatcher.stats
    assert stats.failed == 1
    assert stats.last_failure == "telegram: Bad Request: chat not found"
    # the failure is forgotten by de-dup: the next occurrence is tried again
    dispatcher.offer(event("hive_failed", seq=2, reason="verify command failed"))
    assert dispatcher.wait_idle(10)
    assert len(telegram.received) == 2


def test_a_hanging_sender_never_blocks_the_hive_and_retries_are_bounded(
        dispatcher_for: Any, recorded: Recorded, telegram: ProviderStandIn,
        webhook: ProviderStandIn) -> None:
    telegram.script(*(Reply(hang=True) for _ in range(10)))
    dispatcher = dispatcher_for(
        {"telegram": TelegramSender("123:abc", "7", api_base=telegram.url, timeout=30),
         "webhook": WebhookSender(webhook.url)},
        send_timeout=0.3, attempts=3)
    offered = threading.Event()

    def hive() -> None:  # the engine's committing thread: offer must return at once
        for seq in range(50):
            dispatcher.offer(event("hive_paused", seq=seq, reason=f"reason {seq % 2}"))
        offered.set()

    thread = threading.Thread(target=hive)
    thread.start()
    assert offered.wait(5), "offer blocked the hive"
    thread.join()
    assert dispatcher.wait_idle(20)
    assert len(webhook.received) == 2  # the healthy sender went on; two distinct conditions
    assert len(telegram.received) == 6  # 2 conditions x 3 tries, then it gave up
    failures = [data for _, kind, data in recorded.events if kind == "notify_failed"]
    assert len(failures) == 2
    assert all(f["description"] == "no answer within 0.3 s" and f["attempts"] == 3
               for f in failures)


def test_offer_never_raises_even_when_everything_around_it_breaks(
        telegram: ProviderStandIn) -> None:
    def broken_name(hive_id: str) -> str:
        raise RuntimeError("store is gone")

    def broken_record(hive_id: str, kind: str, *, data: Any = None) -> object:
        raise RuntimeError("store is gone")

    telegram.script(Reply(500, {"ok": False, "description": "Internal"}))
    with Dispatcher({"telegram": TelegramSender("123:abc", "7", api_base=telegram.url)},
                    hive_name=broken_name, record_failure=broken_record, attempts=1) as dispatcher:
        dispatcher.offer(event("hive_done"))
        dispatcher.offer(None)  # type: ignore[arg-type]
        assert dispatcher.wait_idle(10)
        dispatcher.offer(event("hive_done", hive_id="h2"))
        assert dispatcher.wait_idle(10)
    assert "hive h1 finished" in telegram.texts()[0]
    assert len(telegram.received) == 2


def test_a_full_queue_drops_counts_and_records(recorded: Recorded,
                                                telegram: ProviderStandIn) -> None:
    dispatcher = Dispatcher({"telegram": TelegramSender("123:abc", "7", api_base=telegram.url)},
                            record_failure=recorded, max_queue=2)
    for seq in range(5):  # not started yet: nothing drains the queue
        dispatcher.offer(event("hive_done", hive_id=f"h{seq}", seq=seq))
    assert dispatcher.stats.dropped == 3
    with dispatcher:
        assert dispatcher.wait_idle(10)
    assert len(telegram.received) == 2
    drops = [e for e in recorded.events if "dropped" in e[2]["description"]]
    assert sorted(hive for hive, _, _ in drops) == ["h2", "h3", "h4"]
