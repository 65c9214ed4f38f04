"""ScriptedGateway: a real OpenAI-compatible HTTP server that answers from a script, for tests.

Depends on Starlette, uvicorn and PyYAML only (nothing else in ruflo). It speaks the LiteLLM
proxy's dialect: `GET /v1/models` (and `/models`), `POST /v1/chat/completions` (plain, SSE
streaming ending with `data: [DONE]`, tool calls, `usage`, the `x-litellm-call-id` header, the
cost as LiteLLM reports it: the `x-litellm-response-cost` header on a plain answer, `usage.cost`
in the last chunk of a stream) and LiteLLM-shaped error bodies. It honours `max_tokens` (the
answer is cut, finish_reason "length") and counts what it served (`served`).

Script format (YAML or JSON file, or the same as Python objects)::

    models: [gpt-4o-mini, scripted]   # what /v1/models lists (default: these two)
    keys: [sk-test]                   # accepted API keys; omit to accept any non-empty key
    cost: 0.0002                      # default cost per call (header / stream usage.cost); omit = none
    default: {content: "ok"}          # reply when no rule matches; omit = 400 scripted_no_rule
    fault: null                       # a fault applied to every request (see below)
    models_delay: 0                   # seconds /v1/models takes to answer
    rules:                            # tried in order; the first that matches answers
      - name: greet                   # optional, shown in stats
        match:                        # every key given must match (regexes use re.search)
          last_user: "(?i)hello"      #   content of the last user message
          last_tool: "exit code 0"    #   content of the most recent tool result
          last_role: tool             #   role of the last message (exact)
          system: "you are a coder"   #   the system prompt(s)
          any: "secret"               #   any message's content
          model: "gpt-4o.*"           #   the requested model (full match)
          tool: write_file            #   one of the offered tools is named so (full match)
          turn: 2                     #   1 + assistant messages so far (int or list of ints)
        reply:
          content: "hi there"         # or `echo: true` to answer the last user message
          tool_calls:                 # each: name, arguments (object or JSON text), optional id
            - {name: write_file, arguments: {path: a.txt, text: hi}}
          usage: {prompt_tokens: 12, completion_tokens: 3}   # default: estimated from text;
                                                             # false: send no usage at all
          cost: 0.001                 # this rule's cost (null = none reported)
          finish_reason: stop         # default: "tool_calls" when there are tool calls
          chunk: 8                    # characters per streamed chunk
          chunk_delay: 0              # seconds between streamed chunks (a slow model)
        delay: 0.5                    # seconds to wait before answering (a slow gateway)
        hold: slow                    # answer only once the gate of this name is opened
        times: 1                      # consumed after this many answers; omit = forever
        fault: key_refused            # answer with a fault instead of `reply`

A fault is a shorthand name or a mapping `{kind, status, type, message, retry_after, delay,
malformed, body, cut_after}` (`kind` starts from a shorthand). Shorthands: `key_refused` (401 token_not_found_in_db), `auth_error`
(401), `key_blocked` (401 "Key is blocked"), `no_db_connection` (400), `budget_exceeded` (400;
give `status: 429` for newer LiteLLM), `rate_limited` (429, Retry-After 1), `server_error`
(500), `unavailable` (503), `malformed` (200 with a body that is not a completion),
`cut_stream` (the stream stops after 2 chunks with the connection dropped; a plain call gets a
truncated body).

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
import json
import logging
import re
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ruflo.errors import ConfigError

__all__ = ["Fault", "Match", "Reply", "Rule", "Script", "ScriptedGateway", "Served"]

DEFAULT_MODELS = ("gpt-4o-mini", "scripted")

FAULTS: dict[str, dict[str, Any]] = {
    "key_refused": {"status": 401, "type": "token_not_found_in_db",
                    "message": "Authentication Error, Invalid proxy server token passed. "
                               "Unable to find token in cache or `LiteLLM_VerificationTokenTable`"},
    "auth_error": {"status": 401, "type": "auth_error",
                   "message": "Authentication Error, Invalid proxy server token passed."},
    "key_blocked": {"status": 401, "type": "auth_error",
                    "message": "Authentication Error, Key is blocked. Update via "
                               "`/key/unblock` if you're admin."},
    "no_db_connection": {"status": 400, "type": "no_db_connection",
                         "message": "No connected db."},
    "budget_exceeded": {"status": 400, "type": "budget_exceeded",
                        "message": "Budget has been exceeded! Current cost: 10.5, "
                                   "Max budget: 10.0"},
    "rate_limited": {"status": 429, "type": "rate_limit_error", "retry_after": 1,
                     "message": "Rate limit reached for requests per minute."},
    "server_error": {"status": 500, "type": "internal_server_error",
                     "message": "Internal server error (scripted)."},
    "unavailable": {"status": 503, "type": "service_unavailable",
                    "message": "Service unavailable (scripted)."},
    "malformed": {"malformed": True},
    "cut_stream": {"cut_after": 2},
}

MATCH_KEYS = ("last_user", "last_tool", "last_role", "system", "any", "model", "tool", "turn")

log = logging.getLogger(__name__)


class _StreamCut(Exception):
    """Raised inside a streaming body to drop the connection mid-answer (a scripted fault)."""


class _QuietStreamCut(logging.Filter):
    """Keep uvicorn from logging a scripted stream cut as an application crash."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], _StreamCut))


