"""Benchmark of the simulator and the policies (issues 5 and 6): decisions per second at 1,000
agents x 100,000 tasks; makespan/LB of swarm, company, round robin and solo on three shapes, with
and without 30% of the agents killed at half time; and the wall time of a 10,000-agent x
1,000,000-task swarm run. Usage: python bench/swarm.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time

from ruflo.engine.shapes import SHAPES, shape_agents, shape_tasks
from ruflo.engine.simulate import KillPlan, SimResult, simulate

MODES = ("swarm", "company", "round_robin", "solo")
TARGET_DPS = 20_000
TARGET_RATIO = 1.15


def line(text: str = "") -> None:
    print(text, flush=True)


def decisions_per_second(n_agents: int, n_tasks: int) -> bool:
    line(f"## Decisions per second: {n_agents:,} agents x {n_tasks:,} tasks (mixed shape)")
    tasks = shape_tasks("mixed", n_tasks, seed=1)
    agents = shape_agents("mixed", n_agents)
    swarm = simulate(tasks, agents, "swarm", seed=1)
    # Baseline from the same run: round robin's decision is a heap pop, the cheapest there is.
    baseline = simulate(tasks, agents, "round_robin", seed=1)
    line("(whole simulation timed; per CPU second is what the simulator costs, per wall second "
         "also counts whatever else runs on the machine)")
    for name, r in (("swarm", swarm), ("round_robin", baseline)):
        line(f"{name:11} {r.decisions_per_cpu_second:>9,.0f} /CPU-s {r.decisions_per_second:>9,.0f} "
             f"/wall-s ({r.decisions:,} decisions, {r.cpu_seconds:.2f} CPU-s, "
             f"{r.wall_seconds:.2f} wall-s)")
    dps = swarm.decisions_per_cpu_second
    ok = dps >= TARGET_DPS
    line(f"swarm / round_robin baseline = {dps / baseline.decisions_per_cpu_second:.2f}; "
         f"swarm / target {TARGET_DPS:,} = {dps / TARGET_DPS:.2f} [{'ok' if ok else 'MISSED'}]")
    line()
    return ok


def shapes_table(n_agents: int, n_tasks: int) -> bool:
    line(f"## makespan / LB on three shapes: {n_agents} agents x {n_tasks:,} tasks, seed 1")
    line("kill: 30% of the agents at half of that mode's makespan without the kill")
    header = (f"{'shape':6} {'mode':12} {'LB':>8} {'makespan':>9} {'ratio':>6} {'util':>5} "
              f"{'coord tok':>10} | {'killed':>6} {'makespan':>9} {'ratio':>6} {'done':>11} "
              f"{'recovered':>9}")
    line(header)
    line("-" * len(header))
    ok = True
    for shape in SHAPES:
        tasks = shape_tasks(shape, n_tasks, seed=1)
        agents = shape_agents(shape, n_agents)
        for mode in MODES:
            base: SimResult = simulate(tasks, agents, mode, seed=1)
            hit = simulate(tasks, agents, mode, seed=1, kill=KillPlan(0.3, base.makespan / 2))
            line(
                f"{shape:6} {mode:12} {base.lower_bound:8.1f} {base.makespan:9.1f} "
                f"{base.ratio:6.3f} {base.utilisation:5.2f} {base.coordination_tokens:10,} | "
                f"{hit.killed:6} {hit.makespan:9.1f} {hit.ratio:6.3f} "
                f"{f'{hit.done}/{hit.tasks}':>11} {f'{hit.recovered}/{hit.orphaned}':>9}"
            )
            if not hit.all_done or not base.all_done:
                line(f"  !! not every task completed ({shape}, {mode})")
                ok = False
            if mode == "swarm" and shape in ("wide", "mixed") and base.ratio > TARGET_RATIO:
                line(f"  !! swarm makespan/LB {base.ratio:.3f} above {TARGET_RATIO}")
                ok = False
    line(f"targets: swarm ratio <= {TARGET_RATIO} on wide and mixed; every task done after the "
         f"kill [{'ok' if ok else 'MISSED'}]")
    line()
    return ok


def big_run(n_agents: int, n_tasks: int) -> bool:
    line(f"## Scale: {n_agents:,} agents x {n_tasks:,} tasks (swarm, mixed shape)")
    started = time.perf_counter()
    tasks = shape_tasks("mixed", n_tasks, seed=1)
    agents = shape_agents("mixed", n_agents)
    generated = time.perf_counter() - started
    result = simulate(tasks, agents, "swarm", seed=1)
    total = time.perf_counter() - started
    line(f"generate {generated:.1f} s + simulate {result.wall_seconds:.1f} s = {total:.1f} s wall "
         f"(simulate {result.cpu_seconds:.1f} CPU-s); {result.decisions:,} decisions "
         f"({result.decisions_per_cpu_second:,.0f}/CPU-s); "
         f"makespan/LB {result.ratio:.3f}; done {result.done:,}/{result.tasks:,}")
    line()
    return result.all_done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller boards (about 30 s)")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.quick:
        results = [decisions_per_second(1_000, 20_000), shapes_table(50, 2_000),
                   big_run(2_000, 100_000)]
    else:
        results = [decisions_per_second(1_000, 100_000), shapes_table(100, 5_000),
                   big_run(10_000, 1_000_000)]
    line(f"total bench time {time.perf_counter() - started:.0f} s")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
