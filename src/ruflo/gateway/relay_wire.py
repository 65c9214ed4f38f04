"""The model protocols as the relay reads them: OpenAI Chat Completions, OpenAI Responses,
Anthropic Messages and Google's Gemini (generateContent). Depends on the gateway's base types
only.

For each protocol: what a request asks for (model, prompt size, max tokens, streamed or not),
the usage an answer carries (a plain body, or the events of a stream, read as they pass), and
the error shape the protocol's clients understand.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ruflo.gateway.base import ChatMessage, Usage

__all__ = ["Ask", "Protocol", "StreamReader", "error_body", "gemini_target", "plain_usage",
           "read_request"]


class Protocol(enum.StrEnum):
    CHAT = "chat"
    """OpenAI Chat Completions: POST /v1/chat/completions."""
    RESPONSES = "responses"
    """OpenAI Responses (Codex): POST /v1/responses."""
    MESSAGES = "messages"
    """Anthropic Messages (Claude Code): POST /v1/messages."""
    GEMINI = "gemini"
    """Google's Gemini API (Gemini CLI): POST /v1beta/models/MODEL:generateContent, or
    :streamGenerateContent — the model and whether it streams are in the path."""

    @property
    def path(self) -> str:
        return {"chat": "/chat/completions", "responses": "/responses",
                "messages": "/messages", "gemini": "/models/{target}"}[self.value]


GEMINI_METHODS = {"generateContent": False, "streamGenerateContent": True}
"""The Gemini methods the relay carries, and whether each streams."""


def gemini_target(target: str) -> tuple[str, bool]:
    """`MODEL:METHOD` of a Gemini path → (model, streamed); ValueError for another method."""
    model, _, method = target.partition(":")
    if not model or method not in GEMINI_METHODS:
        raise ValueError(f"models/{target} is not a Gemini call the relay carries "
                         f"({', '.join(GEMINI_METHODS)})")
    return model, GEMINI_METHODS[method]


@dataclass(frozen=True, slots=True)
class Ask:
    """What one request asks of the gateway, for its booking and its ledger entry."""

    model: str
    prompt: list[ChatMessage]
    """The request's input as messages, only to size the booking (see budget.reserve)."""
    tools: list[Any] | None
    max_tokens: int | None
    stream: bool


