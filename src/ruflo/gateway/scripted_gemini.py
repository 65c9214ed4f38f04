"""The ScriptedGateway's Gemini protocol: Google's `generateContent` and `streamGenerateContent`
(`POST /v1beta/models/MODEL:METHOD`, as Gemini CLI and the google-genai SDK call it, and as
LiteLLM's proxy serves it). A request is read as the chat request it amounts to (`gemini_chat`),
the rules pick a reply, and the reply is written as a GenerateContentResponse — whole, or as its
server-sent stream of partial responses, the last with the finish reason and the usage.
Depends on Starlette and the scripted answer.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from starlette.responses import JSONResponse, Response, StreamingResponse

from ruflo.gateway.script import Reply
from ruflo.gateway.scripted_answer import (
    CHARS_PER_TOKEN,
    Counter,
    append_turn,
    call_arguments,
    compose,
    paced,
)

__all__ = ["GEMINI_METHODS", "gemini_answer", "gemini_chat"]

GEMINI_METHODS = {"generateContent": False, "streamGenerateContent": True}
"""The Gemini methods answered, and whether each streams."""

FINISH_REASONS = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP"}


def _parts_text(parts: Any) -> str:
    return "".join(str(p.get("text") or "") for p in parts or []
                   if isinstance(p, Mapping) and isinstance(p.get("text"), str)
                   and not p.get("thought"))


def _chat_tools(tools: Any) -> list[dict[str, Any]] | None:
    found = []
    for tool in tools if isinstance(tools, list) else []:
        for declared in (tool.get("functionDeclarations") or []
                         if isinstance(tool, Mapping) else []):
            if isinstance(declared, Mapping) and isinstance(declared.get("name"), str):
                found.append({"type": "function", "function": {
                    "name": declared["name"], "description": declared.get("description", ""),
                    "parameters": declared.get("parametersJsonSchema")
                    or declared.get("parameters") or {}}})
    return found or None


def _messages(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    chat: list[dict[str, Any]] = []
    system = body.get("systemInstruction")
    if isinstance(system, Mapping) and _parts_text(system.get("parts")):
        chat.append({"role": "system", "content": _parts_text(system.get("parts"))})
    for content in body.get("contents") or []:
        if not isinstance(content, Mapping):
            continue
        parts = [p for p in content.get("parts") or [] if isinstance(p, Mapping)]
        role = "assistant" if content.get("role") == "model" else "user"
        for part in parts:
            answered = part.get("functionResponse")
            if isinstance(answered, Mapping):
                chat.append({"role": "tool",
                             "tool_call_id": answered.get("id") or answered.get("name"),
                             "content": json.dumps(answered.get("response"))})
        calls = [{"id": call.get("id") or call.get("name"), "type": "function",
                  "function": {"name": call.get("name"),
                               "arguments": json.dumps(call.get("args") or {})}}
                 for call in (p.get("functionCall") for p in parts)
                 if isinstance(call, Mapping)]
        text = _parts_text(parts)
        append_turn(chat, role, text, calls)
    return chat


def gemini_chat(model: str, method: str, body: Mapping[str, Any]) -> dict[str, Any] | None:
    """The chat request a Gemini request amounts to (None: not one). The model and whether it
    streams come from the path (`models/MODEL:METHOD`), not the body."""
    if method not in GEMINI_METHODS or not isinstance(body.get("contents"), list):
        return None
    chat: dict[str, Any] = {"model": model, "messages": _messages(body),
                            "stream": GEMINI_METHODS[method]}
    tools = _chat_tools(body.get("tools"))
    if tools:
        chat["tools"] = tools
    config = body.get("generationConfig")
    limit = config.get("maxOutputTokens") if isinstance(config, Mapping) else None
    if limit is not None:
        chat["max_tokens"] = limit
    return chat


def gemini_answer(chat: Mapping[str, Any], reply: Reply, default_cost: float | None,
                  call_id: str, count: Counter, *, cut_after: int | None) -> Response:
    """The Gemini answer: one GenerateContentResponse, or its `alt=sse` stream (text in pieces,
    each function call whole, as Gemini sends them; the last piece has the finish reason and
    the usage)."""
    made = compose(chat, reply, default_cost)
    response_id = uuid.uuid4().hex[:20]
    finish = FINISH_REASONS.get(made.finish, made.finish.upper())
    usage = {"promptTokenCount": made.usage["prompt_tokens"],
             "candidatesTokenCount": made.usage["completion_tokens"],
             "totalTokenCount": made.usage["total_tokens"]}
    calls = [{"functionCall": {"id": c["id"], "name": c["function"]["name"],
                               "args": call_arguments(c["function"]["arguments"])}}
             for c in made.calls]

    def response(parts: list[dict[str, Any]], done: bool) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
        body: dict[str, Any] = {"candidates": [candidate], "modelVersion": made.model,
                                "responseId": response_id}
        if done:
            candidate["finishReason"] = finish
            if made.send_usage:
                body["usageMetadata"] = usage
        return body

    headers = {"x-litellm-call-id": call_id}
    if not chat.get("stream"):
        if made.cost is not None:
            headers["x-litellm-response-cost"] = repr(made.cost)
        count(made.usage["prompt_tokens"], made.usage["completion_tokens"], made.cost)
        text = [{"text": made.content}] if made.content else []
        return JSONResponse(response(text + calls, True), headers=headers)
    produced = 0

    def pieces() -> Iterator[str]:
        nonlocal produced
        step = max(1, reply.chunk)
        content = made.content or ""
        texts = [content[start:start + step] for start in range(0, len(content), step)]
        chunks: list[list[dict[str, Any]]] = [[{"text": t}] for t in texts]
        chunks += [[call] for call in calls]
        if not chunks:
            chunks = [[{"text": ""}]]
        for index, parts in enumerate(chunks):
            produced += sum(len(p.get("text") or "") or len(json.dumps(p.get("functionCall")))
                            for p in parts)
            yield "data: " + json.dumps(response(parts, index == len(chunks) - 1)) + "\r\n\r\n"

    def ended(finished: bool) -> None:
        if finished:
            count(made.usage["prompt_tokens"], made.usage["completion_tokens"], made.cost)
        else:
            count(made.usage["prompt_tokens"], produced // CHARS_PER_TOKEN, None)

    return StreamingResponse(paced(pieces(), reply, cut_after, ended),
                             media_type="text/event-stream", headers=headers)


