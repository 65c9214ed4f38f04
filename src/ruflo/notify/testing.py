"""ProviderStandIn: a real HTTP server on 127.0.0.1 that answers like the Telegram Bot API,
Resend or a webhook receiver, with scripted faults (error answers, hangs). Tests and demos point
the senders at it. Depends on the standard library only.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    """JSON-able answer; None gives the provider's usual success answer."""
    hang: bool = False
    """Never answer (until the stand-in closes)."""
    headers: dict[str, str] = field(default_factory=dict)


class ProviderStandIn:
    """`replies` are used in order, one per request; after them every request gets the usual
    success answer of `style` ("telegram", "resend" or "webhook").

    `received` holds what was sent to the provider. A Telegram stand-in also answers the
    approve/reject poller's getUpdates as the Bot API does when nobody pressed anything (it holds
    the long poll up to a second, then answers with no updates); those polls are counted in
    `polls`, not kept in `received`, and take no scripted reply."""

    def __init__(self, style: str = "telegram") -> None:
        self.style = style
        self.received: list[Received] = []
        self.replies: deque[Reply] = deque()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._count = 0
        self.polls = 0
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                request = Received("POST", self.path, dict(self.headers.items()), body)
                if stand_in.style == "telegram" and self.path.endswith("/getUpdates"):
                    self._answer(200, stand_in._no_updates(request))
                    return
                reply = stand_in._take(request)
                if reply.hang:
                    stand_in._closed.wait(60)
                    return
                self._answer(reply.status, reply.body if reply.body is not None
                             else stand_in._success(), reply.headers)

            def _answer(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True,
                                        name=f"stand-in-{style}")

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> ProviderStandIn:
        self._thread.start()
        return self

    def close(self) -> None:
        self._closed.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> ProviderStandIn:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self.replies.extend(replies)

    def _take(self, request: Received) -> Reply:
        with self._lock:
            self.received.append(request)
            self._count += 1
            return self.replies.popleft() if self.replies else Reply()

    def _no_updates(self, request: Received) -> Any:
        with self._lock:
            self.polls += 1
        try:
            wait = float(request.json().get("timeout") or 0)
        except (ValueError, AttributeError):
            wait = 0.0
        self._closed.wait(min(wait, 1.0))
        return {"ok": True, "result": []}

    def _success(self) -> Any:
        if self.style == "telegram":
            return {"ok": True, "result": {"message_id": self._count, "chat": {"id": 1}}}
        if self.style == "resend":
            return {"id": f"email-{self._count}"}
        return {"received": True}

    def texts(self) -> list[str]:
        """The message text of every request (Telegram `text`, Resend `text`, webhook `text`)."""
        return [str(r.json().get("text", "")) for r in self.received]
