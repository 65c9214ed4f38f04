"""`ruflo mcp --transport http` (a real subprocess) behind the web server's gate: foreign Host
names, writes from other origins, bodies over the limit and JSON nested too deep are refused
before the SDK parses anything, and a real MCP client still works."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_transports import RUFLO, call, free_port, server_env, wait_for_port

from mcp import Client

pytestmark = pytest.mark.integration

LIMIT = 64 * 1024
INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
              "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                         "clientInfo": {"name": "gate-test", "version": "1"}}}
ACCEPT = {"Accept": "application/json, text/event-stream"}


@pytest.fixture
def mcp_port(tmp_path: Path) -> Iterator[int]:
    port = free_port()
    env = server_env(tmp_path)
    env["RUFLO_MAX_BODY_BYTES"] = str(LIMIT)
    process = subprocess.Popen([RUFLO, "mcp", "--transport", "http", "--port", str(port)],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, process)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}",
                                  "127.0.0.1.evil.example:{port}", "[::2]:{port}"])
def test_foreign_hosts_are_refused(mcp_port: int, host: str) -> None:
    answer = httpx.post(f"http://127.0.0.1:{mcp_port}/mcp", json=INITIALIZE, timeout=10,
                        headers={**ACCEPT, "Host": host.format(port=mcp_port)})
    assert answer.status_code == 421, answer.text
    assert answer.json()["error"] == "misdirected"


@pytest.mark.parametrize("headers", [{"Origin": "http://evil.example"}, {"Origin": "null"},
                                     {"Sec-Fetch-Site": "cross-site"},
                                     {"Origin": "http://localhost:1", "Sec-Fetch-Site": "same-site"}])
def test_writes_from_other_origins_are_refused(mcp_port: int, headers: dict[str, str]) -> None:
    answer = httpx.post(f"http://127.0.0.1:{mcp_port}/mcp", json=INITIALIZE, timeout=10,
                        headers={**ACCEPT, **headers})
    assert answer.status_code == 403, answer.text


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_non_json_writes_are_refused(mcp_port: int, content_type: str) -> None:
    answer = httpx.post(f"http://127.0.0.1:{mcp_port}/mcp", content=json.dumps(INITIALIZE),
                        timeout=10, headers={**ACCEPT, "Content-Type": content_type})
    assert answer.status_code == 415, answer.text


def test_large_and_deep_bodies_are_refused(mcp_port: int) -> None:
    with socket.create_connection(("127.0.0.1", mcp_port), timeout=20) as sock:
        sock.sendall(f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{mcp_port}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {50 * 2**20}\r\n\r\n"
                     .encode())
        assert sock.recv(65536).startswith(b"HTTP/1.1 413")
    deep = {**INITIALIZE, "params": {**INITIALIZE["params"],  # type: ignore[dict-item]
                                     "capabilities": {"x": json.loads("[" * 300 + "]" * 300)}}}
    answer = httpx.post(f"http://127.0.0.1:{mcp_port}/mcp", json=deep, timeout=10,
                        headers=ACCEPT)
    assert answer.status_code == 422, answer.text
    assert "nested deeper than 64" in answer.json()["message"]


async def test_a_real_client_still_works(mcp_port: int) -> None:
    async with Client(f"http://127.0.0.1:{mcp_port}/mcp") as client:
        made = await call(client, "create_hive", name="gate-hive", objective="ship")
        assert made["hive"]["name"] == "gate-hive"
    async with Client(f"http://localhost:{mcp_port}/mcp") as client:
        status = await call(client, "board_status", hive="gate-hive")
        assert status["counts"]["open"] == 0
