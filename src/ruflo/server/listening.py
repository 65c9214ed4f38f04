"""How ruflo's web server listens (`ruflo serve`, `ruflo demo`, `ruflo mcp` over HTTP, the tests):
the bind check, uvicorn's settings, a server that drains the streams on SIGTERM, and the live
engine's hive runner. Depends on uvicorn, the server's context and ruflo.engine.server_hosting.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ruflo.config import Settings
    from ruflo.gateway.base import Gateway
    from ruflo.server.hive_runner import HiveRunner
    from ruflo.store.base import Store

GRACEFUL_SECONDS = 5
"""Open streams get this long to end on SIGTERM; Kubernetes waits 30 s before SIGKILL."""
KEEP_ALIVE_SECONDS = 75
"""How long an idle keep-alive connection stays open (uvicorn's own default is 5 s): longer than
the longest wait a claim answer names (engine/stored_policy.py LONGEST_WAIT_SECONDS), so an
agent that asks again when told finds its connection still there; as long as nginx keeps one."""


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
        timeout_keep_alive=KEEP_ALIVE_SECONDS, timeout_graceful_shutdown=GRACEFUL_SECONDS,
        log_level="info")


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


def engine_runner(store: Store, gateway: Gateway | None, settings: Settings) -> HiveRunner:
    """The live engine's hive runner, which `ruflo serve` and `ruflo demo` hand to their routes."""
    from ruflo.engine.server_hosting import server_runner

    return server_runner(store, gateway, settings)
