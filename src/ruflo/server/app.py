"""The app factory: `create_app(settings, store, gateway, runner)` wires the routers, the error
shape, the front door (probe fast path + request metrics) and the lifespan.
Depends on FastAPI, the server's parts and the seams (store, gateway, hive runner).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ruflo.errors import (
    BudgetExceeded,
    ConfigError,
    Conflict,
    GatewayError,
    NotFound,
    PolicyError,
    RufloError,
    StoreError,
    StoreFull,
    StoreUnreachable,
    Unstorable,
    WorkspaceError,
)
from ruflo.gateway.base import Gateway
from ruflo.server import a2a, actions, board, chat, completions, hives, pages, probes
from ruflo.server.auth import Authenticator
from ruflo.server.chat_stream import ChatGenerations
from ruflo.server.context import ServerContext
from ruflo.server.event_stream import EventHub
from ruflo.server.guard import Guard
from ruflo.server.hive_runner import HiveRunner, StoreRunner
from ruflo.server.schemas import ErrorBody
from ruflo.store.base import Store

log = logging.getLogger("ruflo.server")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ERROR_CODES = {400: "bad_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 408: "timeout", 409: "conflict", 413: "too_large",
               415: "unsupported_media_type", 421: "misdirected", 422: "invalid_request",
               429: "rate_limited",
               500: "internal", 502: "gateway_error", 503: "unavailable"}

RUFLO_ERROR_STATUS: tuple[tuple[type[RufloError], int], ...] = (
    (NotFound, 404), (Conflict, 409), (PolicyError, 422), (WorkspaceError, 422),
    (BudgetExceeded, 409), (StoreUnreachable, 503), (StoreFull, 503), (Unstorable, 422),
    (StoreError, 503), (GatewayError, 502), (ConfigError, 500),
)


def error_json(status: int, message: str, *, details: list[dict[str, Any]] | None = None,
               headers: dict[str, str] | None = None,
               request: Request | None = None) -> JSONResponse:
    """The error shape; under the OpenAI-compatible /v1/ it is OpenAI's, so its clients show
    the message."""
    code = ERROR_CODES.get(status, "error")
    body: dict[str, Any] = {"message": message, "error": code}
    if details is not None:
        body["details"] = details
    if request is not None and request.url.path.startswith("/v1/"):
        body = {"error": {"message": message, "type": code, "code": code, "param": None}}
    return JSONResponse(body, status_code=status, headers=headers)


def _where(loc: Sequence[Any]) -> str:
    return ".".join(str(part) for part in loc) or "request"


async def _on_http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    message = error.detail if isinstance(error.detail, str) else str(error.detail)
    if error.status_code == 404 and message == "Not Found":
        message = f"no route {request.url.path}"
    return error_json(error.status_code, message, headers=dict(error.headers or {}),
                      request=request)


async def _on_invalid(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    details = [{"loc": [str(part) for part in item.get("loc", ())],
                "msg": str(item.get("msg", "")), "type": str(item.get("type", ""))}
               for item in error.errors()]
    summary = "; ".join(f"{_where(d['loc'])}: {d['msg']}" for d in details[:5])
    return error_json(422, f"invalid request: {summary}", details=details, request=request)


async def _on_ruflo_error(request: Request, error: Exception) -> JSONResponse:
    for kind, status in RUFLO_ERROR_STATUS:
        if isinstance(error, kind):
            return error_json(status, str(error), request=request)
    return error_json(400, str(error), request=request)


async def _on_crash(request: Request, error: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_json(500, "internal error: the server logged the details; nothing was changed "
                           "by this request unless its answer said so")


class FrontDoor:
    """The outermost layer: answers the in-memory probes straight from precomputed bytes (no
    routing, no auth, no store, no gateway) and counts every request by route and status."""

    def __init__(self, app: ASGIApp, ctx: ServerContext) -> None:
        self.app = app
        self.ctx = ctx
        self.metrics = ctx.metrics
        self.static = {
            path: ([(b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())], body)
            for path, body in probes.static_answers(ctx).items()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method = scope["method"]
        path = scope["path"]
        answer = self.static.get(path) if method == "GET" else None
        if answer is not None:
            await send({"type": "http.response.start", "status": 200, "headers": answer[0]})
            await send({"type": "http.response.body", "body": answer[1]})
            self.metrics.observe(method, path, 200, time.perf_counter() - started)
            return
        status = 500

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.observe(method, route, status, time.perf_counter() - started)


async def _attach(runner: HiveRunner) -> None:
    """The runner's attach, its failure logged (the server goes on serving; a hive it could not
    take up stays as the store says, and a resume starts it again)."""
    try:
        await runner.attach()
    except Exception:
        log.exception("taking up the running hives failed")


def create_app(settings: Any, store: Store, gateway: Gateway | None,
               runner: HiveRunner | None = None, *, event_poll_seconds: float = 2.0) -> FastAPI:
    """The ruflo web server. `settings` is a ruflo.config.Settings; `gateway` may be None when
    none is configured (chat then says so; probes never care); `runner` defaults to the
    StoreRunner, which only records hive decisions in the store."""
    ctx = ServerContext(
        settings=settings, store=store, gateway=gateway, runner=runner or StoreRunner(store),
        auth=Authenticator(settings.auth, store, trusted_proxies=settings.trusted_proxies,
                           operators=getattr(settings, "operators", ())),
        hub=EventHub(store, poll_seconds=event_poll_seconds), chats=ChatGenerations())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx.hub.attach()
        warm = getattr(ctx.gateway, "warm", None)
        if callable(warm):
            warm()
        open_relay = getattr(ctx.gateway, "open_relay", None)
        relaying = asyncio.create_task(open_relay()) if callable(open_relay) else None
        # Taking up running hives (their engines load boards) proceeds after the socket listens:
        # readiness means the store answers, not that every hive has been re-attached.
        attaching = asyncio.create_task(_attach(ctx.runner), name="ruflo-attach")
        try:
            yield
        finally:
            await ctx.drain()
            attaching.cancel()  # a no-op once done; else hives taken up so far are stopped below
            await asyncio.gather(attaching, return_exceptions=True)
            if relaying is not None:
                await asyncio.gather(relaying, return_exceptions=True)
            await ctx.runner.aclose()

    from ruflo import __version__

    app = FastAPI(
        title="ruflo", version=__version__, lifespan=lifespan, redoc_url=None,
        description="Chat (ruvocal-shaped /api/v2), hives, live event streams and probes.",
        responses={401: {"model": ErrorBody}, 404: {"model": ErrorBody},
                   422: {"model": ErrorBody}})
    app.state.ctx = ctx
    app.add_exception_handler(HTTPException, _on_http_error)
    app.add_exception_handler(RequestValidationError, _on_invalid)
    app.add_exception_handler(RufloError, _on_ruflo_error)
    app.add_exception_handler(Exception, _on_crash)
    # Routes are matched in order, one by one: the board's hot paths go first.
    app.include_router(probes.router)
    app.include_router(board.router)
    app.include_router(hives.router)
    app.include_router(actions.router)
    app.include_router(chat.router)
    app.include_router(completions.router)
    app.include_router(pages.router)
    a2a.mount(app, ctx)
    # Inside the front door (probes stay answered from memory, refusals are counted), before
    # routing, auth and parsing: a hostile page or body is refused before it costs anything.
    app.add_middleware(Guard, allowed_hosts=settings.allowed_hosts,
                       max_body_bytes=settings.max_body_bytes,
                       read_timeout_seconds=settings.read_timeout_seconds)
    app.add_middleware(FrontDoor, ctx=ctx)
    return app
