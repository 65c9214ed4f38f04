"""What the command sandbox costs (issue 28): a command run by `run_command` in bubblewrap next to
the same command unconfined (the baseline), and an outside agent's call to the gateway through
the model relay next to a direct one. Wall time per run with ruflo's own CPU time beside it (the
machine may be shared). The children's CPU time is not comparable: bwrap's outer process does
not reap the sandbox's init, so the work done inside never reaches ruflo's rusage.

    .venv/bin/python bench/sandbox.py [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from ruflo.agents.commands import command_env, run_command
from ruflo.agents.relay import gateway_relay
from ruflo.agents.sandbox import Sandbox, SandboxMode, current_sandbox
from ruflo.gateway.scripted import ScriptedGateway

CALL = ("import json, os, urllib.request; r = urllib.request.Request(os.environ["
        "'OPENAI_BASE_URL'] + '/chat/completions', method='POST', data=json.dumps({'model': "
        "'gpt-4o-mini', 'messages': [{'role': 'user', 'content': 'hi'}]}).encode(), headers="
        "{'Authorization': 'Bearer sk-bench', 'Content-Type': 'application/json'}); "
        "json.load(urllib.request.urlopen(r, timeout=30))")


def cpu() -> float:
    """ruflo's own CPU seconds: starting the command, reading its output, the relay's outside
    half."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


async def measure(label: str, runs: int,
                  once: Callable[[], Awaitable[None]]) -> tuple[float, float]:
    await once()  # warm: the probe, the page cache
    wall, used = time.perf_counter(), cpu()
    for _ in range(runs):
        await once()
    per_wall = (time.perf_counter() - wall) / runs * 1000
    per_cpu = (cpu() - used) / runs * 1000
    print(f"  {label:<44} {per_wall:7.1f} ms wall  {per_cpu:7.1f} ms ruflo CPU")
    return per_wall, per_cpu


async def main(runs: int) -> None:
    confined = current_sandbox()
    if not confined.confines:
        sys.exit(f"no sandbox here: {confined.describe()}")
    unconfined = Sandbox(SandboxMode.OFF)
    env = command_env()
    with tempfile.TemporaryDirectory() as folder:
        workspace = Path(folder)

        async def command(sandbox: Sandbox, argv: list[str]) -> None:
            result = await run_command(argv, cwd=workspace, env=env, sandbox=sandbox)
            assert result.ok, result.output

        print(f"a command (`true`), {runs} runs:")
        base = await measure("unconfined (baseline)", runs,
                             lambda: command(unconfined, ["true"]))
        boxed = await measure("in bubblewrap", runs, lambda: command(confined, ["true"]))
        print(f"  sandbox cost per command: {boxed[0] - base[0]:+.1f} ms wall, "
              f"{boxed[1] - base[1]:+.1f} ms CPU")

        with ScriptedGateway({"default": {"content": "ok"}}) as url:
            direct_env = {**env, "OPENAI_BASE_URL": url}
            print(f"an outside agent's gateway call (python + one completion), {runs} runs:")

            async def direct() -> None:
                result = await run_command([sys.executable, "-c", CALL], cwd=workspace,
                                           env=direct_env, sandbox=unconfined)
                assert result.ok, result.output

            async def relayed() -> None:
                with tempfile.TemporaryDirectory(prefix="ruflo-bench-") as scratch:
                    async with gateway_relay(direct_env, Path(scratch)) as relay:
                        sandbox = confined.with_extras(readable=[Path(scratch)], relay=relay)
                        result = await run_command([sys.executable, "-c", CALL], cwd=workspace,
                                                   env={**direct_env, **relay.env},
                                                   sandbox=sandbox)
                        assert result.ok, result.output

            base = await measure("unconfined, direct to the gateway (baseline)", runs, direct)
            boxed = await measure("in bubblewrap, through the relay", runs, relayed)
            print(f"  sandbox + relay cost per agent run: {boxed[0] - base[0]:+.1f} ms wall, "
                  f"{boxed[1] - base[1]:+.1f} ms CPU")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    asyncio.run(main(parser.parse_args().runs))
