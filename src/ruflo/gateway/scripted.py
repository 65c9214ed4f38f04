"""ScriptedGateway: a real OpenAI-compatible HTTP server that answers from a script, for tests.

Depends on Starlette, uvicorn and its script and answer modules (nothing else in ruflo). It
speaks the LiteLLM proxy's dialect: `GET /v1/models` (and `/models`), `POST /v1/messages`
(Anthropic), `POST /v1/responses` (OpenAI Responses) and `POST /v1beta/models/MODEL:METHOD`
(Gemini's generateContent / streamGenerateContent) through the same rules
(ruflo.gateway.scripted_protocols, scripted_gemini), `POST /v1/chat/completions` (plain, SSE
streaming ending with `data: [DONE]`, tool calls, `usage`, the `x-litellm-call-id` header, the
cost as LiteLLM reports it: the `x-litellm-response-cost` header on a plain answer, `usage.cost`
in the last chunk of a stream) and LiteLLM-shaped error bodies. It honours `max_tokens` (the
answer is cut, finish_reason "length") and counts what it served (`served`).

The script format and the faults: ruflo.gateway.script. What an answer looks like on the
wire: ruflo.gateway.scripted_answer. Its public names are all importable from here.

At run time, from the test's thread: `add_rules`, `set_fault`/`clear_fault`, `revoke_key`,
`open_gate` (lets the answers held by `hold` go),
`request_count`, `chat_count`, `requests`, `served`. Over HTTP (for a server started with
`ruflo gateway scripted`): `GET /_scripted/stats`, `GET /_scripted/requests`,
`POST /_scripted/fault` `{"fault": ...}` (null clears), `POST /_scripted/rules`
`{"rules": [...], "replace": false}`, `POST /_scripted/keys` `{"revoke": [...], "allow": [...]}`,
`POST /_scripted/reset`. Admin requests are not counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ruflo.errors import ConfigError
from ruflo.gateway.script import Fault, Match, Reply, Rule, Script, message_text
from ruflo.gateway.scripted_answer import Served, answer, error_response
from ruflo.gateway.scripted_gemini import gemini_answer, gemini_chat
from ruflo.gateway.scripted_protocols import as_chat, messages_answer, responses_answer

__all__ = ["Fault", "Match", "Reply", "Rule", "Script", "ScriptedGateway", "Served"]


class ScriptedGateway:
    """An OpenAI-compatible server answering from a `Script`, run in a background thread.

    Use `with ScriptedGateway(script) as base_url:` or `start()` / `stop()`. The counters and
    the request log are safe to read from the test's thread.
    """

    def __init__(self, script: Script | Mapping[str, Any] | None = None, *,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.script = Script.parse(script)
        self._initial = self._copy(self.script)
        self.host = host
        self.port = port
        self.revoked: set[str] = set()
        self.requests: list[dict[str, Any]] = []
        """Chat requests received: {"call_id", "model", "messages", "stream", "key", "tools",
        "max_tokens", "rule"}."""
        self.request_count = 0
        """Every request except the admin ones."""
        self.chat_count = 0
        self.models_count = 0
        self._served = Served()
        self._open_gates: set[str] = set()
        self._gates: dict[str, asyncio.Event] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        """The server's event loop, where the gates' waiters are."""
        self._lock = threading.Lock()
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.app = Starlette(routes=[
            Route("/v1/models", self._models, methods=["GET"]),
            Route("/models", self._models, methods=["GET"]),
            Route("/v1/chat/completions", self._chat, methods=["POST"]),
            Route("/chat/completions", self._chat, methods=["POST"]),
            Route("/v1/messages", self._messages, methods=["POST"]),
            Route("/messages", self._messages, methods=["POST"]),
            Route("/v1/responses", self._responses, methods=["POST"]),
            Route("/responses", self._responses, methods=["POST"]),
            Route("/v1beta/models/{target}", self._gemini, methods=["POST"]),
            Route("/_scripted/stats", self._admin_stats, methods=["GET"]),
            Route("/_scripted/requests", self._admin_requests, methods=["GET"]),
            Route("/_scripted/fault", self._admin_fault, methods=["POST"]),
            Route("/_scripted/rules", self._admin_rules, methods=["POST"]),
            Route("/_scripted/keys", self._admin_keys, methods=["POST"]),
            Route("/_scripted/reset", self._admin_reset, methods=["POST"]),
        ])

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> ScriptedGateway:
        return cls(Script.load(path), **kwargs)

    # -- run-time control (any thread) ----------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def add_rules(self, *rules: Mapping[str, Any] | Rule, first: bool = False) -> None:
        parsed = [Rule.parse(r) for r in rules]
        with self._lock:
            if first:
                self.script.rules[:0] = parsed
            else:
                self.script.rules.extend(parsed)

    def set_rules(self, rules: Sequence[Mapping[str, Any] | Rule]) -> None:
        parsed = [Rule.parse(r) for r in rules]
        with self._lock:
            self.script.rules = parsed

    def set_fault(self, fault: str | Mapping[str, Any] | Fault | None) -> None:
        """Apply a fault to every request (models included) until cleared."""
        parsed = Fault.parse(fault) if fault is not None else None
        with self._lock:
            self.script.fault = parsed

    def clear_fault(self) -> None:
        self.set_fault(None)

    def open_gate(self, name: str) -> None:
        """Let the answers held at this gate go, and those that reach it later pass."""
        with self._lock:
            self._open_gates.add(name)
            gate, loop = self._gates.get(name), self._loop
        if gate is not None and loop is not None:
            loop.call_soon_threadsafe(gate.set)

    def _gate(self, name: str) -> asyncio.Event:
        """The gate's flag, in the server's loop (set already if the gate was opened)."""
        with self._lock:
            self._loop = asyncio.get_running_loop()
            gate = self._gates.setdefault(name, asyncio.Event())
            if name in self._open_gates:
                gate.set()
            return gate

    def revoke_key(self, key: str) -> None:
        """Pull a key: from now on it gets 401 token_not_found_in_db (the kill switch)."""
        with self._lock:
            self.revoked.add(key)

    def restore_key(self, key: str) -> None:
        with self._lock:
            self.revoked.discard(key)

    @staticmethod
    def _copy(script: Script) -> Script:
        return dataclasses.replace(
            script, rules=[dataclasses.replace(r, used=0) for r in script.rules])

    def reset(self, script: Script | Mapping[str, Any] | None = None) -> None:
        """Back to a clean state: the given script (default: the one it started with), no
        fault, no revoked key, zero counters. Lets many tests share one server."""
        fresh = self._copy(Script.parse(script) if script is not None else self._initial)
        with self._lock:
            self.script = fresh
            self.revoked.clear()
            self.request_count = self.chat_count = self.models_count = 0
            self.requests.clear()
            self._served = Served()
            self._open_gates.clear()
            self._gates.clear()

    def reset_counts(self) -> None:
        with self._lock:
            self.request_count = self.chat_count = self.models_count = 0
            self.requests.clear()
            self._served = Served()

    @property
    def served(self) -> Served:
        """What it has answered so far (a copy): the gateway's side of the ledger."""
        with self._lock:
            return dataclasses.replace(self._served)

    def _serve(self, served: Served, prompt_tokens: int, completion_tokens: int,
               cost: float | None) -> None:
        """Counts an answer into `served`, the counter of the request's arrival: a request from
        before a reset (a test's held or slow call ending late) never counts into the next."""
        with self._lock:
            served.calls += 1
            served.prompt_tokens += prompt_tokens
            served.completion_tokens += completion_tokens
            served.cost += cost or 0.0

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"requests": self.request_count, "chat": self.chat_count,
                    "models": self.models_count,
                    "served": dataclasses.asdict(self._served),
                    "rules": [{"name": r.name, "used": r.used, "times": r.times}
                              for r in self.script.rules],
                    "fault": self.script.fault is not None}

    # -- lifecycle ------------------------------------------------------------------------------
    def _bind(self) -> socket.socket:
        # IPPROTO_TCP named explicitly: asyncio sets TCP_NODELAY only on sockets whose proto
        # says TCP, and without it every streamed chunk waits on Nagle's algorithm (~40 ms).
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET,
                             socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        # Listening before uvicorn starts: a client told the URL early waits in the backlog
        # instead of being refused.
        sock.listen(2048)
        self.port = sock.getsockname()[1]
        return sock

    def _server_for(self) -> Any:
        import uvicorn

        config = uvicorn.Config(self.app, log_level="warning", access_log=False,
                                lifespan="off", timeout_graceful_shutdown=2)
        return uvicorn.Server(config)

    def start(self) -> str:
        """Serve in a background thread on `host:port` (port 0 = a free one); return base_url."""
        if self._thread is not None:
            return self.base_url
        sock = self._bind()
        server = self._server = self._server_for()
        self._thread = threading.Thread(target=lambda: server.run(sockets=[sock]),
                                        name=f"scripted-gateway-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the scripted gateway did not start")
            time.sleep(0.005)
        return self.base_url

    def stop(self) -> None:
        if self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._thread = None
        self._server = None

    def serve_forever(self, on_ready: Callable[[str], None] | None = None) -> None:
        """Serve in the calling thread until SIGINT/SIGTERM (the CLI form)."""
        sock = self._bind()
        if on_ready is not None:
            on_ready(self.base_url)
        self._server_for().run(sockets=[sock])

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- the OpenAI-compatible routes ------------------------------------------------------------
    def _refused(self, request: Request) -> Fault | None:
        key = self._key(request)
        keys = self.script.keys
        if not key or key in self.revoked or (keys is not None and key not in keys):
            return Fault.parse("key_refused")
        return None

    async def _models(self, request: Request) -> Response:
        with self._lock:
            self.request_count += 1
            self.models_count += 1
            fault = self.script.fault or self._refused(request)
            models = self.script.models
            delay = self.script.models_delay
        if delay:
            await asyncio.sleep(delay)
        if fault is not None:
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.malformed or fault.cut_after is not None:
                return Response("<html>not json</html>", media_type="text/html")
            return error_response(fault)
        created = int(time.time())
        return JSONResponse({"object": "list", "data": [
            {"id": m, "object": "model", "created": created, "owned_by": "scripted"}
            for m in models]})

    @staticmethod
    def _key(request: Request) -> str:
        """The key a request carries: OpenAI's bearer token, Anthropic's x-api-key, or
        Google's x-goog-api-key (or its `key` query parameter)."""
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        for header in ("x-api-key", "x-goog-api-key"):
            if request.headers.get(header, "").strip():
                return request.headers[header].strip()
        return request.query_params.get("key", "").strip()

    async def _messages(self, request: Request) -> Response:
        return await self._chat(request, "messages")

    async def _responses(self, request: Request) -> Response:
        return await self._chat(request, "responses")

    async def _gemini(self, request: Request) -> Response:
        return await self._chat(request, "gemini")

    async def _chat(self, request: Request, protocol: str = "chat") -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None
        if protocol == "gemini" and isinstance(body, dict):
            model, _, method = request.path_params["target"].partition(":")
            body = gemini_chat(model, method, body)
        elif protocol != "chat" and isinstance(body, dict):
            body = as_chat(protocol, body)
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            with self._lock:
                self.request_count += 1
            return error_response(Fault(status=400, type="invalid_request_error",
                                         message="request body must be JSON with messages"))
        with self._lock:
            self.request_count += 1
            self.chat_count += 1
            fault = self.script.fault or self._refused(request)
            rule = None if fault is not None else self._pick(body)
            if rule is not None:
                rule.used += 1
            call_id = str(uuid.uuid4())
            self.requests.append({"call_id": call_id, "model": body.get("model"), "messages": body["messages"],
                                  "stream": bool(body.get("stream")),
                                  "key": self._key(request), "protocol": protocol,
                                  "tools": body.get("tools"),
                                  "max_tokens": body.get("max_tokens"),
                                  "traceparent": request.headers.get("traceparent"),
                                  "rule": rule.name if rule is not None else None})
            default = self.script.default
            default_cost = self.script.cost
            served = self._served
        if rule is not None:
            if rule.delay:
                await asyncio.sleep(rule.delay)
            if rule.hold is not None:
                await self._gate(rule.hold).wait()
            fault = rule.fault
            reply = rule.reply
        else:
            reply = default
        if fault is not None:
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.malformed:
                return Response(fault.body if fault.body is not None
                                else "<html><body>502 Bad Gateway (not an API)</body></html>",
                                media_type="application/json")
            if fault.cut_after is None:
                return error_response(fault)
        if reply is None and fault is None:
            last = next((m for m in reversed(body["messages"]) if isinstance(m, Mapping)), {})
            return error_response(Fault(
                status=400, type="scripted_no_rule",
                message=f"no scripted rule matched (last message: "
                        f"{message_text(last.get('content'))[:80]!r})"))
        render = {"chat": answer, "messages": messages_answer,
                  "responses": responses_answer, "gemini": gemini_answer}[protocol]
        return render(body, reply or Reply(content="partial answer cut by the gateway"),
                      default_cost, call_id, functools.partial(self._serve, served),
                      cut_after=fault.cut_after if fault else None)

    def _pick(self, body: Mapping[str, Any]) -> Rule | None:
        for rule in self.script.rules:
            if not rule.spent and rule.match.matches(body):
                return rule
        return None

    # -- admin routes ----------------------------------------------------------------------------
    async def _admin_stats(self, request: Request) -> Response:
        return JSONResponse(self.stats())

    async def _admin_requests(self, request: Request) -> Response:
        with self._lock:
            return JSONResponse(list(self.requests))

    async def _admin_fault(self, request: Request) -> Response:
        payload = await self._admin_body(request)
        if isinstance(payload, Response):
            return payload
        try:
            self.set_fault(payload.get("fault"))
        except (ConfigError, TypeError) as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        return JSONResponse(self.stats())

    async def _admin_rules(self, request: Request) -> Response:
        payload = await self._admin_body(request)
        if isinstance(payload, Response):
            return payload
        try:
            if payload.get("replace"):
                self.set_rules(payload.get("rules") or [])
            else:
                self.add_rules(*(payload.get("rules") or []))
        except (ConfigError, TypeError, AttributeError) as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        return JSONResponse(self.stats())

    async def _admin_keys(self, request: Request) -> Response:
        payload = await self._admin_body(request)
        if isinstance(payload, Response):
            return payload
        for key in payload.get("revoke") or []:
            self.revoke_key(str(key))
        for key in payload.get("allow") or []:
            self.restore_key(str(key))
        return JSONResponse({"revoked": sorted(self.revoked)})

    async def _admin_reset(self, request: Request) -> Response:
        self.reset_counts()
        with self._lock:
            for rule in self.script.rules:
                rule.used = 0
        return JSONResponse(self.stats())

    @staticmethod
    async def _admin_body(request: Request) -> dict[str, Any] | Response:
        with contextlib.suppress(ValueError):
            payload = json.loads(await request.body() or b"{}")
            if isinstance(payload, dict):
                return payload
        return JSONResponse({"error": "body must be a JSON object"}, status_code=400)
