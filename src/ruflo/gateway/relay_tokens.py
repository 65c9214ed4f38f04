"""Relay tokens: one per attempt, minted when it starts and revoked when it ends.
Depends on the standard library and the gateway's errors and base types.

A token is 32 random bytes (URL-safe text) standing for one attempt's CallContext: the calls made
with it are billed to that hive, agent and task, and to nothing else. Only a digest of it is kept,
so the token itself is in no table, event or log; it lives in the agent's environment only.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

from ruflo.errors import BudgetExceeded, GatewayError
from ruflo.gateway.base import CallContext

__all__ = ["Grant", "TokenBook"]

TOKEN_PREFIX = "rly-"


@dataclass(slots=True)
class Grant:
    """One attempt's right to call models through the relay."""

    context: CallContext
    """Who the calls are billed to."""
    digest: bytes
    traceparent: str | None = None
    """The trace context the token was minted in (the attempt's span): where the spans of its
    calls join the hive's trace. None when tracing is off."""
    stop: GatewayError | BudgetExceeded | None = None
    """The first failure that pauses work (refused key, spent budget): the attempt's adapter
    raises it when the command ends, so the engine pauses as it does for the built-in agent."""
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    calls: int = 0

    def halt(self, error: GatewayError | BudgetExceeded) -> None:
        if self.stop is None:
            self.stop = error
        self.stopped.set()


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class TokenBook:
    """The tokens alive in this process."""

    def __init__(self) -> None:
        self._grants: dict[bytes, Grant] = {}

    def mint(self, context: CallContext,
             traceparent: str | None = None) -> tuple[str, Grant]:
        """A new token for one attempt (whose span's context is `traceparent`), and its grant."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        grant = Grant(context, _digest(token), traceparent)
        self._grants[grant.digest] = grant
        return token, grant

    def revoke(self, grant: Grant) -> None:
        """The attempt ended: its token stops working at once."""
        self._grants.pop(grant.digest, None)

    def find(self, token: str) -> Grant | None:
        if not token.startswith(TOKEN_PREFIX):
            return None
        grant = self._grants.get(_digest(token))
        # The dictionary lookup is by digest; compare again in constant time all the same.
        return grant if grant is not None and hmac.compare_digest(grant.digest,
                                                                  _digest(token)) else None

    def __len__(self) -> int:
        return len(self._grants)
