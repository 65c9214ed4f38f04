"""`ruflo gateway`: run the ScriptedGateway, list the models the gateway offers.

Imports only typer and the standard library at module level (`ruflo --help` stays fast).
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Gateway tools: run the ScriptedGateway, list models.",
                  no_args_is_help=True)


@app.command()
def scripted(
    port: Annotated[int, typer.Option("--port", help="Port to listen on (0 = any free one).")],
    script: Annotated[Path, typer.Option(
        "--script", help="YAML or JSON script (see docs/scripted-gateway.md).")],
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
) -> None:
    """Serve an OpenAI-compatible gateway that answers from a script (for tests and demos)."""
    from ruflo.gateway.scripted import ScriptedGateway

    gateway = ScriptedGateway.from_file(script, host=host, port=port)
    gateway.serve_forever(on_ready=lambda url: typer.echo(f"scripted gateway on {url}"))


@app.command()
def models(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """List the models the configured gateway lets this key use."""
    from ruflo.config import load_settings
    from ruflo.gateway.client import GatewayClient

    settings = load_settings()
    # The error, if any, is printed once by the CLI; retry chatter would only repeat it.
    for noisy in ("stamina", "ruflo.gateway"):
        logging.getLogger(noisy).setLevel(logging.ERROR)

    async def fetch() -> tuple[str, str, list[tuple[str, str | None]]]:
        async with GatewayClient.from_settings(settings) as client:
            found = await client.models()
            return client.base_url, client.base_url_source, [(m.id, m.owned_by) for m in found]

    base_url, source, found = asyncio.run(fetch())
    if as_json:
        typer.echo(json.dumps({"gateway": base_url, "source": source,
                               "models": [{"id": i, "owned_by": o} for i, o in found]}))
        return
    typer.echo(f"gateway {base_url} (from {source}): {len(found)} models", err=True)
    for model_id, _ in found:
        typer.echo(model_id)
