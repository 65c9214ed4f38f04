"""Probes and metrics: none needs auth and none asks the gateway. feature-flags and healthz
answer from process memory (the Kubernetes probe paths); readyz asks the store; metrics reads
the store at scrape time. Depends on the server context.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from ruflo.errors import StoreError
from ruflo.server.context import ServerContext
from ruflo.server.metrics import CONTENT_TYPE
from ruflo.server.schemas import FeatureFlags, Health, Readiness
from ruflo.server.wire import dumps

router = APIRouter(tags=["probes"])


def feature_flags(auth_mode: str) -> dict[str, bool]:
    return {"enableAssistants": False, "loginEnabled": auth_mode != "none", "isAdmin": False,
            "transcriptionEnabled": False}


def static_answers(ctx: ServerContext) -> dict[str, bytes]:
    """Bodies of the probes that never change while the process lives, encoded once."""
    return {"/api/v2/feature-flags": dumps(feature_flags(ctx.auth.mode.value)),
            "/healthz": dumps({"status": "ok"})}


def _ctx(request: Request) -> ServerContext:
    ctx: ServerContext = request.app.state.ctx
    return ctx


@router.get("/api/v2/feature-flags", response_model=FeatureFlags)
async def get_feature_flags(request: Request) -> Any:
    """ruvocal's flags, from process memory only: the liveness/readiness probe path."""
    return feature_flags(_ctx(request).auth.mode.value)


@router.get("/healthz", response_model=Health)
async def healthz() -> Any:
    """The process is up and serving."""
    return {"status": "ok"}


@router.get("/readyz", response_model=Readiness,
            responses={503: {"model": Readiness,
                             "description": "the store does not answer or its disk is full"}})
async def readyz(request: Request) -> Any:
    """Ready when the store answers and takes writes (after a write failed for want of space,
    a small probe write decides, so readiness returns by itself). The gateway's last known state
    is reported but never decides readiness (and is not asked here)."""
    ctx = _ctx(request)
    state = ctx.gateway_state
    gateway = {"configured": ctx.gateway is not None,
               "status": state.status if state else "not asked yet",
               "message": state.message if state else None}
    try:
        ctx.store.ping()
        ctx.store.check_writes()
    except StoreError as error:
        return JSONResponse({"status": "not ready", "store": str(error), "gateway": gateway},
                            status_code=503)
    if ctx.draining.is_set():
        return JSONResponse({"status": "shutting down", "store": "ok", "gateway": gateway},
                            status_code=503)
    return {"status": "ready", "store": "ok", "gateway": gateway}


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE: {}},
                             "description": "Prometheus text exposition"}})
async def metrics(request: Request) -> Response:
    """Requests, gateway calls, tokens, spend, tasks by state, in Prometheus text format."""
    ctx = _ctx(request)
    return Response(ctx.metrics.render(ctx.store), media_type=CONTENT_TYPE)
