"""`ruflo serve`: the web server (chat API, hive API, live streams, probes), with the boot trace.

Imports only typer and stdlib at module level; the server loads when the command runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from ruflo.config import Settings
    from ruflo.gateway.base import Gateway
    from ruflo.notify.telegram_buttons import TelegramButtons
    from ruflo.store.base import Store

app = typer.Typer(help="Run the web server: chat API, hive API, live event streams, probes.")

NOTIFY_DRAIN_SECONDS = 2.0
"""Notifications in flight at shutdown get this long; with the streams' 5 s (GRACEFUL_SECONDS in
ruflo.server.listening) and the hive
engines' 3 s to hand their claims back, SIGTERM ends the server within 10 s."""


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
    from ruflo.server.auth import trust_notice
    from ruflo.server.deferred_gateway import DeferredGateway
    from ruflo.server.guard import hosts_notice
    from ruflo.server.listening import build_server, check_bind, engine_runner
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
    for line in trust_notice(settings.auth, settings.trusted_proxies):
        typer.echo(line, err=True)
    typer.echo(hosts_notice(host, settings.allowed_hosts), err=True)
    typer.echo(a2a_trace(), err=True)
    runner = engine_runner(store, gateway, settings)
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
    buttons = telegram_buttons(settings, store)
    if buttons is not None:
        buttons.start()
        echo("notify: telegram approve/reject buttons are read with getUpdates (no inbound "
             "connection); run one ruflo process per bot")
    try:
        yield
    finally:
        if buttons is not None:
            buttons.stop()
        store.remove_listener(offer)
        dispatcher.close(timeout=drain_seconds)


def telegram_buttons(settings: Settings, store: Store) -> TelegramButtons | None:
    """The poller of approve/reject presses, when Telegram is configured."""
    from ruflo.engine.approvals import decided_text
    from ruflo.notify.configured import configured_senders
    from ruflo.notify.telegram import TelegramSender
    from ruflo.notify.telegram_buttons import TelegramButtons

    sender = configured_senders(settings).senders.get("telegram")
    if not isinstance(sender, TelegramSender):
        return None
    return TelegramButtons(sender.token, sender.chat_id,
                           lambda approval_id, approve, who, reason: decided_text(
                               store, approval_id, approve, who, reason),
                           api_base=sender.api_base)


def _gateway_client(settings: Settings, store: Store) -> Gateway:
    from ruflo.gateway.client import GatewayClient

    return GatewayClient.from_settings(settings, store)
