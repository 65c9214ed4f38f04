"""`ruflo worker --hive ID --agents N` (or `--all-hives`): host agent loops of hives stored in a
shared Postgres, so one hive runs on many machines. SIGTERM hands back what the worker holds.

Imports only typer and the standard library at module level.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from ruflo.config import Settings
    from ruflo.engine.worker import WorkerParams
    from ruflo.store.sql import SqlStore

app = typer.Typer(add_completion=False)


@app.command()
def worker(
    hive: Annotated[str | None, typer.Option(
        "--hive", help="The hive to host (id or a unique prefix); the worker exits when it "
                       "ends.")] = None,
    all_hives: Annotated[bool, typer.Option(
        "--all-hives", help="Host every running swarm hive, now and later.")] = False,
    agents: Annotated[int, typer.Option(
        min=1, max=1000, help="Agent loops to host per hive, at most.")] = 8,
    poll_seconds: Annotated[float, typer.Option(
        min=0.05, help="Safety-net poll of the store when no notification comes (no LLM "
                       "call).")] = 5.0,
    time_unit: Annotated[float | None, typer.Option(
        min=0.001, help="Seconds per policy time unit (default: the hive's own).")] = None,
    workspace: Annotated[Path | None, typer.Option(
        help="Folder for this worker's own copy of each hive kept on a git remote "
             "(<folder>/<hive id>; default: RUFLO_WORKSPACE).")] = None,
    worker_id: Annotated[str | None, typer.Option(
        "--id", help="This worker's id (default: the host name and a random suffix).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="Log warnings and errors only.")] = False,
) -> None:
    """Host agent loops of hives in the shared Postgres; claims, leases and wake-ups go through
    the store. SQLite hives stay on one machine and are refused."""
    from ruflo.agents.sandbox import sandbox_trace
    from ruflo.config import boot_trace, load_settings
    from ruflo.engine.worker import WorkerParams, require_shared_store
    from ruflo.store import open_store

    if (hive is None) == (not all_hives):
        raise typer.BadParameter("give either --hive ID or --all-hives")
    settings = load_settings()
    for line in [*boot_trace(settings), *sandbox_trace(settings)]:
        typer.echo(line, err=True)
    require_shared_store(settings.store_url)
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    store = open_store(settings)
    try:
        hive_id = None
        if hive is not None:
            from ruflo.commands.hive import find_hive

            hive_id = find_hive(store, hive).id
        from ruflo.agents.commands import command_env

        params = WorkerParams(agents=agents, hive_id=hive_id,
                              lease_seconds=settings.lease_seconds, poll_seconds=poll_seconds,
                              time_unit=time_unit, model=settings.model,
                              env=command_env(),
                              gateway_probe_seconds=settings.gateway_probe_seconds,
                              workspace=(workspace or settings.workspace_dir).expanduser()
                              .resolve())
        code = asyncio.run(host(settings, store, params, worker_id))
    finally:
        store.close()
    raise typer.Exit(code)


async def host(settings: Settings, store: SqlStore, params: WorkerParams,
               worker_id: str | None) -> int:
    """Run the worker until SIGTERM/SIGINT (or its one hive ends); return the exit code."""
    from ruflo.engine.worker import Worker

    gateway = None
    if settings.gateway_url and settings.openai_api_key is not None:
        # Imported only when used: the OpenAI SDK takes seconds to import on a busy node.
        from ruflo.gateway.client import GatewayClient

        gateway = GatewayClient.from_settings(settings, store=store)
    else:
        logging.getLogger("ruflo.worker").warning(
            "no gateway configured (OPENAI_BASE_URL and OPENAI_API_KEY): agents with the "
            "built-in LLM adapter will pause; process and http agents work")
    try:
        runner = Worker(store, settings.store_url, params, gateway=gateway,
                        worker_id=worker_id)
        loop = asyncio.get_running_loop()
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(number, runner.stop)
        typer.echo(f"worker {runner.id} on {runner.host}: up to {params.agents} agents per hive "
                   f"({'hive ' + params.hive_id if params.hive_id else 'every running hive'})",
                   err=True)
        code = await runner.run()
        typer.echo(f"worker {runner.id} stopped; what it held was handed back", err=True)
        return code
    finally:
        if gateway is not None:
            await gateway.aclose()
