"""`ruflo serve`: the web server (chat API, hive API, live streams, probes), with the boot trace.

Imports only typer and stdlib at module level; the server loads when the command runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from ruflo.config import Settings
    from ruflo.gateway.base import Gateway
    from ruflo.server.runner import HiveRunner
    from ruflo.store.base import Store

app = typer.Typer(help="Run the web server: chat API, hive API, live event streams, probes.")

GRACEFUL_SECONDS = 5
"""Open streams get this long to end on SIGTERM; Kubernetes waits 30 s before SIGKILL."""
NOTIFY_DRAIN_SECONDS = 2.0
"""Notifications in flight at shutdown get this long; with the streams' 5 s and the hive
engines' 3 s to hand their claims back, SIGTERM ends the server within 10 s."""


def check_bind(host: str, auth: str, *, insecure: bool) -> None:
    """Refuse to serve every address without auth unless the person said --insecure."""
    from ruflo.errors import ConfigError
    from ruflo.server.auth import is_loopback_host

    if auth == "none" and not is_loopback_host(host) and not insecure:
        raise ConfigError(
            f"refusing to listen on {host} with no auth (RUFLO_AUTH=none): anyone who can "
            "reach it could use your gateway key. Set RUFLO_AUTH=forward or token, bind "
            "127.0.0.1, or pass --insecure if that is really what you want.")


def uvicorn_config(asgi_app: Any, host: str, port: int, *,
                   head_seconds: float | None = None) -> Any:
    """The uvicorn settings ruflo serves with (tests and `ruflo mcp` use the same): request heads
    bounded in time (`head_seconds`, default the app's RUFLO_READ_TIMEOUT_SECONDS) and size;
    bodies are bounded by ruflo.server.guard."""
    import importlib.util

    import uvicorn

    fast = importlib.util.find_spec("uvloop") is not None
    if head_seconds is None:
        ctx = getattr(getattr(asgi_app, "state", None), "ctx", None)
        head_seconds = float(getattr(getattr(ctx, "settings", None), "read_timeout_seconds", 15.0))
    http: Any = "h11"
    if importlib.util.find_spec("httptools") is not None:
        from ruflo.server.head_deadline import with_head_deadline

        http = with_head_deadline(head_seconds)
    return uvicorn.Config(
        asgi_app, host=host, port=port,
        loop="uvloop" if fast else "asyncio", http=http,
        # h11 (only without httptools) bounds an incomplete head itself, but has no deadline.
        h11_max_incomplete_event_size=64 * 1024,
        # Forwarded headers are not believed: the client address decides forward-auth trust,
        # and uvicorn would otherwise let a local caller rewrite it with X-Forwarded-For.
        proxy_headers=False, server_header=False, access_log=False, lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SECONDS, log_level="info")


def build_server(asgi_app: Any, host: str, port: int) -> Any:
    """A uvicorn server whose first SIGTERM/SIGINT also ends the event streams and stores the
    chat answers being written, so open connections close at once and nothing is lost."""
    import asyncio

    import uvicorn

    from ruflo.server.context import ServerContext

    class RufloServer(uvicorn.Server):
        def handle_exit(self, sig: int, frame: object) -> None:
            ctx: ServerContext | None = getattr(getattr(asgi_app, "state", None), "ctx", None)
            if ctx is not None and not self.should_exit:
                loop = asyncio.get_event_loop_policy().get_event_loop()
                loop.call_soon_threadsafe(lambda: loop.create_task(ctx.drain()))
            super().handle_exit(sig, frame)  # type: ignore[arg-type]

    config = uvicorn_config(asgi_app, host, port)
    assert isinstance(config, uvicorn.Config)
    return RufloServer(config)


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(3000, min=0, max=65535, help="Port to listen on."),
    insecure: bool = typer.Option(False, "--insecure",
                                  help="Allow a non-loopback bind with no auth."),
) -> None:
    """Run the web server until SIGTERM/Ctrl-C."""
    import asyncio
    import logging

    from ruflo.agents.sandbox import sandbox_trace
    from ruflo.config import boot_trace, load_settings
    from ruflo.server import create_app
    from ruflo.server.a2a import trace as a2a_trace
    from ruflo.server.deferred_gateway import DeferredGateway
    from ruflo.server.guard import hosts_notice
    from ruflo.store import open_store

    settings = load_settings()
    check_bind(host, settings.auth, insecure=insecure)
    store = open_store(settings)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for line in [*boot_trace(settings), *sandbox_trace(settings)]:
        typer.echo(line, err=True)
    gateway = None
    if settings.gateway_url and settings.openai_api_key is None:
        typer.echo("gateway: not used (OPENAI_API_KEY is not set); chat will say so", err=True)
    elif settings.gateway_url:
        gateway = DeferredGateway(settings.gateway_url, lambda: _gateway_client(settings, store))
    typer.echo(f"auth: {settings.auth}; listening on http://{host}:{port}", err=True)
    typer.echo(hosts_notice(host, settings.allowed_hosts), err=True)
    typer.echo(a2a_trace(), err=True)
    runner = _engine_runner(store, gateway, settings)
    server = build_server(create_app(settings, store, gateway, runner), host, port)

    async def run() -> None:
        try:
            await server.serve()
        finally:
            if gateway is not None:
                await gateway.aclose()

    try:
        with hive_notifications(settings, store, echo=lambda line: typer.echo(line, err=True),
                                drain_seconds=NOTIFY_DRAIN_SECONDS):
            asyncio.run(run())
    finally:
        store.close()


@contextlib.contextmanager
def hive_notifications(settings: Settings, store: Store, *, echo: Callable[[str], None],
                       drain_seconds: float = 5.0) -> Iterator[None]:
    """Tell people about hive events while the block runs (`ruflo serve`, `ruflo orchestrate`):
    the senders' state is printed once with the boot trace; every committed event is offered to
    the dispatcher, which sends off the engine's path and records failures as `notify_failed`
    events; on exit, sends in flight get `drain_seconds` to finish."""
    from ruflo.notify import Dispatcher, notify_status

    for line in notify_status(settings):
        echo(line)
    dispatcher = Dispatcher.from_settings(settings, record_failure=store.append_event,
                                          hive_name=lambda hive_id: store.get_hive(hive_id).name)
    if not dispatcher.senders:
        yield
        return
    offer = dispatcher.offer
    dispatcher.start()
    store.add_listener(offer)
    try:
        yield
    finally:
        store.remove_listener(offer)
        dispatcher.close(timeout=drain_seconds)


def _gateway_client(settings: Settings, store: Store) -> Gateway:
    from ruflo.gateway.client import GatewayClient

    return GatewayClient.from_settings(settings, store)


def _engine_runner(store: Store, gateway: Gateway | None, settings: Settings) -> HiveRunner | None:
    """The live engine's runner when the engine provides one, else None (the StoreRunner)."""
    import importlib

    try:
        module = importlib.import_module("ruflo.engine.runner")
    except ModuleNotFoundError as missing:
        if missing.name and missing.name.startswith("ruflo.engine"):
            return None
        raise
    factory = getattr(module, "server_runner", None)
    if factory is None:
        return None
    runner: HiveRunner = factory(store, gateway, settings)
    return runner
