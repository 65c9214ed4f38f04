"""`ruflo mcp`: serve the hive tools to an MCP client over stdio (the default: the client starts
`ruflo mcp` itself) or streamable HTTP on a loopback port.

Imports only typer and the standard library at module level; the SDK and the store load when the
command runs. On stdio, stdout belongs to the protocol: everything for people goes to stderr.
"""

from __future__ import annotations

import ipaddress
import sys
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from ruflo.config import Settings

app = typer.Typer(help="Serve the hive tools to MCP clients (Claude Code, Codex, ...).")


class Transport(StrEnum):
    STDIO = "stdio"
    HTTP = "http"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.command()
def mcp(
    transport: Transport = typer.Option("stdio", "--transport", "-t",  # noqa: B008
                                        help="stdio (the client spawns ruflo) or http."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (http)."),
    port: int = typer.Option(3100, min=1, max=65535, help="Port to listen on (http)."),
    hive: str | None = typer.Option(None, "--hive",
                                    help="Default hive (id or name) for calls that name none."),
    insecure: bool = typer.Option(False, "--insecure",
                                  help="Allow a non-loopback bind (the MCP server has no auth)."),
    agent: str | None = typer.Option(
        None, "--agent", help="permission_prompt: the agent (name in --hive) whose Claude Code "
                              "asks; its action policy applies over the hive's."),
    task: str | None = typer.Option(
        None, "--task", help="permission_prompt: the task (id or title) it works on."),
) -> None:
    """Serve the hive tools over MCP."""
    from ruflo.agents.sandbox import sandbox_trace
    from ruflo.config import boot_trace, load_settings
    from ruflo.engine.start import planner_from_settings
    from ruflo.errors import ConfigError
    from ruflo.mcp.desk import Desk
    from ruflo.mcp.server import build_server
    from ruflo.memory import open_memory
    from ruflo.store import open_store

    if transport is Transport.HTTP and not is_loopback(host) and not insecure:
        raise ConfigError(f"refusing to serve MCP on {host}: the MCP server has no auth, so "
                          "anyone who reaches it could work your hives. Bind 127.0.0.1, or "
                          "pass --insecure if that is really what you want.")
    settings = load_settings()
    for line in [*boot_trace(settings), *sandbox_trace(settings)]:
        print(line, file=sys.stderr)
    store = open_store(settings)
    try:
        memory = open_memory(store, data_dir=settings.data_dir, long_lived=True)
        desk = Desk(store, memory, lease_seconds=settings.lease_seconds,
                    workspace_root=settings.workspace_dir, default_hive=hive,
                    planner=planner_from_settings(settings, store), asking_agent=agent,
                    asking_task=task)
        server = build_server(desk)
        where = ("stdio" if transport is Transport.STDIO
                 else f"http://{host}:{port}/mcp")
        default = f", default hive {desk.default_hive}" if desk.default_hive else ""
        print(f"ruflo mcp: serving on {where}{default}", file=sys.stderr, flush=True)
        if transport is Transport.STDIO:
            server.run("stdio")
        else:
            serve_http(server, host, port, settings)
    finally:
        store.close()


def serve_http(server: Any, host: str, port: int, settings: Settings) -> None:
    """Streamable HTTP behind the web server's gate (ruflo.server.guard): the same Host
    allowlist, origin rule, body limit, JSON depth and read deadlines as `ruflo serve`. The
    SDK's own checks (loopback hosts and origins on a loopback bind, its body limit) stay on."""
    import uvicorn

    from ruflo.server.guard import Guard
    from ruflo.server.listening import uvicorn_config

    app = server.streamable_http_app(host=host, max_request_body_size=settings.max_body_bytes)
    guarded = Guard(app, allowed_hosts=settings.allowed_hosts,
                    max_body_bytes=settings.max_body_bytes,
                    read_timeout_seconds=settings.read_timeout_seconds)
    config = uvicorn_config(guarded, host, port, head_seconds=settings.read_timeout_seconds)
    uvicorn.Server(config).run()
