"""MCP servers a person adds for their chats: a stdio command (run in the command sandbox; an
operator's right, like process agents) or a streamable HTTP URL with headers. Their tools are
found in the background and kept for a while, so neither a page nor an answer waits long for a
server; a server that fails is remembered with its error (settings show it) and its tools are
simply not offered. Each call opens its own session (the `mcp` SDK's client) and closes it.
Depends on the mcp SDK, the command sandbox and the core model.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ruflo.agents.sandbox import current_sandbox

if TYPE_CHECKING:
    from mcp import types

log = logging.getLogger("ruflo.server.mcp")

CONNECT_SECONDS = 15.0
"""How long finding a server's tools may take before it counts as failed."""
CALL_SECONDS = 60.0
"""How long one tool call may take."""
FRESH_SECONDS = 300.0
"""How long a server's tool list is used before it is read again (in the background)."""
OFFER_WAIT_SECONDS = 3.0
"""How long an answer waits for a server whose tools are not known yet; past it the answer
goes on without them (they are found in the background for the next one)."""
MAX_SERVERS = 20
_SAFE = re.compile(r"[^a-zA-Z0-9_-]")


@dataclass(frozen=True)
class McpServer:
    """One server as a person defined it (stored in their settings under `mcpServers`)."""

    name: str
    url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    command: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, raw: Mapping[str, Any]) -> McpServer:
        return cls(name=str(raw["name"]), url=raw.get("url"),
                   headers=dict(raw.get("headers") or {}),
                   command=tuple(raw.get("command") or ()), env=dict(raw.get("env") or {}))

    @property
    def key(self) -> str:
        """Changes whenever anything of the definition does (a cached tool list then goes)."""
        blob = json.dumps([self.name, self.url, sorted(self.headers.items()), self.command,
                           sorted(self.env.items())])
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @contextlib.asynccontextmanager
    async def client(self) -> Any:
        """A connected, initialized MCP client session, closed on exit."""
        # The MCP client costs ~0.4 s to import: only a chat that reaches a server pays it.
        from mcp.client.stdio import StdioServerParameters
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client

        from mcp import Client

        if self.url is not None:
            http = create_mcp_http_client(headers=dict(self.headers))
            async with http, Client(streamable_http_client(self.url, http_client=http)) as c:
                yield c
            return
        folder = tempfile.mkdtemp(prefix="ruflo-mcp-")
        try:
            argv = current_sandbox().confine(self.command, cwd=Path(folder))
            params = StdioServerParameters(command=argv[0], args=argv[1:],
                                           env=dict(self.env) or None, cwd=folder)
            async with Client(params) as c:
                yield c
        finally:
            shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Found:
    """What was last found at a server: its tools, or why there are none."""

    tools: list[types.Tool] = field(default_factory=list)
    error: str | None = None
    at: float = 0.0
    pending: asyncio.Task[None] | None = None

    def state(self) -> dict[str, Any]:
        if self.at == 0.0:
            return {"state": "connecting", "tools": [], "error": None}
        return {"state": "error" if self.error else "ok", "error": self.error,
                "tools": [{"name": t.name, "description": t.description or ""}
                          for t in self.tools]}


def describe(error: BaseException) -> str:
    """One line for a server that could not be reached or answered badly."""
    if isinstance(error, BaseExceptionGroup):
        return describe(error.exceptions[0])
    if isinstance(error, TimeoutError):
        return "no answer in time"
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text[:300]


class McpDirectory:
    """The tool lists of the MCP servers people added, found in the background."""

    def __init__(self) -> None:
        self.found: dict[str, Found] = {}

    def look(self, server: McpServer) -> Found:
        """What is known of `server` now; starts finding its tools when they are unknown or
        old (never waits)."""
        found = self.found.setdefault(server.key, Found())
        stale = time.monotonic() - found.at > FRESH_SECONDS
        if (found.at == 0.0 or stale) and (found.pending is None or found.pending.done()):
            found.pending = asyncio.create_task(self._find(server, found))
        return found

    async def _find(self, server: McpServer, found: Found) -> None:
        try:
            async with asyncio.timeout(CONNECT_SECONDS), server.client() as client:
                listed = await client.list_tools()
                found.tools, found.error = list(listed.tools), None
        except Exception as error:  # any failure of a person's server is its state, not ours
            found.tools, found.error = [], describe(error)
            log.info("MCP server %s: %s", server.name, found.error)
        found.at = time.monotonic()

    async def check(self, server: McpServer) -> Found:
        """Find the server's tools now (for the settings' Check)."""
        found = self.found.setdefault(server.key, Found())
        if found.pending is not None and not found.pending.done():
            await asyncio.wait({found.pending})
        found.at = 0.0
        found.pending = asyncio.create_task(self._find(server, found))
        await asyncio.wait({found.pending})
        return found

    async def tools(self, servers: list[McpServer],
                    wait: float = OFFER_WAIT_SECONDS) -> list[tuple[McpServer, types.Tool]]:
        """The tools of every server that answers, waiting at most `wait` for the unknown."""
        looks = [(server, self.look(server)) for server in servers]
        unknown = {found.pending for _, found in looks
                   if found.at == 0.0 and found.pending is not None}
        if unknown:
            await asyncio.wait(unknown, timeout=wait)
        return [(server, tool) for server, found in looks for tool in found.tools]


def tool_name(server: str, tool: str) -> str:
    """The function name the model sees: server and tool, in the characters OpenAI allows."""
    return _SAFE.sub("_", f"{server}__{tool}")[:64]


async def call(server: McpServer, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Call one tool; its text (and structured content), or {"error": ...}."""
    try:
        async with asyncio.timeout(CALL_SECONDS), server.client() as client:
            result = await client.call_tool(tool, arguments)
    except Exception as error:
        return {"error": f"MCP server {server.name!r}: {describe(error)}"}
    from mcp.types import TextContent

    texts = [part.text for part in result.content if isinstance(part, TextContent)]
    if result.is_error:
        return {"error": " ".join(texts)[:2000] or f"{tool} failed"}
    answer: dict[str, Any] = {"content": texts}
    if result.structured_content is not None:
        answer["structured"] = result.structured_content
    return answer
