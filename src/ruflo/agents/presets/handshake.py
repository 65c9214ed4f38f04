"""Checking the agent CLIs this machine has (`ruflo doctor`): each one found, its version, and
whether it completes a one-call handshake with the gateway through the model relay — the same
road a hive's attempt takes (preset executor, sandbox, relay token, ledger), on a throwaway store.
Depends on the presets, the store and the gateway client.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ruflo.agents.base import OutcomeKind, RunContext
from ruflo.agents.commands import command_env
from ruflo.agents.presets import known_presets
from ruflo.agents.presets.base import Preset, find_program
from ruflo.agents.presets.executor import PresetExecutor
from ruflo.agents.tools import truncate
from ruflo.errors import RufloError
from ruflo.model import AdapterKind, Agent, Hive, Mode, Task

if TYPE_CHECKING:
    from ruflo.config import Settings

__all__ = ["CliReport", "check_agent_clis", "cli_version", "handshake"]

HANDSHAKE_TASK = "Reply with the single word READY. Do not use any tool."
HANDSHAKE_SECONDS = 120.0


@dataclass(frozen=True, slots=True)
class CliReport:
    """What the doctor found about one agent CLI."""

    name: str
    program: str | None
    """Where it was found; None: not installed."""
    version: str | None = None
    handshake: bool | None = None
    """It answered through the relay (None: not tried)."""
    calls: int = 0
    """Gateway calls the handshake made, as the ledger counted them."""
    detail: str = ""

    def data(self) -> dict[str, Any]:
        return {"program": self.program, "version": self.version, "handshake": self.handshake,
                "calls": self.calls}


def cli_version(preset: Preset, program: str) -> str:
    """The first line `PROGRAM --version` prints (its error, said plainly, if it fails)."""
    try:
        ran = subprocess.run([program, *preset.version_args], capture_output=True, text=True,
                             timeout=60, stdin=subprocess.DEVNULL,
                             env={**command_env(), "HOME": tempfile.gettempdir()})
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unknown ({error})"
    lines = (ran.stdout or ran.stderr).strip().splitlines()
    return lines[0].strip() if lines else f"unknown (exit {ran.returncode})"


async def handshake(settings: Settings, preset: Preset, program: str) -> CliReport:
    """Run the CLI once, headless, on a one-line task through the relay to the configured
    gateway; it passes when the program exits 0 after at least one metered call."""
    from ruflo.gateway.client import GatewayClient
    from ruflo.store import open_store

    version = cli_version(preset, program)
    with tempfile.TemporaryDirectory(prefix="ruflo-handshake-") as folder:
        workspace = Path(folder) / "workspace"
        workspace.mkdir()
        store = open_store(f"sqlite:///{Path(folder) / 'handshake.db'}")
        try:
            hive = Hive(id="handshake", name=f"{preset.name} handshake", mode=Mode.SWARM,
                        objective="", workspace=str(workspace))
            agent = Agent(id="handshake-agent", hive_id=hive.id, name=preset.name,
                          adapter=AdapterKind(preset.name),
                          adapter_config={"program": program, "timeout": HANDSHAKE_SECONDS})
            task = Task(id="handshake-task", hive_id=hive.id, title=HANDSHAKE_TASK)
            store.create_hive(hive, agents=[agent], tasks=[task])
            claimed = store.claim_task(hive.id, agent.id, lease_seconds=600, task_id=task.id)
            assert claimed is not None
            client = GatewayClient.from_settings(settings, store)
            try:
                outcome = await PresetExecutor(preset).run(
                    claimed, agent, hive, RunContext(store=store, workspace=workspace,
                                                     gateway=client, env=command_env(),
                                                     model=settings.model))
            except RufloError as error:
                calls = len(store.ledger(hive_id=hive.id))
                return CliReport(preset.name, program, version, False, calls,
                                 f"stopped: {str(error).split(';')[0]}")
            finally:
                await client.aclose()
            calls = len(store.ledger(hive_id=hive.id))
        finally:
            store.close()
    passed = outcome.kind is OutcomeKind.COMPLETE and calls > 0
    if passed:
        said = truncate((outcome.result or "").strip(), 60)
        return CliReport(preset.name, program, version, True, calls,
                         f"answered {said!r} after {calls} call(s) through the relay")
    why = outcome.reason or "it made no call through the relay"
    return CliReport(preset.name, program, version, False, calls, truncate(why, 300))


async def check_agent_clis(settings: Settings, *, skip: str | None = None) -> list[CliReport]:
    """Every agent CLI ruflo has a preset for: found or not, its version, and its handshake
    (not tried when `skip` says why not, or no gateway is configured)."""
    path = os.environ.get("PATH")
    reports = []
    for preset in known_presets():
        program = find_program(preset, {}, path)
        if program is None:
            reports.append(CliReport(preset.name, None, detail=f"not installed ({preset.package})"))
        elif skip is not None or not settings.gateway_url:
            version = cli_version(preset, program)
            why = skip or "no gateway configured"
            reports.append(CliReport(preset.name, program, version,
                                     detail=f"{version} at {program}; handshake not tried: {why}"))
        else:
            reports.append(await handshake(settings, preset, program))
    return reports
