"""The model relay: a sandboxed outside agent's only road out, to the gateway and nowhere else.
Standard library only, because the inside half runs in the sandbox as a bare script
(`python -I -S relay.py PORT=SOCKET ... -- COMMAND...`), without ruflo importable.

Outside, ruflo listens on a Unix socket in the attempt's scratch folder and connects each caller
to the gateway's host and port, which only it knows. Inside (no network namespace of its own but
loopback), the script listens on 127.0.0.1:PORT, forwards each connection to the socket, and
becomes the agent's command; the agent's OPENAI_BASE_URL names that port.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import signal
import socket
import sys
import threading
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

GATEWAY_URL_VARS = ("OPENAI_BASE_URL", "LITELLM_BASE_URL")
"""Variables that name the gateway for a spawned agent (see ruflo.gateway.env)."""

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
    script: Path = Path(__file__)

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

    def forward_to(host: str, port: int) -> object:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                up_reader, up_writer = await asyncio.open_connection(host, port)
            except OSError:
                writer.close()
                return
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

        return handle

    try:
        for (host, port), route in zip(targets, relay.routes, strict=True):
            servers.append(await asyncio.start_unix_server(forward_to(host, port),  # type: ignore[arg-type]
                                                           path=str(route.socket)))
        yield relay
    finally:
        for server in servers:
            server.close()
        for server in servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while chunk := await source.read(65536):
            sink.write(chunk)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()
    except (OSError, RuntimeError):
        pass
    finally:
        if source.at_eof():
            with contextlib.suppress(OSError, RuntimeError):
                await sink.drain()
        sink.close()


# -- the inside half ---------------------------------------------------------------------------
def _copy(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def _serve(listener: socket.socket, path: str) -> None:
    while True:
        client, _ = listener.accept()
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(path)
        except OSError:
            client.close()
            upstream.close()
            continue
        threading.Thread(target=_copy, args=(client, upstream), daemon=True).start()
        threading.Thread(target=_copy, args=(upstream, client), daemon=True).start()


def main(args: list[str]) -> None:
    """Open the listeners, leave a forwarder behind (its own process, adopted by the sandbox's
    init, which ends it with the sandbox) and become the agent's command."""
    cut = args.index("--")
    listeners: list[tuple[socket.socket, str]] = []
    for spec in args[:cut]:
        port, _, path = spec.partition("=")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", int(port)))
        listener.listen(64)
        listeners.append((listener, path))
    command = args[cut + 1:]
    child = os.fork()
    if child == 0:
        if os.fork() != 0:
            os._exit(0)
        # The forwarder outlives a SIGTERM to the group so the agent keeps the model during its
        # grace period; the sandbox's end (or SIGKILL) ends it.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        for listener, path in listeners:
            threading.Thread(target=_serve, args=(listener, path), daemon=True).start()
        threading.Event().wait()
    os.waitpid(child, 0)
    for listener, _ in listeners:
        listener.close()
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