def _tokens(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 \
        else None


def read_request(protocol: Protocol, body: Mapping[str, Any]) -> Ask:
    """The request's ask; ValueError when it is not a request of that protocol."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ValueError("the request names no model")
    tools = body.get("tools") if isinstance(body.get("tools"), list) else None
    if protocol is Protocol.CHAT:
        messages = body.get("messages")
        if not isinstance(messages, list):
            raise ValueError("a chat completion request needs a list of messages")
        limit = _tokens(body.get("max_tokens")) or _tokens(body.get("max_completion_tokens"))
        prompt = [m if isinstance(m, dict) else {"content": m} for m in messages]
    elif protocol is Protocol.GEMINI:
        if not isinstance(body.get("contents"), list):
            raise ValueError("a Gemini request needs a list of contents")
        config = body.get("generationConfig")
        limit = _tokens(config.get("maxOutputTokens")) if isinstance(config, Mapping) else None
        prompt = [{"content": json.dumps(body.get("systemInstruction") or "")},
                  *({"content": json.dumps(c)} for c in body["contents"])]
    elif protocol is Protocol.RESPONSES:
        if "input" not in body:
            raise ValueError("a responses request needs an input")
        limit = _tokens(body.get("max_output_tokens"))
        prompt = [{"content": body.get("input")}, {"content": body.get("instructions") or ""}]
    else:
        messages = body.get("messages")
        if not isinstance(messages, list):
            raise ValueError("a messages request needs a list of messages")
        limit = _tokens(body.get("max_tokens"))
        prompt = [{"content": body.get("system") or ""},
                  *(m if isinstance(m, dict) else {"content": m} for m in messages)]
    return Ask(model, prompt, tools, limit, bool(body.get("stream")))


def _usage(protocol: Protocol, raw: Any) -> Usage | None:
    if not isinstance(raw, Mapping):
        return None
    if protocol is Protocol.CHAT:
        prompt, completion = raw.get("prompt_tokens"), raw.get("completion_tokens")
    elif protocol is Protocol.GEMINI:
        # Gemini counts a thinking model's thoughts apart from the answer; both are output.
        prompt, completion = raw.get("promptTokenCount"), raw.get("candidatesTokenCount")
        thoughts = raw.get("thoughtsTokenCount")
        if isinstance(thoughts, int):
            completion = (completion if isinstance(completion, int) else 0) + thoughts
    else:
        prompt, completion = raw.get("input_tokens"), raw.get("output_tokens")
    if not isinstance(prompt, int) and not isinstance(completion, int):
        return None
    prompt = prompt if isinstance(prompt, int) else 0
    if protocol is Protocol.MESSAGES:
        # Anthropic counts cached prompt tokens apart from input_tokens; they are prompt too.
        for extra in ("cache_creation_input_tokens", "cache_read_input_tokens"):
            value = raw.get(extra)
            prompt += value if isinstance(value, int) else 0
    return Usage(prompt, completion if isinstance(completion, int) else 0)


@dataclass(frozen=True, slots=True)
class Answered:
    """What an answer said about itself: usage, model, id, and the cost LiteLLM put in it."""

    usage: Usage | None
    model: str | None
    response_id: str | None
    cost: Any = None


def plain_usage(protocol: Protocol, data: Any) -> Answered:
    """Usage, model and id of a plain (not streamed) answer body."""
    if not isinstance(data, Mapping):
        return Answered(None, None, None)
    raw = data.get("usageMetadata" if protocol is Protocol.GEMINI else "usage")
    cost = raw.get("cost") if isinstance(raw, Mapping) else None
    model = data.get("modelVersion" if protocol is Protocol.GEMINI else "model")
    rid = data.get("responseId" if protocol is Protocol.GEMINI else "id")
    return Answered(_usage(protocol, raw), model if isinstance(model, str) else None,
                    rid if isinstance(rid, str) else None, cost)


class StreamReader:
    """Reads a server-sent event stream as it passes, for its usage: the last chunk's `usage`
    (chat), `response.completed` (responses), `message_start` + `message_delta` (messages),
    the latest `usageMetadata` (gemini).
    Also counts the characters of the answer that arrived, to estimate a cut stream."""

    def __init__(self, protocol: Protocol) -> None:
        self.protocol = protocol
        self.buffer = b""
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self.cost: Any = None
        self.model: str | None = None
        self.response_id: str | None = None
        self.received = 0
        """Characters of answer text and tool arguments seen so far."""
        self.finished = False
        """The stream said it was complete (its final event arrived)."""

    @property
    def usage(self) -> Usage | None:
        if self.prompt_tokens is None and self.completion_tokens is None:
            return None
        return Usage(self.prompt_tokens or 0, self.completion_tokens or 0)

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while True:
            cut = self.buffer.find(b"\n\n")
            crlf = self.buffer.find(b"\r\n\r\n")
            if cut < 0 and crlf < 0:
                return
            if crlf >= 0 and (cut < 0 or crlf < cut):
                block, self.buffer = self.buffer[:crlf], self.buffer[crlf + 4:]
            else:
                block, self.buffer = self.buffer[:cut], self.buffer[cut + 2:]
            for line in block.splitlines():
                if line.startswith(b"data:"):
                    self._event(line[5:].strip())

    def _event(self, payload: bytes) -> None:
        if payload == b"[DONE]":
            self.finished = True
            return
        try:
            event = json.loads(payload)
        except ValueError:
            return  # not ours to judge: the client reads the stream as the gateway sent it
        if not isinstance(event, dict):
            return
        if self.protocol is Protocol.CHAT:
            self._chat(event)
        elif self.protocol is Protocol.RESPONSES:
            self._responses(event)
        elif self.protocol is Protocol.GEMINI:
            self._gemini(event)
        else:
            self._messages(event)

    def _take(self, usage: Usage | None, cost: Any = None) -> None:
        if usage is not None:
            self.prompt_tokens, self.completion_tokens = usage.prompt_tokens, \
                usage.completion_tokens
            self.cost = cost

    def _chat(self, event: dict[str, Any]) -> None:
        self.response_id = self.response_id or event.get("id")
        self.model = event.get("model") or self.model
        raw = event.get("usage")
        self._take(_usage(Protocol.CHAT, raw), raw.get("cost") if isinstance(raw, dict) else None)
        for choice in event.get("choices") or []:
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if isinstance(delta, dict):
                self.received += len(delta.get("content") or "")
                for call in delta.get("tool_calls") or []:
                    function = call.get("function") if isinstance(call, dict) else None
                    if isinstance(function, dict):
                        self.received += len(function.get("arguments") or "")

    def _responses(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind in ("response.output_text.delta", "response.function_call_arguments.delta"):
            self.received += len(event.get("delta") or "")
        response = event.get("response")
        if isinstance(response, dict):
            self.response_id = response.get("id") or self.response_id
            self.model = response.get("model") or self.model
            raw = response.get("usage")
            self._take(_usage(Protocol.RESPONSES, raw),
                       raw.get("cost") if isinstance(raw, dict) else None)
        if kind in ("response.completed", "response.incomplete", "response.failed"):
            self.finished = True

    def _gemini(self, event: dict[str, Any]) -> None:
        self.response_id = self.response_id or event.get("responseId")
        self.model = event.get("modelVersion") or self.model
        raw = event.get("usageMetadata")
        self._take(_usage(Protocol.GEMINI, raw), raw.get("cost") if isinstance(raw, dict) else None)
        for candidate in event.get("candidates") or []:
            if not isinstance(candidate, dict):
                continue
            content = candidate.get("content")
            for part in content.get("parts") or [] if isinstance(content, dict) else []:
                if isinstance(part, dict):
                    call = part.get("functionCall")
                    self.received += len(part.get("text") or "") + \
                        (len(json.dumps(call.get("args"))) if isinstance(call, dict) else 0)
            if candidate.get("finishReason"):
                self.finished = True

    def _messages(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "message_start" and isinstance(event.get("message"), dict):
            message = event["message"]
            self.response_id = message.get("id")
            self.model = message.get("model") or self.model
            usage = _usage(Protocol.MESSAGES, message.get("usage"))
            if usage is not None:
                self.prompt_tokens = usage.prompt_tokens
                self.completion_tokens = usage.completion_tokens or None
        elif kind == "content_block_delta" and isinstance(event.get("delta"), dict):
            delta = event["delta"]
            self.received += len(delta.get("text") or delta.get("partial_json") or "")
        elif kind == "message_delta" and isinstance(event.get("usage"), dict):
            raw = event["usage"]
            if isinstance(raw.get("output_tokens"), int):
                self.completion_tokens = raw["output_tokens"]
            if isinstance(raw.get("input_tokens"), int) and self.prompt_tokens is None:
                self.prompt_tokens = raw["input_tokens"]
            self.cost = raw.get("cost", self.cost)
        elif kind == "message_stop":
            self.finished = True


GOOGLE_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 402: "RESOURCE_EXHAUSTED",
                 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED",
                 502: "UNAVAILABLE", 503: "UNAVAILABLE"}
"""Google's status names, which its clients read beside the HTTP status."""

ERROR_TYPES = {401: "authentication_error", 402: "budget_exceeded", 403: "permission_error",
               400: "invalid_request_error", 404: "not_found_error", 429: "rate_limit_error",
               502: "api_error", 503: "overloaded_error"}


def error_body(protocol: Protocol, status: int, message: str) -> dict[str, Any]:
    """An error in the shape the protocol's clients parse (Anthropic's differs from OpenAI's)."""
    kind = ERROR_TYPES.get(status, "api_error")
    if protocol is Protocol.MESSAGES:
        return {"type": "error", "error": {"type": kind, "message": message}}
    if protocol is Protocol.GEMINI:
        return {"error": {"code": status, "message": message,
                          "status": GOOGLE_STATUS.get(status, "UNKNOWN")}}
    return {"error": {"message": message, "type": kind, "param": None, "code": str(status)}}
