"""What tracing adds to a gateway call: the same metered chat calls (bench/gateway.py's
measurement, to one local ScriptedGateway) with tracing off and on, each in a fresh process.
On, spans go over OTLP/HTTP to a local sink that answers 200 (batching and protobuf encoding
included). Prints median wall time and client CPU per call, and the ratio on/off.

    .venv/bin/python bench/telemetry.py [--calls 400]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from gateway import measure, start_gateway


class Sink(BaseHTTPRequestHandler):
    """An OTLP/HTTP endpoint that takes every export and keeps nothing."""

    received = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        Sink.received += 1
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def child(base_url: str, calls: int) -> None:
    from ruflo import telemetry

    with tempfile.TemporaryDirectory() as tmp:
        times, _, cpu = asyncio.run(measure(base_url, Path(tmp), calls))
    telemetry.flush()
    print(json.dumps({"wall_ms": statistics.median(times) * 1000,
                      "cpu_ms": cpu["ruflo"] / len(times) * 1000,
                      "traced": telemetry.tracing_on()}))


def run(base_url: str, calls: int, env: dict[str, str]) -> dict[str, float]:
    done = subprocess.run([sys.executable, __file__, "--child", base_url, "--calls", str(calls)],
                          env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the measuring process failed: {done.stderr[-2000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--child", metavar="BASE_URL")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.calls)
        return
    sink = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    traced_env = {**base_env, "OTEL_EXPORTER_OTLP_ENDPOINT":
                  f"http://127.0.0.1:{sink.server_address[1]}", "OTEL_SERVICE_NAME": "bench"}
    with tempfile.TemporaryDirectory() as tmp:
        process, base_url = start_gateway(Path(tmp))
        try:
            rounds = {"off": [], "on": []}  # type: dict[str, list[dict[str, float]]]
            for _ in range(2):  # alternate, so drift in machine load hits both alike
                rounds["off"].append(run(base_url, args.calls, base_env))
                rounds["on"].append(run(base_url, args.calls, traced_env))
        finally:
            process.terminate()
            process.wait(timeout=10)
            sink.shutdown()
    assert not any(r["traced"] for r in rounds["off"])
    assert all(r["traced"] for r in rounds["on"])
    assert Sink.received > 0, "no spans reached the OTLP sink"
    off = {k: statistics.median(r[k] for r in rounds["off"]) for k in ("wall_ms", "cpu_ms")}
    on = {k: statistics.median(r[k] for r in rounds["on"]) for k in ("wall_ms", "cpu_ms")}
    print(f"gateway chat call through GatewayClient, median of {args.calls} x 2 processes each:")
    for key, label in (("wall_ms", "wall"), ("cpu_ms", "client CPU")):
        print(f"  {label:10s} off {off[key]:7.3f} ms, on {on[key]:7.3f} ms: tracing adds "
              f"{on[key] - off[key]:+.3f} ms per call ({on[key] / off[key]:.2f}x)")
    print(f"  OTLP exports received by the sink: {Sink.received}")


if __name__ == "__main__":
    main()