logging.getLogger("uvicorn.error").addFilter(_QuietStreamCut())


def _text(content: Any) -> str:
    """Message content as text: a string, or the text parts of a multi-part content list."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content)


CHARS_PER_TOKEN = 4
"""The scripted model's tokenizer: every four characters are a token."""


def _estimate_tokens(text: str) -> int:
    return max(1, len(text) // CHARS_PER_TOKEN)


def _token_limit(body: Mapping[str, Any]) -> int | None:
    """The request's cap on completion tokens, if it set a usable one."""
    for key in ("max_tokens", "max_completion_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


@dataclass(slots=True)
class Served:
    """What the gateway answered, counted as a real gateway bills it: each completion it
    produced (a plain answer when sent; a stream when it ended, with what it had sent by then if
    it was dropped). `cost` adds up the costs it reported."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Fault:
    """How a rule (or the whole gateway) misbehaves."""

    status: int = 500
    type: str = "internal_server_error"
    message: str = "scripted fault"
    retry_after: float | None = None
    """Seconds, sent as the Retry-After header."""
    delay: float = 0.0
    malformed: bool = False
    """Answer 200 with a body that is not a chat completion."""
    cut_after: int | None = None
    """Chunks sent before the stream is dropped (plain calls get a truncated body)."""
    body: str | None = None
    """With `malformed`: the exact 200 body to send (default: an HTML page)."""

    @classmethod
    def parse(cls, raw: str | Mapping[str, Any] | Fault) -> Fault:
        if isinstance(raw, Fault):
            return raw
        if isinstance(raw, str):
            if raw not in FAULTS:
                raise ConfigError(f"unknown scripted fault {raw!r}; known: {', '.join(FAULTS)}")
            return cls(**FAULTS[raw])
        spec = dict(raw)
        base: dict[str, Any] = {}
        if "kind" in spec:
            kind = spec.pop("kind")
            if kind not in FAULTS:
                raise ConfigError(f"unknown scripted fault {kind!r}; known: {', '.join(FAULTS)}")
            base = dict(FAULTS[kind])
        unknown = set(spec) - {"status", "type", "message", "retry_after", "delay",
                               "malformed", "cut_after", "body"}
        if unknown:
            raise ConfigError(f"unknown fault fields: {', '.join(sorted(unknown))}")
        base.update(spec)
        return cls(**base)


@dataclass(frozen=True, slots=True)
class Match:
    """Conditions on the conversation; all given ones must hold. Regexes use `re.search`."""

    last_user: str | None = None
    last_tool: str | None = None
    last_role: str | None = None
    system: str | None = None
    any: str | None = None
    model: str | None = None
    tool: str | None = None
    turn: int | tuple[int, ...] | None = None
    when: Callable[[Mapping[str, Any]], bool] | None = None
    """Python-only: a predicate over the request body."""

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | Match | None) -> Match:
        if raw is None:
            return cls()
        if isinstance(raw, Match):
            return raw
        unknown = set(raw) - {*MATCH_KEYS, "when"}
        if unknown:
            raise ConfigError(f"unknown match keys: {', '.join(sorted(unknown))}; "
                              f"known: {', '.join(MATCH_KEYS)}")
        turn = raw.get("turn")
        if isinstance(turn, list):
            turn = tuple(int(t) for t in turn)
        for key in ("last_user", "last_tool", "system", "any", "model", "tool"):
            if raw.get(key) is not None:
                try:
                    re.compile(raw[key])
                except re.error as error:
                    raise ConfigError(f"match.{key}: bad regex {raw[key]!r}: {error}") from None
        return cls(**{**raw, "turn": turn})

    def matches(self, body: Mapping[str, Any]) -> bool:
        messages: list[Mapping[str, Any]] = [m for m in body.get("messages") or []
                                             if isinstance(m, Mapping)]
        if self.last_user is not None:
            users = [m for m in messages if m.get("role") == "user"]
            if not users or not re.search(self.last_user, _text(users[-1].get("content"))):
                return False
        if self.last_tool is not None:
            tools = [m for m in messages if m.get("role") == "tool"]
            if not tools or not re.search(self.last_tool, _text(tools[-1].get("content"))):
                return False
        if self.last_role is not None and (not messages
                                           or messages[-1].get("role") != self.last_role):
            return False
        if self.system is not None:
            system = "\n".join(_text(m.get("content")) for m in messages
                               if m.get("role") in ("system", "developer"))
            if not re.search(self.system, system):
                return False
        if self.any is not None and not any(re.search(self.any, _text(m.get("content")))
                                            for m in messages):
            return False
        if self.model is not None and not re.fullmatch(self.model, str(body.get("model", ""))):
            return False
        if self.tool is not None:
            names = [str((t.get("function") or {}).get("name", ""))
                     for t in body.get("tools") or [] if isinstance(t, Mapping)]
            if not any(re.fullmatch(self.tool, n) for n in names):
                return False
        if self.turn is not None:
            turn = 1 + sum(1 for m in messages if m.get("role") == "assistant")
            wanted = self.turn if isinstance(self.turn, tuple) else (self.turn,)
            if turn not in wanted:
                return False
        return self.when is None or bool(self.when(body))


@dataclass(frozen=True, slots=True)
class Reply:
    """What the model says: text and/or tool calls (cut to the request's `max_tokens`)."""

    content: str | None = None
    tool_calls: tuple[Mapping[str, Any], ...] = ()
    echo: bool = False
    usage: Mapping[str, int] | bool | None = None
    """Token counts to report; None = estimated from the text; False = no usage at all."""
    cost: float | bool | None = True
    """USD reported (plain: the cost header; stream: usage.cost of the last chunk); None = not
    reported; True = the script's default."""
    finish_reason: str | None = None
    chunk: int = 8
    chunk_delay: float = 0.0
    """Seconds between streamed chunks: a model that writes slowly."""

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | Reply | str) -> Reply:
        if isinstance(raw, Reply):
            return raw
        if isinstance(raw, str):
            return cls(content=raw)
        unknown = set(raw) - {"content", "tool_calls", "echo", "usage", "cost",
                              "finish_reason", "chunk", "chunk_delay"}
        if unknown:
            raise ConfigError(f"unknown reply fields: {', '.join(sorted(unknown))}")
        calls = []
        for call in raw.get("tool_calls") or []:
            if not isinstance(call, Mapping) or not call.get("name"):
                raise ConfigError(f"a scripted tool call needs a name: {call!r}")
            calls.append(dict(call))
        spec = {k: v for k, v in raw.items() if k != "tool_calls"}
        return cls(tool_calls=tuple(calls), **spec)


@dataclass(slots=True)
class Rule:
    """One scripted answer: when `match` holds, answer `reply` (or `fault`)."""

    match: Match = field(default_factory=Match)
    reply: Reply | None = None
    fault: Fault | None = None
    delay: float = 0.0
    hold: str | None = None
    """A gate's name: the answer waits until `ScriptedGateway.open_gate` opens it (a call that
    is in flight for exactly as long as a test needs)."""
    times: int | None = None
    """How many answers before the rule is used up; None = forever."""
    name: str = ""
    used: int = 0

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | Rule) -> Rule:
        if isinstance(raw, Rule):
            return raw
        unknown = set(raw) - {"match", "reply", "fault", "delay", "hold", "times", "name"}
        if unknown:
            raise ConfigError(f"unknown rule fields: {', '.join(sorted(unknown))}")
        if raw.get("reply") is None and raw.get("fault") is None:
            raise ConfigError(f"a scripted rule needs a reply or a fault: {dict(raw)!r}")
        return cls(match=Match.parse(raw.get("match")),
                   reply=Reply.parse(raw["reply"]) if raw.get("reply") is not None else None,
                   fault=Fault.parse(raw["fault"]) if raw.get("fault") is not None else None,
                   delay=float(raw.get("delay", 0.0)),
                   hold=str(raw["hold"]) if raw.get("hold") is not None else None,
                   times=raw.get("times"), name=str(raw.get("name", "")))

    @property
    def spent(self) -> bool:
        return self.times is not None and self.used >= self.times


@dataclass(slots=True)
class Script:
    """The whole behaviour of a ScriptedGateway."""

    rules: list[Rule] = field(default_factory=list)
    models: tuple[str, ...] = DEFAULT_MODELS
    keys: frozenset[str] | None = None
    cost: float | None = None
    default: Reply | None = None
    fault: Fault | None = None
    models_delay: float = 0.0
    """Seconds /v1/models takes to answer."""

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | Script | None) -> Script:
        if raw is None:
            return cls()
        if isinstance(raw, Script):
            return raw
        if not isinstance(raw, Mapping):
            raise ConfigError("a gateway script must be a mapping with `rules`")
        unknown = set(raw) - {"rules", "models", "keys", "cost", "default", "fault",
                              "models_delay"}
        if unknown:
            raise ConfigError(f"unknown script fields: {', '.join(sorted(unknown))}")
        keys = raw.get("keys")
        return cls(rules=[Rule.parse(r) for r in raw.get("rules") or []],
                   models=tuple(raw.get("models") or DEFAULT_MODELS),
                   keys=frozenset(keys) if keys is not None else None,
                   cost=raw.get("cost"),
                   default=Reply.parse(raw["default"]) if raw.get("default") is not None
                   else None,
                   fault=Fault.parse(raw["fault"]) if raw.get("fault") is not None else None,
                   models_delay=float(raw.get("models_delay", 0.0)))

    @classmethod
    def load(cls, path: str | Path) -> Script:
        file = Path(path)
        try:
            raw = yaml.safe_load(file.read_text(encoding="utf-8"))
        except OSError as error:
            raise ConfigError(f"cannot read gateway script {file}: {error.strerror}") from None
        except yaml.YAMLError as error:
            raise ConfigError(f"gateway script {file} is not valid YAML/JSON: {error}") from None
        return cls.parse(raw)


