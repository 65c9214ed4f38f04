"""Benchmark of journaled attempts (issue 24): the tokens a 10-turn attempt of the built-in agent
costs when nothing goes wrong, when its `ruflo orchestrate` is SIGKILLed while the model call of
turn 6 is in flight and `ruflo hive resume` continues it from the journal, and when it starts
over after the same kill (the journal closed first: what ruflo did before journals), in one run.

The model is a ScriptedGateway (tests/long_attempt.py's rules, the ones the tests run); the
tokens are the gateway's own count of what it served (prompt + completion, four characters a
token), the call cut by the kill included: a provider bills a call whose answer was lost. The
bound to check: resumed - uninterrupted <= the prompt of the call that was in flight.

Usage: python bench/resume.py [--turns 10] [--kill-turn 6]
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from long_attempt import long_rules
from ruflo.agents.gitwork import init_repo
from ruflo.gateway.scripted import ScriptedGateway
from ruflo.gateway.scripted_answer import estimate_tokens, message_text
from ruflo.store import open_store
from waiting import wait_until

RUFLO = Path(sys.executable).parent / "ruflo"
KEY = "sk-bench"
WORKLOAD = """\
name: long
objective: write the parts
tasks:
  - id: parts
    title: Write the parts
"""


def environment(gateway: ScriptedGateway, data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENAI_", "LITELLM_", "RUFLO_", "DATABASE_"))}
    env.update(OPENAI_BASE_URL=gateway.base_url, OPENAI_API_KEY=KEY, RUFLO_DATA_DIR=str(data),
               RUFLO_LEASE_SECONDS="2", XDG_CONFIG_HOME=str(data / "config"))
    return env


def run(gateway: ScriptedGateway, folder: Path, *, turns: int, kill_turn: int | None,
        start_over: bool) -> dict[str, Any]:
    """One attempt from a fresh store and repository; the gateway's count of what it served."""
    gateway.reset({"keys": [KEY], "rules": long_rules(turns, hold_turn=kill_turn)})
    if kill_turn is None:
        gateway.open_gate("held")
    folder.mkdir()
    data, workspace, workload = folder / "data", folder / "ws", folder / "work.yaml"
    workspace.mkdir()
    (workspace / "README").write_text("the project\n")
    init_repo(workspace)
    workload.write_text(WORKLOAD)
    env = environment(gateway, data)
    command = [str(RUFLO), "orchestrate", "--workload", str(workload), "--agents", "1",
               "--workspace", str(workspace), "--json"]
    before_kill = None
    in_flight = 0
    if kill_turn is None:
        subprocess.run(command, env=env, check=True, capture_output=True, timeout=300)
    else:
        first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        try:
            wait_until(lambda: gateway.chat_count == kill_turn, within=120,
                       what=f"turn {kill_turn} asked")
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=30)
        gateway.open_gate("held")  # the provider answers (and bills) the call the kill cut
        wait_until(lambda: gateway.served.calls == kill_turn, within=30,
                   what="the cut call served")
        before_kill = gateway.served
        in_flight = gateway.requests[-1]
        store = open_store(f"sqlite:///{data / 'ruflo.db'}")
        try:
            hive_id = store.list_hives()[0].id
            if start_over:
                for task in store.list_tasks(hive_id):
                    journal = store.open_journal_of(task.id)
                    if journal is not None:
                        store.close_journal(journal.id, "bench: start over")

            def lapsed() -> bool:
                driver = store.hive_driver(hive_id)
                return driver is None or driver.driver_until < datetime.now(UTC)

            wait_until(lapsed, within=60, what="the dead driver's lease to lapse")
        finally:
            store.close()
        subprocess.run([str(RUFLO), "hive", "resume", hive_id, "--json"], env=env, check=True,
                       capture_output=True, timeout=300)
    served = gateway.served
    store = open_store(f"sqlite:///{data / 'ruflo.db'}")
    try:
        # What this run's calls cost one by one, as ruflo metered them (in call order).
        calls = [entry.prompt_tokens + entry.completion_tokens
                 for entry in store.ledger(hive_id=store.list_hives()[0].id)]
    finally:
        store.close()
    result: dict[str, Any] = {"calls": served.calls, "per_call": calls,
                              "tokens": served.prompt_tokens + served.completion_tokens}
    if before_kill is not None:
        result["after_restart"] = (served.prompt_tokens + served.completion_tokens
                                   - before_kill.prompt_tokens - before_kill.completion_tokens)
        result["cut_prompt"] = estimate(in_flight)
    return result


def estimate(request: dict[str, Any]) -> int:
    """The prompt tokens the gateway counted for a request (its four-characters-a-token rule)."""
    return estimate_tokens("".join(message_text(m.get("content")) for m in request["messages"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--kill-turn", type=int, default=6)
    args = parser.parse_args()
    wall, cpu = time.perf_counter(), time.process_time()
    gateway = ScriptedGateway({"keys": [KEY], "rules": []})
    gateway.start()
    try:
        with tempfile.TemporaryDirectory() as scratch:
            root = Path(scratch)
            plain = run(gateway, root / "plain", turns=args.turns, kill_turn=None,
                        start_over=False)
            resumed = run(gateway, root / "resumed", turns=args.turns,
                          kill_turn=args.kill_turn, start_over=False)
            over = run(gateway, root / "over", turns=args.turns, kill_turn=args.kill_turn,
                       start_over=True)
    finally:
        gateway.stop()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    extra = resumed["tokens"] - plain["tokens"]
    # The stretch the restarted process works: from the cut turn on, in the uninterrupted run.
    plain_rest = sum(plain["per_call"][args.kill_turn - 1:])
    rest_extra = resumed["after_restart"] - plain_rest
    print(f"{args.turns}-turn attempt, SIGKILL while the model call of turn {args.kill_turn} "
          "is in flight (tokens as the ScriptedGateway served them)")
    print(f"  uninterrupted:        {plain['tokens']:>7} tokens  {plain['calls']:>3} calls")
    print(f"  resumed after kill:   {resumed['tokens']:>7} tokens  {resumed['calls']:>3} calls"
          f"  (+{extra}: the call the kill cut, answered but lost)")
    print(f"    after the restart:  {resumed['after_restart']:>7} tokens vs {plain_rest} for the "
          f"same turns {args.kill_turn}-{args.turns} uninterrupted: {rest_extra:+d}; bound: one "
          f"turn's prompt, {resumed['cut_prompt']} tokens"
          f"{' -- within' if rest_extra <= resumed['cut_prompt'] else ' -- OVER'}")
    print(f"  starting over:        {over['tokens']:>7} tokens  {over['calls']:>3} calls"
          f"  ({over['after_restart']} after the restart; +{over['tokens'] - plain['tokens']})")
    print(f"  ratio resumed / uninterrupted: {resumed['tokens'] / plain['tokens']:.3f}; "
          f"starting over / uninterrupted: {over['tokens'] / plain['tokens']:.3f}")
    print(f"  wall {time.perf_counter() - wall:.1f} s, CPU {time.process_time() - cpu:.1f} s "
          f"(this process) + {children.ru_utime + children.ru_stime:.1f} s (ruflo processes)")


if __name__ == "__main__":
    main()
