"""`ruflo demo`: a small comparison of the built-in workloads (on the ScriptedGateway when no
gateway is configured), then the web UI with its report and hives until Ctrl-C/SIGTERM.
Imports only typer and stdlib at module level; the demo loads when the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(add_completion=False)


@app.command()
def demo(
    port: Annotated[int, typer.Option(min=0, max=65535,
                                      help="Port for the web UI (0: any free one).")] = 3000,
    host: Annotated[str, typer.Option(help="Address for the web UI.")] = "127.0.0.1",
    data_dir: Annotated[Path | None, typer.Option(
        help="The demo's data directory (default: a `demo` folder under the data directory, "
             "so a demo never mixes with real hives).")] = None,
    no_serve: Annotated[bool, typer.Option("--no-serve", help="Run the comparison, write the "
                                                              "report and stop.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print what the demo made (report, "
                                                             "URL, runs) as one JSON line.")] = False,
    scripted: Annotated[bool, typer.Option("--scripted", help="Use the ScriptedGateway even when "
                                                              "a gateway is configured.")] = False,
) -> None:
    """Compare swarm, company and solo on a ticket, a bug and a feature, then serve the UI.

    With no gateway configured, answers come from the ScriptedGateway (a script, not a real model).

    With OPENAI_BASE_URL set, the demo uses that gateway.
    """
    from ruflo.demo import DemoOptions, run

    code = run(DemoOptions(host=host, port=port, data_dir=data_dir, serve=not no_serve,
                           json_output=json_output, scripted=scripted))
    if code:
        raise SystemExit(code)
