"""The script a ScriptedGateway answers from: rules (match → reply or fault), the faults it
can play, and how a YAML/JSON file or Python objects become a `Script`. Depends on PyYAML and
ruflo.errors.

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
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ruflo.errors import ConfigError

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


def message_text(content: Any) -> str:
    """Message content as text: a string, or the text parts of a multi-part content list."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content)


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
            if not users or not re.search(self.last_user, message_text(users[-1].get("content"))):
                return False
        if self.last_tool is not None:
            tools = [m for m in messages if m.get("role") == "tool"]
            if not tools or not re.search(self.last_tool, message_text(tools[-1].get("content"))):
                return False
        if self.last_role is not None and (not messages
                                           or messages[-1].get("role") != self.last_role):
            return False
        if self.system is not None:
            system = "\n".join(message_text(m.get("content")) for m in messages
                               if m.get("role") in ("system", "developer"))
            if not re.search(self.system, system):
                return False
        if self.any is not None and not any(re.search(self.any, message_text(m.get("content")))
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
