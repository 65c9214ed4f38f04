"""Server speed: requests/s and p99 of the probe path under a loopback load generator, and the
time a chat answer's first token gains by going through ruflo instead of straight to the gateway.

Starts one `ruflo serve` process (embedded SQLite store in a temp dir) in front of a
ScriptedGateway, runs a keep-alive raw-socket load generator (asyncio) against
/api/v2/feature-flags with 1 and 8 connections, then measures time to first streamed token of
the same scripted answer through ruflo and directly, in the same run. Targets (issue 7):
>= 2,000 req/s with p99 < 20 ms; <= 10 ms added to the first token.

    .venv/bin/python bench/server.py [--seconds 5] [--chats 40]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from ruflo.gateway.scripted import ScriptedGateway

PROBE = "/api/v2/feature-flags"
PAPERCLIP_HEALTH = {1: 712.0, 8: 1782.0}
"""The peer's health endpoint, req/s with 1 and 8 clients (issue 15)."""
TARGET_RPS = 2000.0
ANSWER = "The quick brown fox jumps over the lazy dog. " * 4


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def keep_alive_load(port: int, connections: int, seconds: float) -> tuple[int, list[float]]:
    """Each connection sends the next request when the last answer has arrived."""
    request = f"GET {PROBE} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def one() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                started = time.perf_counter()
                if started >= deadline:
                    return
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(f"probe answered {head[:40]!r}")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - started)
        finally:
            writer.close()

    began = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(connections)))
    elapsed = time.perf_counter() - began
    return round(len(latencies) / elapsed), latencies


def first_token_through_ruflo(base: str, chats: int) -> list[float]:
    times: list[float] = []
    with httpx.Client(base_url=base, timeout=30) as client:
        conversation = client.post("/api/v2/conversations", json={"model": "scripted"}).json()
        path = f"/api/v2/conversations/{conversation['conversationId']}/messages"
        for n in range(chats + 2):
            started = time.perf_counter()
            first: float | None = None
            with client.stream("POST", path, json={"inputs": f"bench {n}"}) as answer:
                for line in answer.iter_lines():
                    if first is None and line.startswith('data: {"type":"stream"'):
                        first = time.perf_counter() - started
            if first is None:
                raise RuntimeError("ruflo streamed no token")
            if n >= 2:  # the first two warm the connection pools
                times.append(first)
    return times


def first_token_direct(gateway_url: str, chats: int) -> list[float]:
    times: list[float] = []
    with httpx.Client(timeout=30) as client:
        for n in range(chats + 2):
            started = time.perf_counter()
            first: float | None = None
            with client.stream("POST", f"{gateway_url}/chat/completions",
                               headers={"Authorization": "Bearer sk-bench"},
                               json={"model": "scripted", "stream": True,
                                     "stream_options": {"include_usage": True},
                                     "messages": [{"role": "user",
                                                   "content": f"bench {n}"}]}) as answer:
                for line in answer.iter_lines():
                    if first is None and '"content": "' in line and '"content": ""' not in line:
                        first = time.perf_counter() - started
            if first is None:
                raise RuntimeError("the gateway streamed no token")
            if n >= 2:
                times.append(first)
    return times


def start_server(port: int, gateway_url: str, data_dir: str) -> tuple[subprocess.Popen[bytes],
                                                                       float]:
    env = dict(os.environ, RUFLO_DATA_DIR=data_dir, OPENAI_BASE_URL=gateway_url,
               OPENAI_API_KEY="sk-bench", RUFLO_AUTH="none")
    env.pop("DATABASE_URL", None)
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-c", "from ruflo.cli import main; main()", "serve", "--port",
         str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}{PROBE}", timeout=1).status_code == 200:
                return process, time.perf_counter() - started
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("ruflo serve did not start")
        time.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="load per connection count")
    parser.add_argument("--chats", type=int, default=40, help="chat answers timed each way")
    args = parser.parse_args()
    try:
        import uvloop

        run = uvloop.run
    except ImportError:
        run = asyncio.run

    script = {"models": ["scripted"], "default": {"content": ANSWER, "chunk": 8}}
    with ScriptedGateway(script) as gateway_url, tempfile.TemporaryDirectory() as data:
        port = free_port()
        process, ready_after = start_server(port, gateway_url, str(Path(data) / "ruflo"))
        try:
            print(f"ruflo serve: ready after {ready_after * 1000:.0f} ms (process start to first "
                  "probe answer)")
            run(keep_alive_load(port, 8, 1.0))  # warm-up
            for connections in (1, 8):
                rps, latencies = run(keep_alive_load(port, connections, args.seconds))
                p50 = percentile(latencies, 0.50) * 1000
                p99 = percentile(latencies, 0.99) * 1000
                verdict = "ok" if rps >= TARGET_RPS and p99 < 20 else "MISSED"
                print(f"{PROBE}, {connections} connection(s): {rps:,} req/s, p50 {p50:.2f} ms, "
                      f"p99 {p99:.2f} ms | target >= 2,000 req/s & p99 < 20 ms: {verdict} "
                      f"(x{rps / TARGET_RPS:.1f} of target; x{rps / PAPERCLIP_HEALTH[connections]:.1f}"
                      f" of Paperclip's {PAPERCLIP_HEALTH[connections]:,.0f} req/s)")
            direct = first_token_direct(gateway_url, args.chats)
            through = first_token_through_ruflo(f"http://127.0.0.1:{port}", args.chats)
            direct_ms = statistics.median(direct) * 1000
            through_ms = statistics.median(through) * 1000
            added = through_ms - direct_ms
            print(f"first streamed token, median of {args.chats}: direct to the gateway "
                  f"{direct_ms:.2f} ms, through ruflo {through_ms:.2f} ms "
                  f"(p90 {percentile(through, 0.9) * 1000:.2f} ms) -> added {added:.2f} ms "
                  f"| target <= 10 ms: {'ok' if added <= 10 else 'MISSED'} "
                  f"(x{through_ms / direct_ms:.2f} of direct)")
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                print("ruflo serve did not end within 15 s of SIGTERM")


if __name__ == "__main__":
    main()
