"""Deliver notifications off the engine's path: a bounded queue drained by its own thread and
asyncio loop, with rules, de-duplication, a rate limit, bounded retries and a per-send timeout.

Depends on the core model and notify's senders, rules and messages; never on the store or the
engine: the caller hands in `record_failure` (e.g. `store.append_event`) and `hive_name`.

How one event travels:
1. `offer(event)` (any thread, e.g. the store's after-commit listener) drops kinds no rule routes,
   else queues the event and returns at once; a full queue drops it and counts the drop.
2. The dispatcher's loop turns it into a message (looking up the hive's name), and for each
   routed sender skips duplicates of a condition sent within the window and sends over the
   per-minute rate limit are held back (counted, and mentioned in the sender's next message).
3. Each send runs as its own task: up to `attempts` tries, each cut off after `send_timeout`,
   waiting with backoff (or the provider's retry_after) between tries that may succeed later.
4. A send that finally fails is logged with the provider's description and recorded as a
   `notify_failed` event on its hive; the hive itself is never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ruflo.event_kinds import EventKind
from ruflo.model import JSON, Event
from ruflo.notify.base import Delivery, Notification, Notifier
from ruflo.notify.messages import event_notification
from ruflo.notify.rules import DEFAULT_RULES, Deduper, RateLimiter, route
from ruflo.notify.transport import warm_up

log = logging.getLogger("ruflo.notify")


class EventRecorder(Protocol):
    """Appends an event to a hive; `Store.append_event` fits."""

    def __call__(self, hive_id: str, kind: str, *, data: JSON | None = None) -> object: ...


async def deliver(sender: Notifier, message: Notification, *, attempts: int = 3,
                  send_timeout: float = 15.0, backoff: float = 1.0, max_backoff: float = 30.0,
                  should_stop: Callable[[], bool] = lambda: False) -> tuple[Delivery, int]:
    """Send with bounded retries; answer the last Delivery and how many tries it took. Only
    answers that may change later (timeouts, network errors, 5xx, 429) are tried again."""
    delivery = Delivery(sender.name, False, "not sent")
    for attempt in range(1, attempts + 1):
        try:
            delivery = await asyncio.wait_for(sender.send(message), timeout=send_timeout)
        except TimeoutError:
            delivery = Delivery(sender.name, False, f"no answer within {send_timeout:g} s",
                                retryable=True)
        except Exception as error:  # a sender's bug must not take the dispatcher down
            log.exception("notify %s: sender raised", sender.name)
            delivery = Delivery(sender.name, False, f"sender raised {type(error).__name__}: "
                                                    f"{error}")
        if delivery.ok or not delivery.retryable or attempt == attempts or should_stop():
            return delivery, attempt
        wait = backoff * 2 ** (attempt - 1)
        if delivery.retry_after is not None:
            wait = max(wait, delivery.retry_after)
        await asyncio.sleep(min(wait, max_backoff))
    return delivery, attempts


@dataclasses.dataclass
class DispatchStats:
    """Counters for `ruflo doctor` and the UI (this process only; failures are also events)."""

    queued: int = 0
    sent: int = 0
    failed: int = 0
    retried: int = 0
    deduplicated: int = 0
    rate_limited: int = 0
    dropped: int = 0
    """Events lost because the queue was full."""
    last_failure: str | None = None


class Dispatcher:
    """Sends notifications for hive events without ever blocking or breaking the hive."""

    def __init__(
        self,
        senders: Mapping[str, Notifier],
        *,
        rules: Mapping[str, tuple[str, ...]] = DEFAULT_RULES,
        dedupe_seconds: float = 600.0,
        rate_per_minute: int = 20,
        record_failure: EventRecorder | None = None,
        hive_name: Callable[[str], str | None] | None = None,
        max_queue: int = 1000,
        attempts: int = 3,
        send_timeout: float = 15.0,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        concurrency: int = 4,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.senders = dict(senders)
        self.rules = dict(rules)
        self.record_failure = record_failure
        self.hive_name = hive_name
        self.attempts = max(1, attempts)
        self.send_timeout = send_timeout
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.concurrency = concurrency
        self._dedupe = Deduper(dedupe_seconds, clock)
        self._rate = RateLimiter(rate_per_minute, clock)
        self._queue: queue.Queue[Event | Notification] = queue.Queue(maxsize=max_queue)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._unfinished = 0
        self._stats = DispatchStats()
        self._dropped_by_hive: dict[str, int] = {}
        self._held_back: dict[str, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._closing = False
        self._drain_timeout = 5.0

    @classmethod
    def from_settings(cls, settings: Any, **options: Any) -> Dispatcher:
        """Senders and rules from settings (ruflo.config.Settings); `options` as for __init__."""
        from ruflo.notify.configured import configured_senders, setting

        setup = configured_senders(settings, timeout=options.get("send_timeout", 15.0))
        options.setdefault("rules", setup.rules)
        dedupe = setting(settings, "notify_dedupe_seconds")
        rate = setting(settings, "notify_rate_per_minute")
        if dedupe is not None:
            options.setdefault("dedupe_seconds", float(dedupe))
        if rate is not None:
            options.setdefault("rate_per_minute", int(rate))
        return cls(setup.senders, **options)

    # -- the caller's side (any thread) ------------------------------------------------------
    @property
    def stats(self) -> DispatchStats:
        with self._lock:
            return dataclasses.replace(self._stats)

    def routes(self, kind: str) -> list[str]:
        return route(self.rules, kind, self.senders)

    def offer(self, event: Event) -> None:
        """Queue `event` if a rule routes its kind. Never blocks, never raises."""
        try:
            if event.kind == EventKind.NOTIFY_FAILED or not self.routes(event.kind):
                return
            self._enqueue(event, event.hive_id)
        except Exception:  # the caller is the store's commit path: nothing may escape
            log.exception("notify: could not queue event %s", getattr(event, "kind", "?"))

    def notify(self, message: Notification) -> None:
        """Queue a message that does not come from a hive event (e.g. the shell's reconcile)."""
        try:
            self._enqueue(message, message.hive_id)
        except Exception:
            log.exception("notify: could not queue %s", message.kind)

    def _enqueue(self, item: Event | Notification, hive_id: str | None) -> None:
        with self._lock:
            if self._closing:
                return
            try:
                self._queue.put_nowait(item)
            except queue.Full:
                self._stats.dropped += 1
                if hive_id:
                    self._dropped_by_hive[hive_id] = self._dropped_by_hive.get(hive_id, 0) + 1
                log.warning("notify: queue full, dropped a %s notification",
                            getattr(item, "kind", "?"))
                self._wake_loop()
                return
            self._stats.queued += 1
            self._unfinished += 1
        self._wake_loop()

    def _wake_loop(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            # the loop may close between the check and the call
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(wake.set)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every queued notification is sent or given up; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._unfinished:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> Dispatcher:
        if self._thread is None:
            self._thread = threading.Thread(target=self._thread_main, name="ruflo-notify",
                                            daemon=True)
            self._thread.start()
            self._ready.wait(5.0)
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Stop taking new work, give in-flight sends up to `timeout` seconds, cancel the rest."""
        with self._lock:
            self._closing = True
            self._drain_timeout = timeout
        self._wake_loop()
        if self._thread is not None:
            self._thread.join(timeout + 2.0)

    def __enter__(self) -> Dispatcher:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the dispatcher's own thread ---------------------------------------------------------
    def _thread_main(self) -> None:
        try:
            warm_up()  # before the loop runs, so no send's timeout pays for it
            asyncio.run(self._run())
        except Exception:
            log.exception("notify: dispatcher stopped on an error")
        finally:
            self._ready.set()

    async def _run(self) -> None:
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._ready.set()
        limit = asyncio.Semaphore(self.concurrency)
        in_flight: set[asyncio.Task[None]] = set()
        while True:
            await self._record_drops()
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                task = asyncio.create_task(self._handle(item, limit))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            with self._lock:
                closing = self._closing
            if closing:
                break
            await self._wake.wait()
            self._wake.clear()
        if in_flight:
            _, pending = await asyncio.wait(in_flight, timeout=self._drain_timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _handle(self, item: Event | Notification, limit: asyncio.Semaphore) -> None:
        try:
            if isinstance(item, Event):
                name = await self._lookup_name(item.hive_id)
                message = event_notification(item, name)
            else:
                message = item
            sends = []
            for sender_name in route(self.rules, message.kind, self.senders):
                if not self._dedupe.admit(sender_name, message.condition or message.title):
                    self._count("deduplicated")
                    continue
                if not self._rate.admit(sender_name):
                    self._count("rate_limited")
                    self._held_back[sender_name] = self._held_back.get(sender_name, 0) + 1
                    self._dedupe.forget(sender_name, message.condition or message.title)
                    log.warning("notify %s: rate limit reached, held back: %s",
                                sender_name, message.title)
                    continue
                sends.append(self._send(self.senders[sender_name], message, limit))
            await asyncio.gather(*sends)
        except Exception:
            log.exception("notify: could not handle %s", getattr(item, "kind", "?"))
        finally:
            with self._idle:
                self._unfinished -= 1
                self._idle.notify_all()

    async def _send(self, sender: Notifier, message: Notification,
                    limit: asyncio.Semaphore) -> None:
        held = self._held_back.pop(sender.name, 0)
        if held:
            message = dataclasses.replace(message, text=(
                f"{message.text}\n({held} more notification(s) were held back by the rate "
                f"limit.)"))
        async with limit:
            delivery, tries = await deliver(
                sender, message, attempts=self.attempts, send_timeout=self.send_timeout,
                backoff=self.backoff, max_backoff=self.max_backoff,
                should_stop=lambda: self._closing)
        if tries > 1:
            self._count("retried", tries - 1)
        if delivery.ok:
            self._count("sent")
            return
        self._dedupe.forget(sender.name, message.condition or message.title)
        description = f"{sender.name}: {delivery.description}"
        with self._lock:
            self._stats.failed += 1
            self._stats.last_failure = description
        log.warning("notify %s failed after %d tries (%s): %s", sender.name, tries,
                    message.kind, delivery.description)
        if message.hive_id:
            await self._record(message.hive_id, {
                "sender": sender.name, "notification": message.kind,
                "condition": message.condition, "description": delivery.description,
                "status_code": delivery.status_code, "attempts": tries})

    async def _record(self, hive_id: str, data: JSON) -> None:
        if self.record_failure is None:
            return
        try:
            await asyncio.to_thread(self.record_failure, hive_id, EventKind.NOTIFY_FAILED,
                                    data=data)
        except Exception:
            log.exception("notify: could not record %s on hive %s", EventKind.NOTIFY_FAILED,
                          hive_id)

    async def _record_drops(self) -> None:
        with self._lock:
            dropped, self._dropped_by_hive = self._dropped_by_hive, {}
        for hive_id, count in dropped.items():
            await self._record(hive_id, {"sender": None, "notification": None, "attempts": 0,
                                         "description": f"{count} notification(s) dropped: "
                                                        f"the queue was full"})

    async def _lookup_name(self, hive_id: str) -> str | None:
        if self.hive_name is None:
            return None
        try:
            return await asyncio.to_thread(self.hive_name, hive_id)
        except Exception as error:
            log.debug("notify: no name for hive %s: %s", hive_id, error)
            return None

    def _count(self, counter: str, amount: int = 1) -> None:
        with self._lock:
            setattr(self._stats, counter, getattr(self._stats, counter) + amount)
