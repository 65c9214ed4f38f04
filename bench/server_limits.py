"""Server memory under hostile bodies: peak RSS of a real `ruflo serve` while 20 clients send
unauthenticated 50 MiB bodies at once (declared with Content-Length, then chunked, then bodies
of exactly the 1 MiB default limit), beside its idle RSS and CPU time, with RUFLO_AUTH=none and
=token. Target (issue 28): peak under 150 MB.

Runs the code on PYTHONPATH (this tree's src by default) and, with --before SRC (e.g.
/work/main/src), the same load on that code too, so the figure and its baseline come from one
run. The server is killed if it passes --kill-above MiB (the code before the limit keeps every
body in memory).

    .venv/bin/python bench/server_limits.py [--bodies 20] [--mib 50] [--before /work/main/src]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

SRC = Path(__file__).resolve().parents[1] / "src"
CHUNK = 1024 * 1024
TARGET_MIB = 150


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def status_field(pid: int, name: str) -> int:
    """A kB figure from /proc/<pid>/status (VmRSS, VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {name} for process {pid}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def reset_peak(pid: int) -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) so it covers the next round only."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@dataclass
class Watch:
    """Samples the server's RSS every 10 ms (the kernel's VmHWM catches what falls between
    samples); kills it above `kill_above` bytes."""

    pid: int
    kill_above: int
    peak: int = 0
    killed: bool = False
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                rss = status_field(self.pid, "VmRSS")
            except (OSError, RuntimeError):
                return
            self.peak = max(self.peak, rss)
            if rss > self.kill_above:
                os.kill(self.pid, signal.SIGKILL)
                self.killed = True
                return
            time.sleep(0.01)


def hostile_body(mib: int) -> bytes:
    """Valid JSON of exactly `mib` MiB that is costly to hold once parsed: a list of zeros."""
    size = mib * CHUNK
    zeros = (size - 2) // 2
    body = b"[" + b"0," * (zeros - 1) + b"0]"
    return body + b" " * (size - len(body))


async def send_body(port: int, body: bytes, *, chunked: bool) -> str:
    """One client: a POST /api/v2/hives head, then the body as fast as the server takes it;
    returns the status line's code, or how the connection ended (a server that answers and
    closes while the client still sends may reset the connection before the answer is read)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    framing = ("Transfer-Encoding: chunked" if chunked
               else f"Content-Length: {len(body)}")
    writer.write(f"POST /api/v2/hives HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                 f"Content-Type: application/json\r\n{framing}\r\n\r\n".encode())
    view = memoryview(body)

    async def pump() -> None:
        for start in range(0, len(body), CHUNK):
            chunk = view[start:start + CHUNK]
            if chunked:
                writer.write(f"{len(chunk):x}\r\n".encode())
            writer.write(chunk)
            if chunked:
                writer.write(b"\r\n")
            await writer.drain()
        if chunked:
            writer.write(b"0\r\n\r\n")
            await writer.drain()

    sending = asyncio.create_task(pump())
    try:
        line = await asyncio.wait_for(reader.readline(), timeout=300)
    except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
        line = b""
    sending.cancel()
    await asyncio.gather(sending, return_exceptions=True)
    writer.close()
    parts = line.split()
    return parts[1].decode() if len(parts) > 1 else "closed"


async def attack(port: int, bodies: int, body: bytes, *, chunked: bool) -> list[str]:
    return list(await asyncio.gather(*(send_body(port, body, chunked=chunked)
                                       for _ in range(bodies))))


def start_server(src: str, auth: str, data_dir: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = dict(os.environ, RUFLO_DATA_DIR=data_dir, RUFLO_AUTH=auth, RUFLO_CONFIG="",
               PYTHONPATH=src)
    for name in ("DATABASE_URL", "OPENAI_BASE_URL", "LITELLM_BASE_URL", "OPENAI_API_KEY"):
        env.pop(name, None)
    process = subprocess.Popen(
        [sys.executable, "-c", "from ruflo.cli import main; main()", "serve", "--port",
         str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process, port
        except httpx.HTTPError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("ruflo serve did not start")


def measure(label: str, src: str, auth: str, bodies: int, body: bytes, kill_above: int) -> None:
    """Three rounds on one server: the big bodies declared, the same chunked, and bodies of
    exactly the default limit (read and parsed: the most an accepted body can cost). Memory a
    round frees is not always given back to the system: "round start" shows what it left."""
    at_limit = hostile_body(1)
    with tempfile.TemporaryDirectory() as data:
        process, port = start_server(src, auth, data)
        try:
            time.sleep(1.0)
            idle = status_field(process.pid, "VmRSS")
            rounds = [("length", body, False), ("chunked", body, True),
                      ("at 1 MiB", at_limit, False)]
            for name, sent, chunked in rounds:
                if process.poll() is not None:
                    print(f"  {label:6} auth={auth:5} {name:8}: server gone")
                    continue
                start = status_field(process.pid, "VmRSS")
                fresh_peak = reset_peak(process.pid)
                watch = Watch(process.pid, kill_above)
                sampler = threading.Thread(target=watch.run, daemon=True)
                cpu_before = cpu_seconds(process.pid)
                sampler.start()
                began = time.perf_counter()
                answers = asyncio.run(attack(port, bodies, sent, chunked=chunked))
                wall = time.perf_counter() - began
                try:
                    cpu = cpu_seconds(process.pid) - cpu_before
                    hwm = status_field(process.pid, "VmHWM")
                except (OSError, RuntimeError):
                    cpu, hwm = float("nan"), watch.peak
                watch.stop.set()
                sampler.join()
                peak = max(watch.peak, hwm) if fresh_peak else watch.peak
                counts = {answer: answers.count(answer) for answer in sorted(set(answers))}
                verdict = (f"KILLED above {kill_above >> 20} MiB" if watch.killed
                           else "ok" if peak < TARGET_MIB << 20 else "over target")
                print(f"  {label:6} auth={auth:5} {name:8}: "
                      f"idle {idle / 2**20:5.1f} MiB, round start {start / 2**20:6.1f}, "
                      f"peak {peak / 2**20:7.1f} MiB "
                      f"({verdict}); wall {wall:6.2f} s, server CPU {cpu:6.2f} s; "
                      f"answers {counts}")
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bodies", type=int, default=20)
    parser.add_argument("--mib", type=int, default=50)
    parser.add_argument("--before", default=None,
                        help="src directory of the code to compare with (e.g. /work/main/src)")
    parser.add_argument("--kill-above", type=int, default=4096, help="MiB")
    args = parser.parse_args()
    print(f"{args.bodies} concurrent unauthenticated {args.mib} MiB bodies to POST /api/v2/hives; "
          f"target peak < {TARGET_MIB} MiB")
    body = hostile_body(args.mib)
    runs = [("after", str(SRC))] + ([("before", args.before)] if args.before else [])
    for label, src in runs:
        for auth in ("none", "token"):
            measure(label, src, auth, args.bodies, body, args.kill_above << 20)


if __name__ == "__main__":
    main()
