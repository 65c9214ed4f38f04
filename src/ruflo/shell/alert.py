"""Alert a person when a reconcile fails, through the notify senders the rules route
`reconcile_failed` to (Telegram, e-mail, webhook). Depends on ruflo.notify's senders only.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Mapping
from typing import Any, Protocol, TypeVar

from ruflo.notify.base import Delivery, Notification, Notifier
from ruflo.notify.dispatcher import deliver
from ruflo.notify.rules import DEFAULT_RULES, route

T = TypeVar("T")


class Alerter(Protocol):
    def alert(self, message: Notification) -> list[Delivery]:
        """Send `message` wherever it should go; one Delivery per sender tried."""


class NotifyAlerter:
    """Sends through notify senders with bounded retries and a per-send timeout."""

    def __init__(self, senders: Mapping[str, Notifier], *,
                 rules: Mapping[str, tuple[str, ...]] = DEFAULT_RULES, attempts: int = 3,
                 send_timeout: float = 15.0, backoff: float = 1.0) -> None:
        self.senders = dict(senders)
        self.rules = dict(rules)
        self.attempts = attempts
        self.send_timeout = send_timeout
        self.backoff = backoff
        self.missing: dict[str, str] = {}

    @classmethod
    def from_settings(cls, settings: Any, **options: Any) -> NotifyAlerter:
        from ruflo.notify.configured import configured_senders

        setup = configured_senders(settings, timeout=options.get("send_timeout", 15.0))
        alerter = cls(setup.senders, rules=setup.rules, **options)
        alerter.missing = setup.missing
        return alerter

    def alert(self, message: Notification) -> list[Delivery]:
        names = route(self.rules, message.kind, self.senders)
        if not names:
            return []

        async def send_all() -> list[Delivery]:
            answers = await asyncio.gather(*(
                deliver(self.senders[name], message, attempts=self.attempts,
                        send_timeout=self.send_timeout, backoff=self.backoff)
                for name in names))
            return [delivery for delivery, _ in answers]

        return run_blocking(send_all())


def run_blocking(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, even when this thread already runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    box: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            box.append(asyncio.run(coroutine))
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=target, name="ruflo-shell-alert")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return box[0]