def _cut(content: str | None, calls: list[dict[str, Any]],
         room: int) -> tuple[str | None, list[dict[str, Any]], bool]:
    """The answer cut to `room` characters: text first, then the tool calls in order (the last
    one kept may end mid-arguments). Also whether anything was cut."""
    cut = False
    if content is not None and len(content) > room:
        content, cut = content[:room], True
    room -= len(content or "")
    kept: list[dict[str, Any]] = []
    for call in calls:
        if room <= 0:
            cut = True
            break
        arguments = call["function"]["arguments"]
        if len(arguments) > room:
            call = {**call, "function": {**call["function"], "arguments": arguments[:room]}}
            cut = True
        kept.append(call)
        room -= len(call["function"]["arguments"])
    return content, kept, cut


def _error_response(fault: Fault) -> Response:
    headers = {}
    if fault.retry_after is not None:
        headers["retry-after"] = f"{fault.retry_after:g}"
    body = {"error": {"message": fault.message, "type": fault.type, "param": None,
                      "code": str(fault.status)}}
    return JSONResponse(body, status_code=fault.status, headers=headers)


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
        auth = request.headers.get("authorization", "")
        key = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
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
            return _error_response(fault)
        created = int(time.time())
        return JSONResponse({"object": "list", "data": [
            {"id": m, "object": "model", "created": created, "owned_by": "scripted"}
            for m in models]})

    async def _chat(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            with self._lock:
                self.request_count += 1
            return _error_response(Fault(status=400, type="invalid_request_error",
                                         message="request body must be JSON with messages"))
        with self._lock:
            self.request_count += 1
            self.chat_count += 1
            fault = self.script.fault or self._refused(request)
            rule = None if fault is not None else self._pick(body)
            if rule is not None:
                rule.used += 1
            auth = request.headers.get("authorization", "")
            call_id = str(uuid.uuid4())
            self.requests.append({"call_id": call_id, "model": body.get("model"), "messages": body["messages"],
                                  "stream": bool(body.get("stream")), "key": auth[7:],
                                  "tools": body.get("tools"),
                                  "max_tokens": body.get("max_tokens"),
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
                return _error_response(fault)
        if reply is None and fault is None:
            last = next((m for m in reversed(body["messages"]) if isinstance(m, Mapping)), {})
            return _error_response(Fault(
                status=400, type="scripted_no_rule",
                message=f"no scripted rule matched (last message: "
                        f"{_text(last.get('content'))[:80]!r})"))
        return self._answer(body, reply or Reply(content="partial answer cut by the gateway"),
                            default_cost, call_id, served,
                            cut_after=fault.cut_after if fault else None)

    def _pick(self, body: Mapping[str, Any]) -> Rule | None:
        for rule in self.script.rules:
            if not rule.spent and rule.match.matches(body):
                return rule
        return None

    def _answer(self, body: Mapping[str, Any], reply: Reply, default_cost: float | None,
                call_id: str, served: Served, *, cut_after: int | None) -> Response:
        model = str(body.get("model") or "scripted")
        messages = body["messages"]
        content = reply.content
        if reply.echo:
            users = [m for m in messages if isinstance(m, Mapping) and m.get("role") == "user"]
            content = _text(users[-1].get("content")) if users else ""
        calls: list[dict[str, Any]] = [{"id": str(c.get("id") or f"call_{uuid.uuid4().hex[:12]}"),
                  "type": "function",
                  "function": {"name": str(c["name"]),
                               "arguments": c.get("arguments") if isinstance(
                                   c.get("arguments"), str)
                               else json.dumps(c.get("arguments") or {})}}
                 for c in reply.tool_calls]
        limit = _token_limit(body)
        truncated = False
        if limit is not None:
            # Like a real model: the answer stops at max_tokens, mid-word or mid-call.
            content, calls, truncated = _cut(content, calls, limit * CHARS_PER_TOKEN)
        prompt_text = "".join(_text(m.get("content")) for m in messages if isinstance(m, Mapping))
        answer_text = (content or "") + "".join(c["function"]["arguments"] for c in calls)
        usage = {"prompt_tokens": _estimate_tokens(prompt_text),
                 "completion_tokens": _estimate_tokens(answer_text)}
        if isinstance(reply.usage, Mapping):
            usage.update({k: int(v) for k, v in reply.usage.items()})
        if limit is not None and usage["completion_tokens"] > limit:
            usage["completion_tokens"], truncated = limit, True
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        send_usage = reply.usage is not False
        finish = ("length" if truncated
                  else reply.finish_reason or ("tool_calls" if calls else "stop"))
        raw_cost = default_cost if reply.cost is True else reply.cost
        cost = None if raw_cost is None or raw_cost is False else float(raw_cost)
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        headers = {"x-litellm-call-id": call_id}
        created = int(time.time())
        if not body.get("stream"):
            if cost is not None:
                headers["x-litellm-response-cost"] = repr(cost)
            self._serve(served, usage["prompt_tokens"], usage["completion_tokens"], cost)
            message: dict[str, Any] = {"role": "assistant", "content": content}
            if calls:
                message["tool_calls"] = calls
            answer = {"id": completion_id, "object": "chat.completion", "created": created,
                      "model": model, "choices": [{"index": 0, "message": message,
                                                   "finish_reason": finish}]}
            if send_usage:
                answer["usage"] = usage
            text = json.dumps(answer)
            if cut_after is not None:
                text = text[:len(text) // 2]
            return Response(text, media_type="application/json", headers=headers)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> str:
            return "data: " + json.dumps({
                "id": completion_id, "object": "chat.completion.chunk", "created": created,
                "model": model, "choices": [{"index": 0, "delta": delta,
                                             "finish_reason": finish_reason}]}) + "\n\n"

        produced = 0  # characters of the answer sent so far: what a dropped stream is billed for

        def pieces() -> Iterator[str]:
            nonlocal produced
            yield chunk({"role": "assistant", "content": ""})
            step = max(1, reply.chunk)
            for start in range(0, len(content or ""), step):
                produced += len((content or "")[start:start + step])
                yield chunk({"content": (content or "")[start:start + step]})
            for index, call in enumerate(calls):
                yield chunk({"tool_calls": [{"index": index, "id": call["id"],
                                             "type": "function",
                                             "function": {"name": call["function"]["name"],
                                                          "arguments": ""}}]})
                args = call["function"]["arguments"]
                for start in range(0, len(args), step * 4):
                    produced += len(args[start:start + step * 4])
                    yield chunk({"tool_calls": [{"index": index, "function": {
                        "arguments": args[start:start + step * 4]}}]})
            yield chunk({}, finish)
            if include_usage and send_usage:
                # LiteLLM's last chunk: no cost header on a stream (the headers left before the
                # cost was known), the cost in usage.cost instead.
                reported = dict(usage) if cost is None else {**usage, "cost": cost}
                yield "data: " + json.dumps({
                    "id": completion_id, "object": "chat.completion.chunk", "created": created,
                    "model": model, "choices": [{"index": 0, "delta": {}}],
                    "usage": reported}) + "\n\n"
            yield "data: [DONE]\n\n"

        async def events() -> AsyncIterator[str]:
            finished = False
            try:
                for sent, piece in enumerate(pieces()):
                    if cut_after is not None and sent >= cut_after:
                        raise _StreamCut("scripted stream cut")
                    yield piece
                    if reply.chunk_delay:
                        await asyncio.sleep(reply.chunk_delay)
                    elif cut_after is not None:
                        # Give the client the chunks before the cut as separate reads.
                        await asyncio.sleep(0)
                finished = True
            finally:
                if finished:
                    self._serve(served, usage["prompt_tokens"], usage["completion_tokens"], cost)
                else:
                    self._serve(served, usage["prompt_tokens"], produced // CHARS_PER_TOKEN, None)

        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

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
