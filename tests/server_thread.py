"""A real ruflo server for tests: uvicorn serving the app on a free loopback port in a thread
(shared by the server, UI and worker tests)."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

from ruflo.gateway.client import GatewayClient
from ruflo.server.listening import build_server
from waiting import wait_until


def free_port() -> int:
    """A loopback port free now (bound, then released): for a server started on it next, or as
    an address nothing listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class ServerThread:
    """uvicorn serving the app in a thread, with the GatewayClient closed in that loop."""

    def __init__(self, app: Any, gateway_client: GatewayClient | None, *,
                 bind: str = "127.0.0.1") -> None:
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say so, and
        # without it Nagle + delayed ACK add 40 ms to every answer.
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.bind((bind, 0))
        self.port = self.sock.getsockname()[1]
        self.host = "127.0.0.1" if bind == "0.0.0.0" else bind
        self.server: Any = build_server(app, bind, self.port)
        self.gateway_client = gateway_client
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            try:
                await self.server.serve(sockets=[self.sock])
            finally:
                if self.gateway_client is not None:
                    await self.gateway_client.aclose()

        asyncio.run(main())

    def start(self) -> str:
        self.thread.start()
        wait_until(lambda: self.server.started or not self.thread.is_alive(),
                   what="the ruflo server did not start")
        if not self.server.started:
            raise RuntimeError("the ruflo server did not start")
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        assert not self.thread.is_alive(), "server did not stop"
