"""How the server writes bytes: JSON (orjson when installed, else the standard library), SSE
frames and timestamps. Depends on the standard library and Starlette's Response.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from starlette.background import BackgroundTask
from starlette.responses import Response

_dumps: Callable[[Any], bytes]
try:
    import orjson

    def _dumps(value: Any) -> bytes:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
except ImportError:  # pragma: no cover - orjson is an optional speed-up
    def _dumps(value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                          default=str).encode()


def dumps(value: Any) -> bytes:
    """Compact JSON bytes."""
    return _dumps(value)


class JSONBytes(Response):
    """A JSON answer encoded straight to bytes. Routes on the hot board path return this rather
    than a dict, which FastAPI would first validate and re-encode through pydantic."""

    media_type = "application/json"

    def __init__(self, content: Any, status_code: int = 200,
                 headers: dict[str, str] | None = None,
                 background: BackgroundTask | None = None) -> None:
        super().__init__(content, status_code, headers, None, background)

    def render(self, content: Any) -> bytes:
        return _dumps(content)


def iso(moment: datetime | None) -> str | None:
    """A stored time as ISO 8601 in UTC with a Z, as ruvocal sends dates."""
    if moment is None:
        return None
    if moment.tzinfo is not UTC:  # the store's times are already UTC: skip the conversion
        moment = (moment.replace(tzinfo=UTC) if moment.tzinfo is None
                  else moment.astimezone(UTC))
    return moment.isoformat(timespec="milliseconds")[:-6] + "Z"


def sse_frame(data: Any, *, event_id: int | str | None = None, event: str | None = None) -> bytes:
    """One server-sent event. `data` is JSON-encoded, so it never holds a raw newline."""
    head = b""
    if event_id is not None:
        head += b"id: " + str(event_id).encode() + b"\n"
    if event is not None:
        head += b"event: " + event.encode() + b"\n"
    return head + b"data: " + dumps(data) + b"\n\n"


SSE_HEADERS = {
    "cache-control": "no-cache",
    # Proxies (nginx, some ingress controllers) buffer responses unless told not to.
    "x-accel-buffering": "no",
}
