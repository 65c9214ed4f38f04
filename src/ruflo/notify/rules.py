"""Which event kinds reach which sender, and the two brakes on noise: de-duplication of the same
condition within a window, and a per-minute rate limit per sender. Pure; depends on nothing.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ruflo.event_kinds import EventKind

SENDER_NAMES = ("telegram", "email", "webhook")
ALL = "*"
"""In a rule, every configured sender."""

DEFAULT_RULES: dict[str, tuple[str, ...]] = {
    EventKind.APPROVAL_REQUESTED: (ALL,),
    EventKind.BUDGET_WARNING: (ALL,),
    EventKind.BUDGET_EXCEEDED: (ALL,),
    EventKind.HIVE_DONE: (ALL,),
    EventKind.HIVE_FAILED: (ALL,),
    EventKind.HIVE_PAUSED: (ALL,),
    EventKind.GATEWAY_BACK: (ALL,),
    "reconcile_failed": (ALL,),
}
"""The moments a person must hear about: the hive needs them, or it stopped, or it went on by
itself after stopping. A paused hive's reason says why (e.g. "gateway refused the key", or
"gateway unreachable", which `gateway_back` ends)."""


class RulesError(ValueError):
    """RUFLO_NOTIFY_RULES is not a JSON object of event kind -> list of sender names."""


def parse_rules(override: str | Mapping[str, Any] | None) -> dict[str, tuple[str, ...]]:
    """The default rules with `override` laid over them: a kind mapped to [] is silenced, a new
    kind is added. Sender names are telegram, email, webhook, or "*" for all configured."""
    rules = dict(DEFAULT_RULES)
    if override is None or override == "":
        return rules
    if isinstance(override, str):
        try:
            override = json.loads(override)
        except json.JSONDecodeError as error:
            raise RulesError(f"RUFLO_NOTIFY_RULES is not valid JSON: {error}") from None
    if not isinstance(override, Mapping):
        raise RulesError("RUFLO_NOTIFY_RULES must be a JSON object: event kind -> [sender, ...]")
    for kind, senders in override.items():
        if isinstance(senders, str):
            senders = [senders]
        if not isinstance(kind, str) or not isinstance(senders, list):
            raise RulesError(f"RUFLO_NOTIFY_RULES: {kind!r} must map to a list of sender names")
        unknown = [s for s in senders if s not in (*SENDER_NAMES, ALL)]
        if unknown:
            raise RulesError(f"RUFLO_NOTIFY_RULES: {kind!r} names unknown sender(s) "
                             f"{', '.join(map(str, unknown))}; use {', '.join(SENDER_NAMES)} or *")
        rules[kind] = tuple(senders)
    return rules


def route(rules: Mapping[str, Iterable[str]], kind: str, configured: Iterable[str]) -> list[str]:
    """Configured senders that `kind` goes to, in a stable order."""
    wanted = set(rules.get(kind, ()))
    available = list(configured)
    if ALL in wanted:
        return available
    return [name for name in available if name in wanted]


class Deduper:
    """Remembers which (sender, condition) went out when; the same one within `window` seconds is
    a duplicate. A delivery that finally failed is forgotten so the next occurrence goes out."""

    def __init__(self, window: float, clock: Callable[[], float]) -> None:
        self.window = window
        self.clock = clock
        self._sent: dict[tuple[str, str], float] = {}

    def admit(self, sender: str, condition: str) -> bool:
        now = self.clock()
        key = (sender, condition)
        last = self._sent.get(key)
        if last is not None and now - last < self.window:
            return False
        self._sent[key] = now
        if len(self._sent) > 10_000:
            self._sent = {k: t for k, t in self._sent.items() if now - t < self.window}
        return True

    def forget(self, sender: str, condition: str) -> None:
        self._sent.pop((sender, condition), None)


class RateLimiter:
    """At most `per_minute` sends per sender in any sliding minute."""

    def __init__(self, per_minute: int, clock: Callable[[], float]) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._times: dict[str, deque[float]] = {}

    def admit(self, sender: str) -> bool:
        now = self.clock()
        times = self._times.setdefault(sender, deque())
        while times and now - times[0] >= 60.0:
            times.popleft()
        if len(times) >= self.per_minute:
            return False
        times.append(now)
        return True
