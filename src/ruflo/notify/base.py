"""The Notifier seam: a message for a person and a provider's answer to it.

Depends on nothing in ruflo but the core model; senders implement `Notifier`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Notification:
    """What a person should hear: a short title and a plain-text body."""

    title: str
    """One line, e.g. "ruflo: hive 'docs' paused"; the e-mail subject."""
    text: str
    """The whole message: what happened, where, and what to do."""
    kind: str = "test"
    """The event kind it comes from (approval_requested, hive_paused, reconcile_failed, ...)."""
    hive_id: str | None = None
    condition: str = ""
    """The condition it reports; two notifications with the same condition are duplicates."""
    data: dict[str, Any] = field(default_factory=dict)
    """Facts for machine readers (the webhook body carries them)."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """A provider's answer to one send."""

    sender: str
    ok: bool
    description: str
    """The provider's own words (Telegram's `description`, Resend's `message`) or the transport
    failure ("timed out after 10 s")."""
    status_code: int | None = None
    """HTTP status; None when no answer came."""
    answer: Any = None
    """The answer body, parsed as JSON when it was JSON."""
    retryable: bool = False
    """Whether trying again later may succeed (timeouts, 5xx, 429)."""
    retry_after: float | None = None
    """Seconds the provider asked us to wait (Telegram's parameters.retry_after on 429)."""


@runtime_checkable
class Notifier(Protocol):
    """A way to reach a person. `send` never raises for provider or network trouble: it answers
    with a Delivery whose `ok` is False and whose description says why."""

    name: str
    """"telegram", "email" or "webhook": the name rules refer to."""

    async def send(self, message: Notification) -> Delivery: ...
