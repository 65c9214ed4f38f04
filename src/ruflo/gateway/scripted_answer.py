"""How a scripted reply becomes an OpenAI chat completion, as the LiteLLM proxy sends it: a plain
answer or an SSE stream, cut at the request's max_tokens, with usage and cost, or a LiteLLM-shaped
error. Depends on Starlette and ruflo.gateway.script.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse, Response, StreamingResponse

from ruflo.gateway.script import Fault, Reply, message_text

Counter = Callable[[int, int, float | None], None]
"""Told each completion served: prompt tokens, completion tokens, the cost it reported."""


def append_turn(chat: list[dict[str, Any]], role: Any, text: str,
                calls: list[dict[str, Any]]) -> None:
    """Add a turn read from another protocol (Anthropic, Gemini) to a chat request's messages:
    its text and its tool calls in chat-completions form; a turn with neither adds nothing."""
    if text or calls:
        entry: dict[str, Any] = {"role": role, "content": text or None}
        if calls:
            entry["tool_calls"] = calls
        chat.append(entry)


def call_arguments(raw: str) -> Any:
    """A tool call's arguments for a protocol that sends them as an object; {} for a call cut at
    max_tokens, whose arguments never became whole."""
    try:
        return json.loads(raw)
    except ValueError:
        return {}


class StreamCut(Exception):
    """Raised inside a streaming body to drop the connection mid-answer (a scripted fault)."""


class _QuietStreamCut(logging.Filter):
    """Keep uvicorn from logging a scripted stream cut as an application crash."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], StreamCut))


logging.getLogger("uvicorn.error").addFilter(_QuietStreamCut())


CHARS_PER_TOKEN = 4
"""The scripted model's tokenizer: every four characters are a token."""


def estimate_tokens(text: str) -> int:
    return max(1, len(text) // CHARS_PER_TOKEN)


def token_limit(body: Mapping[str, Any]) -> int | None:
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


def cut(content: str | None, calls: list[dict[str, Any]],
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


def error_response(fault: Fault) -> Response:
    headers = {}
    if fault.retry_after is not None:
        headers["retry-after"] = f"{fault.retry_after:g}"
    body = {"error": {"message": fault.message, "type": fault.type, "param": None,
                      "code": str(fault.status)}}
    return JSONResponse(body, status_code=fault.status, headers=headers)


@dataclass(frozen=True, slots=True)
class Composed:
    """A scripted reply made into an answer for one request, whatever protocol carries it."""

    model: str
    content: str | None
    calls: list[dict[str, Any]]
    """Chat-shaped tool calls: {"id", "type": "function", "function": {"name", "arguments"}}."""
    usage: dict[str, int]
    send_usage: bool
    finish: str
    """Chat's finish reason: "stop", "length" or "tool_calls" (or the reply's own)."""
    cost: float | None


def compose(body: Mapping[str, Any], reply: Reply, default_cost: float | None) -> Composed:
    """The answer `reply` makes for the chat-shaped request `body`: cut to its max_tokens, with
    usage (four characters a token) and cost."""
    model = str(body.get("model") or "scripted")
    messages = body["messages"]
    content = reply.content
    if reply.echo:
        users = [m for m in messages if isinstance(m, Mapping) and m.get("role") == "user"]
        content = message_text(users[-1].get("content")) if users else ""
    calls: list[dict[str, Any]] = [{"id": str(c.get("id") or f"call_{uuid.uuid4().hex[:12]}"),
              "type": "function",
              "function": {"name": str(c["name"]),
                           "arguments": c.get("arguments") if isinstance(
                               c.get("arguments"), str)
                           else json.dumps(c.get("arguments") or {})}}
             for c in reply.tool_calls]
    limit = token_limit(body)
    truncated = False
    if limit is not None:
        # Like a real model: the answer stops at max_tokens, mid-word or mid-call.
        content, calls, truncated = cut(content, calls, limit * CHARS_PER_TOKEN)
    prompt_text = "".join(message_text(m.get("content")) for m in messages if isinstance(m, Mapping))
    answer_text = (content or "") + "".join(c["function"]["arguments"] for c in calls)
    usage = {"prompt_tokens": estimate_tokens(prompt_text),
             "completion_tokens": estimate_tokens(answer_text)}
    if isinstance(reply.usage, Mapping):
        usage.update({k: int(v) for k, v in reply.usage.items()})
    if limit is not None and usage["completion_tokens"] > limit:
        usage["completion_tokens"], truncated = limit, True
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    finish = ("length" if truncated
              else reply.finish_reason or ("tool_calls" if calls else "stop"))
    raw_cost = default_cost if reply.cost is True else reply.cost
    cost = None if raw_cost is None or raw_cost is False else float(raw_cost)
    return Composed(model, content, calls, usage, reply.usage is not False, finish, cost)


async def paced(pieces: Iterator[str], reply: Reply, cut_after: int | None,
                ended: Callable[[bool], None]) -> AsyncIterator[str]:
    """Send a stream's pieces at the reply's pace, dropping the connection after `cut_after`
    of them (a scripted fault); `ended` is told whether the stream was finished."""
    finished = False
    try:
        for sent, piece in enumerate(pieces):
            if cut_after is not None and sent >= cut_after:
                raise StreamCut("scripted stream cut")
            yield piece
            if reply.chunk_delay:
                await asyncio.sleep(reply.chunk_delay)
            elif cut_after is not None:
                # Give the client the chunks before the cut as separate reads.
                await asyncio.sleep(0)
        finished = True
    finally:
        ended(finished)


def answer(body: Mapping[str, Any], reply: Reply, default_cost: float | None, call_id: str,
           count: Counter, *, cut_after: int | None) -> Response:
    """The chat completion `reply` makes for the request `body`, plain or streamed as it asked:
    cut to its max_tokens, with usage and cost as LiteLLM reports them, and the connection
    dropped after `cut_after` chunks (a scripted fault). `count` is told each completion served:
    a plain one when sent, a stream when it ends (with what it had sent, if dropped)."""
    made = compose(body, reply, default_cost)
    model, content, calls, usage, finish, cost = (made.model, made.content, made.calls,
                                                  made.usage, made.finish, made.cost)
    send_usage = made.send_usage
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    headers = {"x-litellm-call-id": call_id}
    created = int(time.time())
    if not body.get("stream"):
        if cost is not None:
            headers["x-litellm-response-cost"] = repr(cost)
        count(usage["prompt_tokens"], usage["completion_tokens"], cost)
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

    def ended(finished: bool) -> None:
        if finished:
            count(usage["prompt_tokens"], usage["completion_tokens"], cost)
        else:
            count(usage["prompt_tokens"], produced // CHARS_PER_TOKEN, None)

    return StreamingResponse(paced(pieces(), reply, cut_after, ended), media_type="text/event-stream", headers=headers)
