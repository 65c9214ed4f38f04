"""What every route reaches for: the store, the gateway, the hive runner, the authenticator and
the server's own counters, bundled once per app. Depends on the server's parts and the seams.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import HTTPException, Request

from ruflo.gateway.base import Gateway
from ruflo.server.auth import Authenticator, Caller, Unauthenticated
from ruflo.server.chat_mcp import McpDirectory
from ruflo.server.event_stream import EventHub
from ruflo.server.gateway_status import GatewayState
from ruflo.server.hive_runner import HiveRunner
from ruflo.server.metrics import ServerMetrics
from ruflo.store.base import Store

if TYPE_CHECKING:
    from ruflo.server.chat_stream import ChatGenerations


@dataclass
class ServerContext:
    settings: Any
    """ruflo.config.Settings (typed loosely so tests may pass a namespace with the same names)."""
    store: Store
    gateway: Gateway | None
    """None when no gateway is configured: chat answers say so, probes don't care."""
    runner: HiveRunner
    auth: Authenticator
    hub: EventHub
    chats: ChatGenerations
    metrics: ServerMetrics = field(default_factory=ServerMetrics)
    draining: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the server is shutting down: streams end, answers in flight are stored."""
    mcp: McpDirectory = field(default_factory=McpDirectory)
    """The tools of the MCP servers people added for their chats, found in the background."""
    gateway_state: GatewayState | None = None
    """What the last look at the gateway found (None: not asked yet). Readiness reports it
    without asking the gateway again."""

    async def drain(self) -> None:
        """Begin shutting down: end the event streams and store the answers being written, so
        open connections close at once and nothing is lost."""
        if self.draining.is_set():
            return
        self.draining.set()
        self.hub.detach()
        await self.chats.stop_all()


# Both are async so FastAPI calls them inline: a plain `def` dependency is sent to a worker
# thread on every request, which costs more than the rest of a board request together.
async def context(request: Request) -> ServerContext:
    ctx: ServerContext = request.app.state.ctx
    return ctx


async def current_caller(request: Request) -> Caller:
    """The authenticated user and whether they are an operator, or a 401 that says why (probes
    never ask). Kept on the request, so a route asking again costs nothing."""
    known: Caller | None = request.scope.get("ruflo.caller")
    if known is not None:
        return known
    ctx: ServerContext = request.app.state.ctx
    client, server = request.scope.get("client"), request.scope.get("server")
    try:
        caller = ctx.auth.caller(client[0] if client else None, request.headers,
                                 server_host=server[0] if server else None)
    except Unauthenticated as refused:
        headers = {"WWW-Authenticate": "Bearer"} if refused.bearer else None
        raise HTTPException(401, str(refused), headers=headers) from None
    request.scope["ruflo.caller"] = caller
    return caller


async def current_user(request: Request) -> str:
    """The authenticated user's name, or a 401 that says why."""
    return (await current_caller(request)).name
