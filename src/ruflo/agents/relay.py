"""The byte pipe: a sandboxed outside agent's only road out, to the model relay
(ruflo.gateway.relay) and nowhere else. Depends on the standard library only.

Outside, ruflo listens on a Unix socket in the attempt's scratch folder and connects each caller
to the model relay's host and port, which only it knows. Inside (a network namespace with loopback
only), agents/forwarder.py listens on 127.0.0.1:PORT, forwards each connection to the socket, and
becomes the agent's command; the agent's OPENAI_BASE_URL names that port.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

GATEWAY_URL_VARS = ("OPENAI_BASE_URL", "LITELLM_BASE_URL", "ANTHROPIC_BASE_URL",
                    "GOOGLE_GEMINI_BASE_URL")
"""Variables that name the model relay for a spawned agent (see ruflo.gateway.relay)."""

FORWARDER = Path(__file__).with_name("forwarder.py")
"""The inside half, run in the sandbox as a bare script."""

LOW_PORT_STAND_IN = 18080
"""Ports below 1024 can't be opened inside the sandbox (no capabilities): a gateway on 80 or
443 is reached there through this port and the next ones."""


@dataclass(frozen=True, slots=True)
class Route:
    """One gateway address, as seen outside (host, port) and inside (socket, port)."""

    host: str
    port: int
    socket: Path
    """Unix socket ruflo listens on; shown inside the sandbox at the same path."""
    inner_port: int
    """Loopback port the sandboxed agent connects to."""


@dataclass(frozen=True, slots=True)
class Relay:
    """The routes of one attempt, and how the agent's environment names them."""

    routes: tuple[Route, ...]
    env: Mapping[str, str]
    """Gateway variables rewritten to the inside addresses."""
    hosts: Path
    """The sandbox's /etc/hosts: gateway host names resolve to loopback inside."""
    script: Path = FORWARDER

    def launcher(self, python: str) -> list[str]:
        """The argv prefix that starts the inside half in front of the agent's command."""
        return [python, "-I", "-S", str(self.script),
                *(f"{route.inner_port}={route.socket}" for route in self.routes), "--"]


def _plan(env: Mapping[str, str], folder: Path) -> tuple[list[tuple[str, int]], Relay]:
    """Which gateway addresses `env` names, and the relay that stands for them inside."""
    targets: list[tuple[str, int]] = []
    rewritten: dict[str, str] = {}
    names: list[str] = []
    routes: list[Route] = []
    for var in GATEWAY_URL_VARS:
        url = env.get(var)
        if not url:
            continue
        parts = urlsplit(url)
        if parts.hostname is None or parts.scheme not in ("http", "https"):
            continue
        port = parts.port or (443 if parts.scheme == "https" else 80)
        target = (parts.hostname, port)
        if target not in targets:
            targets.append(target)
            inner = port if port >= 1024 else LOW_PORT_STAND_IN + len(routes)
            routes.append(Route(parts.hostname, port, folder / f"gateway-{len(routes)}.sock",
                                inner))
        route = routes[targets.index(target)]
        try:
            ipaddress.ip_address(parts.hostname)
            host = "127.0.0.1"  # an address can't be pointed elsewhere: loopback instead
        except ValueError:
            host = parts.hostname  # a name keeps TLS checks valid; /etc/hosts points it home
            if host not in names and host != "localhost":
                names.append(host)
        auth = parts.netloc.rpartition("@")[0]
        netloc = f"{auth}@" if auth else ""
        rewritten[var] = urlunsplit(parts._replace(netloc=f"{netloc}{host}:{route.inner_port}"))
    hosts = folder / "hosts"
    hosts.write_text(f"127.0.0.1\t{' '.join(('localhost', *names))}\n"
                     "::1\tlocalhost ip6-localhost ip6-loopback\n")
    return targets, Relay(tuple(routes), rewritten, hosts)


@contextlib.asynccontextmanager
async def gateway_relay(env: Mapping[str, str], folder: Path) -> AsyncIterator[Relay]:
    """Listen on one socket per gateway address `env` names (ruflo's own gateway variables,
    never an agent's), connecting each caller to that address, for as long as the block runs."""
    targets, relay = _plan(env, folder)
    servers: list[asyncio.Server] = []
    piping: set[asyncio.Task[object]] = set()
    """Connections being carried: ended with the block, not left to the event loop's end."""

    def forward_to(host: str, port: int) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter],
                                                     Awaitable[None]]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            if task is not None:
                piping.add(task)
                task.add_done_callback(piping.discard)
            try:
                up_reader, up_writer = await asyncio.open_connection(host, port)
            except OSError:
                writer.close()
                return
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                writer.close()
                up_writer.close()

        return handle

    try:
        for (host, port), route in zip(targets, relay.routes, strict=True):
            servers.append(await asyncio.start_unix_server(forward_to(host, port),
                                                           path=str(route.socket)))
        yield relay
    finally:
        for server in servers:
            server.close()
        for task in list(piping):
            task.cancel()
        if piping:
            await asyncio.gather(*piping, return_exceptions=True)
        for server in servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    """One direction, end of stream passed on (the other direction may still be answering)."""
    try:
        while chunk := await source.read(65536):
            sink.write(chunk)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()
    except (OSError, RuntimeError):
        sink.close()  # a broken side ends the other direction too
