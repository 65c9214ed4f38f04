"""What the merge-conflict rule (engine/conflicts.py) costs the simulator: decisions per CPU second
of a swarm and a company run on the mixed shape, measured in the same run for
- baseline: the simulator of another checkout (`--baseline SRC`, e.g. a worktree of main's
  `src`; without it, the baseline is this checkout without a conflict rule),
- this checkout without a conflict rule (the hot path's one added check),
- this checkout with the rule's bookkeeping but p = 0 (no conflict drawn: the same run, so the
  difference is what the rule itself costs),
- this checkout with the rule on (FILES_POOL files, 2 per task, p = 0.3: more tasks, the
  integration work, so more decisions; its figure is the whole run's).
Each case runs in its own process, ROUNDS times alternating; the best round of each is shown.
Usage: python bench/sim_conflicts.py [--baseline PATH/TO/src] [--agents N] [--tasks N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1] / "src"
ROUNDS = 3
FILES_POOL = 2000

CASE = """
import json, sys
from ruflo.engine.shapes import shape_agents, shape_tasks
from ruflo.engine.simulate import simulate
mode, agents, tasks, rule = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
p = {"p0": 0.0, "on": 0.3}.get(rule)
board = shape_tasks("mixed", tasks, seed=1)
crew = shape_agents("mixed", agents)
extra = {}
if p is not None:
    from ruflo.engine.conflicts import ConflictRule, draw_files
    extra["conflicts"] = ConflictRule(draw_files([t.id for t in board], int(sys.argv[5]), 2, 1), p)
r = simulate(board, crew, mode, seed=1, record=False, **extra)
print(json.dumps({"decisions": r.decisions, "cpu": r.cpu_seconds, "wall": r.wall_seconds,
                  "conflicts": getattr(r, "merge_conflicts", 0), "makespan": r.makespan}))
"""


def measure(src: Path, mode: str, agents: int, tasks: int, rule: str) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(src))
    done = subprocess.run([sys.executable, "-c", CASE, mode, str(agents), str(tasks), rule,
                           str(FILES_POOL)],
                          env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", type=Path, default=None)
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--tasks", type=int, default=20_000)
    args = parser.parse_args()
    cases = [("baseline", args.baseline or HERE, "off"), ("this, no rule", HERE, "off"),
             ("this, p = 0", HERE, "p0"), ("this, p = 0.3", HERE, "on")]
    print(f"## simulator cost of the conflict rule: mixed shape, {args.agents} agents x "
          f"{args.tasks:,} tasks, best of {ROUNDS} rounds per case (separate processes)")
    print(f"baseline: {args.baseline or 'this checkout without a rule'}")
    started, cpu_started = time.perf_counter(), time.process_time()
    for mode in ("swarm", "company"):
        best: dict[str, dict[str, float]] = {}
        for _ in range(ROUNDS):
            for name, src, rule in cases:
                got = measure(src, mode, args.agents, args.tasks, rule)
                if name not in best or got["cpu"] < best[name]["cpu"]:
                    best[name] = got
        base = best["baseline"]["decisions"] / best["baseline"]["cpu"]
        for name, _, _ in cases:
            r = best[name]
            dps = r["decisions"] / r["cpu"]
            print(f"{mode:8} {name:14} {dps:>10,.0f} decisions/CPU-s  ratio {dps / base:.3f}  "
                  f"({r['decisions']:,.0f} decisions, {r['cpu']:.2f} CPU-s, {r['wall']:.2f} "
                  f"wall-s, {r['conflicts']:,.0f} conflicts, makespan {r['makespan']:.1f})")
    print(f"bench wall {time.perf_counter() - started:.1f} s (children's CPU in their lines; "
          f"this process {time.process_time() - cpu_started:.2f} CPU-s)")


if __name__ == "__main__":
    main()
