"""Benchmark of cache-friendly prompts (issue 24): how much of each request of the built-in agent
is a byte-identical prefix of the request before it — what a provider's prompt cache can reuse —
measured on the requests a ScriptedGateway received, for this tree's code and for a baseline tree
(main before the change: `git -C /work/main worktree add /tmp/base-journal 6eb45d9`), in one run.

Each tree runs, in its own subprocess (PYTHONPATH=<tree>/src), the same scripted work
(tests/long_attempt.py) on a fresh SQLite store:
- one 20-turn attempt: for each request after the first, the share of its prompt (bytes: the tool
  list, then every message, as tests/long_attempt.prompt_text writes them) that the request
  before it shares as a prefix; printed as the lowest, the mean and the byte-weighted share, and
  how many requests begin with the whole request before them;
- the same agent's next task: the share of its first request that the last request of the task
  before shares (the tool list and the system prompt, if they did not change);
- the 20-turn attempt on an Anthropic model name (cache breakpoints on: the moving mark on the
  newest message is a byte change the measure counts, so the figure is also printed with the
  marks left aside, as Anthropic's cache compares the prompt).

Usage: python bench/prompt_prefix.py [--base /tmp/base-journal] [--turns 20]
(internally: python bench/prompt_prefix.py --measure TURNS MODEL)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))

from long_attempt import common_prefixes, long_rules  # noqa: E402

KEY = "sk-bench"


def figures(requests: list[dict[str, Any]], *, marks: bool = True) -> dict[str, Any]:
    found = common_prefixes(requests, marks=marks)
    shares = [common / after for _, after, common in found]
    return {"requests": len(requests), "lowest": min(shares),
            "mean": sum(shares) / len(shares),
            "weighted": sum(c for _, _, c in found) / sum(a for _, a, _ in found),
            "whole_before": sum(1 for before, _, common in found if common >= before)}


async def attempt(store: Any, gateway: Any, hive: Any, agent: Any, task: Any, workspace: Path,
                  model: str) -> None:
    from ruflo.agents.base import Limits, RunContext
    from ruflo.agents.loop import LLMExecutor
    from ruflo.gateway.client import GatewayClient

    client = GatewayClient(gateway.base_url, KEY, store=store)
    try:
        claimed = store.claim_task(hive.id, agent.id, lease_seconds=300, task_id=task.id)
        await LLMExecutor().run(claimed, agent, hive, RunContext(
            store=store, workspace=workspace, gateway=client, model=model,
            limits=Limits(max_turns=60)))
    finally:
        await client.aclose()


def measure(turns: int, model: str) -> dict[str, Any]:
    """Run in the tree under test (its ruflo on PYTHONPATH)."""
    from ruflo.gateway.scripted import ScriptedGateway
    from ruflo.model import Agent, Hive, Mode, Task
    from ruflo.store import open_store

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        workspace = root / "ws"
        workspace.mkdir()
        store = open_store(f"sqlite:///{root / 'ruflo.db'}")
        hive = Hive(id="hp", name="prefix", mode=Mode.SWARM, objective="write the parts",
                    workspace=str(workspace))
        agent = Agent(id="hp-a", hive_id=hive.id, name="ada", role="coder",
                      skills=("python",))
        tasks = [Task(id="hp-t1", hive_id=hive.id, title="Write the parts"),
                 Task(id="hp-t2", hive_id=hive.id, title="Write the parts again")]
        store.create_hive(hive, agents=[agent], tasks=tasks)
        gateway = ScriptedGateway({"keys": [KEY], "rules": long_rules(turns)})
        gateway.start()
        try:
            asyncio.run(attempt(store, gateway, hive, agent, tasks[0], workspace, model))
            first = list(gateway.requests)
            asyncio.run(attempt(store, gateway, hive, agent, tasks[1], workspace, model))
            second = list(gateway.requests)[len(first)]
        finally:
            gateway.stop()
            store.close()
    result = figures(first)
    (_, after, common), = common_prefixes([first[-1], second])
    result["next_task"] = common / after
    if "cache_control" in json.dumps(first):
        result["unmarked"] = figures(first, marks=False)
        (_, after, common), = common_prefixes([first[-1], second], marks=False)
        result["unmarked"]["next_task"] = common / after
    return result


def run_tree(tree: Path, turns: int, model: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree / "src"), "RUFLO_SANDBOX": "off"}
    done = subprocess.run([sys.executable, __file__, "--measure", str(turns), model], env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the measurement failed in {tree}:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.splitlines()[-1]))


def line(name: str, found: dict[str, Any]) -> str:
    return (f"  {name:<22} lowest {found['lowest']:6.1%}  mean {found['mean']:6.1%}  "
            f"byte-weighted {found['weighted']:6.1%}  whole request before: "
            f"{found['whole_before']}/{found['requests'] - 1}  next task: "
            f"{found['next_task']:6.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, default=Path("/tmp/base-journal"))
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--measure", nargs=2, metavar=("TURNS", "MODEL"))
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(int(args.measure[0]), args.measure[1])))
        return
    if not (args.base / "src" / "ruflo").is_dir():
        raise SystemExit(f"no baseline tree at {args.base}: git -C /work/main worktree add "
                         f"{args.base} 6eb45d9")
    here = Path(__file__).resolve().parents[1]
    wall, cpu = time.perf_counter(), time.process_time()
    print(f"{args.turns}-turn attempt: share of each request's prompt that is a byte-identical "
          "prefix of the request before")
    for model in ("gpt-4o-mini", "anthropic/claude-sonnet-4-5"):
        print(f" model {model}")
        ours = run_tree(here, args.turns, model)
        base = run_tree(args.base, args.turns, model)
        print(line("this branch:", ours))
        print(line(f"baseline ({args.base.name}):", base))
        if "unmarked" in ours:
            print(line("  marks left aside:", ours["unmarked"]))
        print(f"  ratio lowest {ours['lowest'] / base['lowest']:.3f}, next task "
              f"{ours['next_task'] / base['next_task']:.3f}")
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"wall {time.perf_counter() - wall:.1f} s, CPU {time.process_time() - cpu:.1f} s "
          f"(this process) + {children.ru_utime + children.ru_stime:.1f} s (measurements)")


if __name__ == "__main__":
    main()
