"""all-MiniLM-L6-v2 per new query: numpy against ONNX Runtime with int8 weights (`ruflo mcp`'s), in
one process, queries taken in turn so all meet the same machine; also ONNX Runtime in float, on
one thread and with each policy for its idle threads (spin or sleep), and what each engine costs
to set up in a fresh process (the one-shot CLI's choice).

    .venv/bin/python bench/embeddings.py [--rounds N]

Wall-clock and CPU (user+sys of the whole process, ONNX Runtime's pool threads included) per
query; medians. The machine may be shared: CPU time suffers less from that than wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruflo.memory.semantic import MiniLMEncoder, map_safetensors

QUESTIONS = [
    "how do I bake a loaf using wild yeast",
    "containers crash because they run out of RAM in kubernetes",
    "deadline for paying sales taxes to the government",
    "my kitty will not eat her kibble",
    "how long are our DB dumps retained in cloud storage",
    "what to do when a secret token is exposed in source control",
]


@dataclass
class Timing:
    name: str
    walls: list[float]
    cpus: list[float]

    @property
    def wall_ms(self) -> float:
        return statistics.median(self.walls) * 1000

    @property
    def p90_ms(self) -> float:
        ordered = sorted(self.walls)
        return ordered[int(len(ordered) * 0.9)] * 1000

    @property
    def cpu_ms(self) -> float:
        return statistics.median(self.cpus) * 1000

    def line(self, reference: Timing | None = None) -> str:
        ratio = f"; {reference.wall_ms / self.wall_ms:.1f}x quicker than {reference.name}" \
            if reference is not None else ""
        return (f"{self.name}: {self.wall_ms:.2f} ms median (p90 {self.p90_ms:.2f} ms), "
                f"CPU {self.cpu_ms:.2f} ms{ratio}")


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def per_query(rounds: int, *, variants: bool = True) -> list[Timing]:
    """Per-query times of each engine, a new query each time, the engines taking turns. The first
    is numpy's, the second ONNX Runtime's with int8 weights as `ruflo mcp` runs it; `variants`
    adds ONNX Runtime in float, int8 on one thread and int8 spinning within runs (spinning after
    runs too would tax whoever runs next: see spinning())."""
    from ruflo.memory.onnx_encoder import OnnxMiniLMEncoder

    numpy_encoder = MiniLMEncoder()  # first: it imports numpy with BLAS on one thread, as ruflo does
    onnx_encoder = OnnxMiniLMEncoder(int8=True)
    engines: dict[str, Callable[[str], Any]] = {
        "numpy": lambda text: numpy_encoder.encode([text]),
        "ONNX Runtime, int8": lambda text: onnx_encoder.encode([text]),
    }
    if variants:
        engines["ONNX Runtime, float"] = session_runner(numpy_encoder, int8=False)
        engines["ONNX Runtime, int8, one thread"] = session_runner(numpy_encoder, threads=1)
        engines["ONNX Runtime, int8, spinning within runs"] = session_runner(
            numpy_encoder, spinning="within runs")
    timings = {name: Timing(name, [], []) for name in engines}
    for n in range(5):  # warm: numpy copies its weights on the second call, caches fill
        for encode in engines.values():
            encode(f"warm up {n}")
    for n in range(rounds):
        text = f"{QUESTIONS[n % len(QUESTIONS)]} (question {n})"
        for name, encode in engines.items():
            cpu, wall = time.process_time(), time.perf_counter()
            encode(text)
            timings[name].walls.append(time.perf_counter() - wall)
            timings[name].cpus.append(time.process_time() - cpu)
    return list(timings.values())


def session_runner(encoder: MiniLMEncoder, *, int8: bool = True,
                   **options: Any) -> Callable[[str], Any]:
    """A query's vector from a session of its own, built with inference_session's `options`."""
    import onnxruntime

    from ruflo.memory.onnx_encoder import graph_path, inference_session, session_weights

    np = encoder.np
    weights = session_weights(np, map_safetensors(np, encoder.weights_path),
                              layers=encoder.layers, int8=int8)
    session = inference_session(onnxruntime, graph_path(int8).read_bytes(), weights, **options)

    def run(text: str) -> Any:
        ids, mask = encoder.token_ids([text])
        return session.run(None, {"embeddings": encoder.embed(ids), "mask": mask})
    return run


def spinning(queries: int, gap: float) -> list[tuple[str, Timing, float]]:
    """Each policy for idle pool threads alone (int8 weights) (one after the other, so no policy's spinning
    threads tax another's), and one thread: per query when queries come `gap` seconds apart, as
    an agent's do, and the CPU the process burns per query, gaps included."""
    encoder = MiniLMEncoder()
    found = []
    policies: dict[str, dict[str, Any]] = {
        "spinning never": {"spinning": "never"},
        "spinning within runs": {"spinning": "within runs"},
        "spinning always": {"spinning": "always"},
        "one thread": {"threads": 1},
    }
    for policy, options in policies.items():
        run = session_runner(encoder, **options)
        for n in range(5):
            run(f"warm up {n}")
        timing = Timing(policy, [], [])
        before = os.times()
        for n in range(queries):
            text = f"{QUESTIONS[n % len(QUESTIONS)]} (question {n})"
            time.sleep(gap)
            cpu, wall = time.process_time(), time.perf_counter()
            run(text)
            timing.walls.append(time.perf_counter() - wall)
            timing.cpus.append(time.process_time() - cpu)
        after = os.times()
        total = (after.user - before.user + after.system - before.system) / queries * 1000
        del run  # its pool threads stop
        found.append((policy, timing, total))
    return found


SETUP = """
import json, sys, time
steps = {}
mark = time.perf_counter()
def step(name):
    global mark
    now = time.perf_counter()
    steps[name] = now - mark
    mark = now
from ruflo.memory.semantic import MiniLMEncoder, map_safetensors
encoder = MiniLMEncoder()
step("numpy, vocabulary, weights mapped")
query = ["how do I bake a loaf using wild yeast"]
if sys.argv[1] == "numpy":
    encoder.encode(query)
    step("first query")
else:
    import onnxruntime
    step("import onnxruntime")
    from ruflo.memory.onnx_encoder import graph_path, inference_session, session_weights
    np = encoder.np
    weights = session_weights(np, map_safetensors(np, encoder.weights_path),
                              layers=encoder.layers, int8=True)
    model = graph_path(True).read_bytes()
    step("weights (int8) and graph")
    session = inference_session(onnxruntime, model, weights)
    step("session")
    ids, mask = encoder.token_ids(query)
    session.run(None, {"embeddings": encoder.embed(ids), "mask": mask})
    step("first query")
print(json.dumps(steps))
"""


def setup_costs(runs: int) -> dict[str, dict[str, float]]:
    """Median seconds of each step, in a fresh process, to the first query's vector."""
    found: dict[str, dict[str, float]] = {}
    for engine in ("numpy", "ONNX Runtime, int8"):
        samples = [json.loads(subprocess.run([sys.executable, "-c", SETUP, engine], check=True,
                                             capture_output=True, text=True).stdout)
                   for _ in range(runs)]
        found[engine] = {key: statistics.median(s[key] for s in samples) for key in samples[0]}
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300, help="queries per engine")
    args = parser.parse_args()
    print(f"per new query, back to back ({args.rounds} each, engines in turn):")
    timings = per_query(args.rounds)
    for timing in timings:
        print("  " + timing.line(timings[0] if timing is not timings[0] else None))
    print(f"  process RSS with all of them built: {rss_mb():.0f} MB")
    gap = 0.05
    print(f"ONNX Runtime's pool threads, queries {gap * 1000:.0f} ms apart ({args.rounds // 3} "
          "each, one policy after the other):")
    for policy, timing, total in spinning(args.rounds // 3, gap):
        print(f"  {timing.line()}; CPU per query with the gap after it {total:.2f} ms"
              + (" (as ruflo mcp runs)" if policy == "spinning never" else ""))
    print("fresh process to the first query's vector (medians of 5):")
    for engine, steps in setup_costs(5).items():
        parts = " + ".join(f"{name} {seconds * 1000:.0f}" for name, seconds in steps.items())
        print(f"  {engine}: {sum(steps.values()) * 1000:.0f} ms = {parts}")
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs, load average {load[0]:.1f} {load[1]:.1f} "
          f"{load[2]:.1f}")


if __name__ == "__main__":
    main()
