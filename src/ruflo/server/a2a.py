"""Where A2A meets the web server: the agent card at the well-known path and the JSON-RPC
endpoint, both from a2a-sdk, mounted on the FastAPI app behind the same guard (the app's
middleware) and the same authentication as the rest of the API. Without the SDK (the optional
`a2a` extra), both paths answer a 404 that says how to install it, and the boot trace says so.
Depends on FastAPI and, when installed, a2a-sdk (server/a2a_agent.py).
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cache, partial
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from starlette.routing import Route

from ruflo.server.context import ServerContext, current_caller

CARD_PATH = "/.well-known/agent-card.json"
RPC_PATH = "/api/v2/a2a"
INSTALL_HINT = "install the a2a extra (pip install 'ruflo[a2a]')"


def available() -> bool:
    """Whether a2a-sdk is installed."""
    return importlib.util.find_spec("a2a") is not None


def trace() -> str:
    """The boot trace's line about A2A."""
    if available():
        return f"a2a: agent card at {CARD_PATH}, JSON-RPC at {RPC_PATH}"
    return f"a2a: off (a2a-sdk is not installed; {INSTALL_HINT})"


def mount(app: FastAPI, ctx: ServerContext) -> None:
    """Add the A2A routes to `app` (or the two that say A2A is not installed)."""
    if not available():
        async def absent(request: Request) -> Response:
            return JSONResponse({"error": "not_found", "message": "this server does not speak "
                                 f"A2A: a2a-sdk is not installed; {INSTALL_HINT}"},
                                status_code=404)
        app.router.routes.append(Route(CARD_PATH, absent, methods=["GET"]))
        app.router.routes.append(Route(RPC_PATH, absent, methods=["POST"]))
        return
    _mount_sdk(app, ctx)


class _RefusalsAnswered(logging.Filter):
    """Drops the SDK's tracebacks for a refusal the executor raised on purpose (an A2A protocol
    error, already answered to the client and logged as one line by the JSON-RPC dispatcher);
    any other failure keeps its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        from a2a.utils.errors import A2AError

        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, A2AError)


@dataclass(frozen=True, slots=True)
class _Sdk:
    """What the two routes need of the loaded SDK."""

    dispatch: Callable[[Request], Awaitable[Response]]
    """The JSON-RPC endpoint of the SDK's request handler for ruflo's executor."""
    card: Callable[[str], dict[str, Any]]
    """The agent card (as JSON) for the server's base URL."""


def _build_sdk(ctx: ServerContext) -> _Sdk:
    """The SDK's request handler for ruflo's executor, built once."""
    from a2a.server.context import ServerCallContext
    from a2a.server.request_handlers import DefaultRequestHandlerV2
    from a2a.server.request_handlers.response_helpers import agent_card_to_dict
    from a2a.server.routes import DefaultServerCallContextBuilder, create_jsonrpc_routes
    from a2a.server.tasks import InMemoryTaskStore

    from ruflo.server.a2a_agent import CALLER_KEY, CallerUser, HiveExecutor, agent_card

    class CallerContext(DefaultServerCallContextBuilder):
        """The SDK's call context with ruflo's caller in it (the SDK scopes tasks by user)."""

        def build(self, request: Any) -> ServerCallContext:
            built = super().build(request)
            built.state[CALLER_KEY] = request.scope["ruflo.caller"]
            headers = built.state.get("headers")
            if isinstance(headers, dict):  # the SDK reads A2A-Version there; credentials stay out
                for name in ("authorization", "cookie"):
                    headers.pop(name, None)
            return built

        def build_user(self, request: Any) -> CallerUser:
            return CallerUser(request.scope["ruflo.caller"].name)

    active = logging.getLogger("a2a.server.agent_execution.active_task")
    if not any(isinstance(f, _RefusalsAnswered) for f in active.filters):
        active.addFilter(_RefusalsAnswered())
    handler = DefaultRequestHandlerV2(HiveExecutor(ctx), InMemoryTaskStore(),
                                      agent_card("http://localhost", ctx.settings))
    (rpc,) = create_jsonrpc_routes(handler, RPC_PATH, context_builder=CallerContext())
    return _Sdk(dispatch=rpc.endpoint,
                card=lambda base: agent_card_to_dict(agent_card(base, ctx.settings)))


def _mount_sdk(app: FastAPI, ctx: ServerContext) -> None:
    """The card and the JSON-RPC route; the SDK (~0.5 s of imports) is loaded by the first A2A
    request, so a server nobody reaches over A2A starts and idles without it."""
    sdk = cache(partial(_build_sdk, ctx))

    async def card(request: Request) -> Response:
        return JSONResponse(sdk().card(str(request.base_url).rstrip("/")))

    async def endpoint(request: Request) -> Response:
        try:
            await current_caller(request)
        except HTTPException as refused:
            return JSONResponse({"error": "unauthenticated", "message": refused.detail},
                                status_code=refused.status_code,
                                headers=dict(refused.headers or {}))
        return await sdk().dispatch(request)

    app.router.routes.append(Route(CARD_PATH, card, methods=["GET"]))
    app.router.routes.append(Route(RPC_PATH, endpoint, methods=["POST"]))
