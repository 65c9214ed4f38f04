"""What the model relay adds to an agent's model call: the same requests sent straight to a
local ScriptedGateway (its own process) and through the relay (token check, hive check, budget
booking, forwarding, metering into a SQLite store), interleaved in one run. Reports the median
per plain call and the median time to the first streamed byte, wall and CPU, and the ratio to
the direct baseline. Target: at most +1 ms per plain call, +2 ms to the first streamed byte.

    .venv/bin/python bench/relay.py [--calls 300]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from gateway import start_gateway
from ruflo.gateway.base import CallContext
from ruflo.gateway.client import GatewayClient
from ruflo.model import Agent, Budget, Hive, Mode, new_id
from ruflo.store import open_store

ASK = {"model": "m", "messages": [{"role": "system", "content": "You are terse."},
                                  {"role": "user", "content": "What is the answer?"}],
       "max_tokens": 64}


async def timed(call: Callable[[], Awaitable[None]], wall: list[float],
                cpu: list[float]) -> None:
    started, busy = time.perf_counter(), time.process_time()
    await call()
    wall.append(time.perf_counter() - started)
    cpu.append(time.process_time() - busy)


async def measure(gateway_url: str, folder: Path, calls: int) -> dict[str, list[float]]:
    store = open_store(f"sqlite:///{folder / 'ruflo.db'}")
    hive_id = new_id()
    agent = Agent(id=new_id(), hive_id=hive_id, name="bench")
    # A capped budget: every relayed call books and settles, as a real hive's do.
    store.create_hive(Hive(id=hive_id, name="bench", mode=Mode.SWARM, objective="bench",
                           budget=Budget(max_tokens=10**12)), [agent])
    series: dict[str, list[float]] = {f"{arm} {what}": [] for arm in ("direct", "relay")
                                      for what in ("plain", "plain cpu", "first byte",
                                                   "first byte cpu")}
    async with GatewayClient(gateway_url, "sk-bench", store=store) as client:
        relay = await client.relay()
        with relay.attempt(CallContext(hive_id, agent.id)) as (token, _):
            arms = {"direct": (gateway_url, "sk-bench"), "relay": (f"{relay.url}/v1", token)}
            https = {arm: httpx.AsyncClient(base_url=url, timeout=30,
                                            headers={"authorization": f"Bearer {key}"})
                     for arm, (url, key) in arms.items()}

            def plain(http: httpx.AsyncClient) -> Callable[[], Awaitable[None]]:
                async def call() -> None:
                    answer = await http.post("/chat/completions", json=ASK)
                    answer.raise_for_status()
                return call

            def first_byte(http: httpx.AsyncClient) -> Callable[[], Awaitable[None]]:
                async def call() -> None:
                    async with http.stream("POST", "/chat/completions",
                                           json={**ASK, "stream": True}) as answer:
                        answer.raise_for_status()
                        async for _ in answer.aiter_raw():
                            break
                return call

            for _ in range(20):  # warm both roads (connections, caches) before measuring
                for http in https.values():
                    await plain(http)()
            for _ in range(calls):
                for arm, http in https.items():
                    await timed(plain(http), series[f"{arm} plain"],
                                series[f"{arm} plain cpu"])
                    await timed(first_byte(http), series[f"{arm} first byte"],
                                series[f"{arm} first byte cpu"])
            for http in https.values():
                await http.aclose()
    entries = len(store.ledger(hive_id=hive_id))
    store.close()
    if entries < 2 * calls:
        raise SystemExit(f"the relay metered {entries} calls, expected {2 * calls}")
    return series


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ruflo-bench-relay-") as scratch:
        process, url = start_gateway(Path(scratch))
        try:
            series = asyncio.run(measure(url, Path(scratch), args.calls))
        finally:
            process.terminate()
            process.wait()
    print(f"{args.calls} calls per road, interleaved; the gateway in its own process")
    for what, target in (("plain", 1.0), ("first byte", 2.0)):
        direct = statistics.median(series[f"direct {what}"]) * 1000
        relayed = statistics.median(series[f"relay {what}"]) * 1000
        direct_cpu = statistics.median(series[f"direct {what} cpu"]) * 1000
        relayed_cpu = statistics.median(series[f"relay {what} cpu"]) * 1000
        added = relayed - direct
        verdict = "ok" if added <= target else "OVER"
        print(f"{what:>10}: direct {direct:.2f} ms, relay {relayed:.2f} ms "
              f"(+{added:.2f} ms, x{relayed / direct:.2f}; target +{target:g} ms: {verdict}); "
              f"cpu direct {direct_cpu:.2f} ms, relay {relayed_cpu:.2f} ms "
              f"(x{relayed_cpu / max(direct_cpu, 1e-9):.2f})")


if __name__ == "__main__":
    main()
