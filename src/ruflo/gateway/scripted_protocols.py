"""The ScriptedGateway's other two protocols: Anthropic Messages and OpenAI Responses. One set of
rules serves all three: a request is read as the chat request it amounts to (`as_chat`), the
rules pick a reply, and the reply is written in the asking protocol's shape — plain, or streamed
as that API streams (its event names and order). Depends on Starlette and the scripted answer.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from starlette.responses import JSONResponse, Response, StreamingResponse

from ruflo.gateway.script import Reply, message_text
from ruflo.gateway.scripted_answer import (
    CHARS_PER_TOKEN,
    Composed,
    Counter,
    append_turn,
    call_arguments,
    compose,
    paced,
)

__all__ = ["as_chat", "messages_answer", "responses_answer"]

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def _text(content: Any) -> str:
    """Text of Anthropic or Responses content: a string or a list of text parts."""
    if isinstance(content, list):
        return "".join(str(p.get("text") or "") for p in content
                       if isinstance(p, Mapping) and isinstance(p.get("text"), str))
    return message_text(content)


def _chat_tools(tools: Any) -> list[dict[str, Any]] | None:
    if not isinstance(tools, list):
        return None
    found = []
    for tool in tools:
        if isinstance(tool, Mapping) and isinstance(tool.get("name"), str):
            found.append({"type": "function", "function": {
                "name": tool["name"], "description": tool.get("description", ""),
                "parameters": tool.get("input_schema") or tool.get("parameters") or {}}})
    return found


def _from_messages(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    chat: list[dict[str, Any]] = []
    if body.get("system"):
        chat.append({"role": "system", "content": _text(body["system"])})
    for message in body.get("messages") or []:
        if not isinstance(message, Mapping):
            continue
        role, content = message.get("role"), message.get("content")
        if isinstance(content, str):
            chat.append({"role": role, "content": content})
            continue
        blocks = [b for b in content or [] if isinstance(b, Mapping)]
        text = "".join(str(b.get("text") or "") for b in blocks if b.get("type") == "text")
        calls = [{"id": b.get("id"), "type": "function",
                  "function": {"name": b.get("name"), "arguments": json.dumps(b.get("input"))}}
                 for b in blocks if b.get("type") == "tool_use"]
        for result in (b for b in blocks if b.get("type") == "tool_result"):
            chat.append({"role": "tool", "tool_call_id": result.get("tool_use_id"),
                         "content": _text(result.get("content"))})
        append_turn(chat, role, text, calls)
    return chat


def _from_responses(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    chat: list[dict[str, Any]] = []
    if body.get("instructions"):
        chat.append({"role": "system", "content": _text(body["instructions"])})
    items = body.get("input")
    if isinstance(items, str):
        return [*chat, {"role": "user", "content": items}]
    for item in items or []:
        if not isinstance(item, Mapping):
            continue
        kind = item.get("type", "message")
        if kind == "function_call":
            chat.append({"role": "assistant", "content": None, "tool_calls": [
                {"id": item.get("call_id"), "type": "function",
                 "function": {"name": item.get("name"), "arguments": item.get("arguments")}}]})
        elif kind == "function_call_output":
            chat.append({"role": "tool", "tool_call_id": item.get("call_id"),
                         "content": _text(item.get("output"))})
        elif kind == "message":
            chat.append({"role": item.get("role"), "content": _text(item.get("content"))})
    return chat


def as_chat(protocol: str, body: Mapping[str, Any]) -> dict[str, Any] | None:
    """The chat request a Messages or Responses request amounts to (None: not one)."""
    if protocol == "messages":
        if not isinstance(body.get("messages"), list):
            return None
        messages, limit = _from_messages(body), body.get("max_tokens")
    else:
        if "input" not in body:
            return None
        messages, limit = _from_responses(body), body.get("max_output_tokens")
    chat: dict[str, Any] = {"model": body.get("model"), "messages": messages,
                            "stream": bool(body.get("stream"))}
    tools = _chat_tools(body.get("tools"))
    if tools:
        chat["tools"] = tools
    if limit is not None:
        chat["max_tokens"] = limit
    return chat


def _event(kind: str, data: Mapping[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n"




# -- Anthropic Messages ------------------------------------------------------------------------
def messages_answer(chat: Mapping[str, Any], reply: Reply, default_cost: float | None,
                    call_id: str, count: Counter, *, cut_after: int | None) -> Response:
    """The Anthropic Messages answer: a message, or its event stream (message_start, content
    blocks with text_delta / input_json_delta, message_delta with the usage, message_stop)."""
    made = compose(chat, reply, default_cost)
    message_id = f"msg_{uuid.uuid4().hex[:24]}"
    stop = STOP_REASONS.get(made.finish, made.finish)
    usage = {"input_tokens": made.usage["prompt_tokens"],
             "output_tokens": made.usage["completion_tokens"]}
    calls = [{"type": "tool_use", "id": c["id"].replace("call_", "toolu_", 1),
              "name": c["function"]["name"], "input": call_arguments(c["function"]["arguments"])}
             for c in made.calls]
    headers = {"x-litellm-call-id": call_id}
    if not chat.get("stream"):
        if made.cost is not None:
            headers["x-litellm-response-cost"] = repr(made.cost)
        count(usage["input_tokens"], usage["output_tokens"], made.cost)
        content = ([{"type": "text", "text": made.content}] if made.content else []) + calls
        message: dict[str, Any] = {"id": message_id, "type": "message", "role": "assistant",
                   "model": made.model, "content": content, "stop_reason": stop,
                   "stop_sequence": None}
        if made.send_usage:
            message["usage"] = usage
        return JSONResponse(message, headers=headers)
    produced = 0

    def pieces() -> Iterator[str]:
        nonlocal produced
        yield _event("message_start", {"message": {
            "id": message_id, "type": "message", "role": "assistant", "model": made.model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": usage["input_tokens"], "output_tokens": 1}}})
        index = 0
        step = max(1, reply.chunk)
        if made.content:
            yield _event("content_block_start", {"index": 0,
                                                 "content_block": {"type": "text", "text": ""}})
            for start in range(0, len(made.content), step):
                produced += len(made.content[start:start + step])
                yield _event("content_block_delta", {"index": 0, "delta": {
                    "type": "text_delta", "text": made.content[start:start + step]}})
            yield _event("content_block_stop", {"index": 0})
            index = 1
        for offset, (call, chat_call) in enumerate(zip(calls, made.calls, strict=True)):
            yield _event("content_block_start", {"index": index + offset, "content_block": {
                **call, "input": {}}})
            args = chat_call["function"]["arguments"]
            for start in range(0, len(args), step * 4):
                produced += len(args[start:start + step * 4])
                yield _event("content_block_delta", {"index": index + offset, "delta": {
                    "type": "input_json_delta", "partial_json": args[start:start + step * 4]}})
            yield _event("content_block_stop", {"index": index + offset})
        delta: dict[str, Any] = {"delta": {"stop_reason": stop, "stop_sequence": None}}
        if made.send_usage:
            delta["usage"] = {"output_tokens": usage["output_tokens"]}
        yield _event("message_delta", delta)
        yield _event("message_stop", {})

    return StreamingResponse(paced(pieces(), reply, cut_after,
                                   _ended(made, count, lambda: produced)),
                             media_type="text/event-stream", headers=headers)


def _ended(made: Composed, count: Counter, produced: Any) -> Any:
    def ended(finished: bool) -> None:
        if finished:
            count(made.usage["prompt_tokens"], made.usage["completion_tokens"], made.cost)
        else:
            count(made.usage["prompt_tokens"], produced() // CHARS_PER_TOKEN, None)
    return ended


# -- OpenAI Responses --------------------------------------------------------------------------
def responses_answer(chat: Mapping[str, Any], reply: Reply, default_cost: float | None,
                     call_id: str, count: Counter, *, cut_after: int | None) -> Response:
    """The OpenAI Responses answer: a response object, or its event stream (response.created,
    output items with output_text / function_call_arguments deltas, response.completed)."""
    made = compose(chat, reply, default_cost)
    response_id = f"resp_{uuid.uuid4().hex}"
    created = int(time.time())
    incomplete = made.finish == "length"
    usage: dict[str, Any] = {"input_tokens": made.usage["prompt_tokens"],
             "output_tokens": made.usage["completion_tokens"],
             "total_tokens": made.usage["total_tokens"],
             "input_tokens_details": {"cached_tokens": 0},
             "output_tokens_details": {"reasoning_tokens": 0}}
    text_item: dict[str, Any] = {"type": "message", "id": f"msg_{uuid.uuid4().hex[:24]}", "status": "completed",
                 "role": "assistant",
                 "content": [{"type": "output_text", "text": made.content or "",
                              "annotations": []}]}
    call_items = [{"type": "function_call", "id": f"fc_{uuid.uuid4().hex[:24]}",
                   "call_id": c["id"], "name": c["function"]["name"],
                   "arguments": c["function"]["arguments"], "status": "completed"}
                  for c in made.calls]
    output = ([text_item] if made.content else []) + call_items

    def response(status: str, items: list[dict[str, Any]],
                 with_usage: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": response_id, "object": "response", "created_at": created, "status": status,
            "model": made.model, "output": items, "parallel_tool_calls": True,
            "tool_choice": "auto", "tools": [], "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if incomplete and
            status != "in_progress" else None}
        if with_usage and made.send_usage:
            body["usage"] = usage
        return body

    final = "incomplete" if incomplete else "completed"
    headers = {"x-litellm-call-id": call_id}
    if not chat.get("stream"):
        if made.cost is not None:
            headers["x-litellm-response-cost"] = repr(made.cost)
        count(usage["input_tokens"], usage["output_tokens"], made.cost)
        return JSONResponse(response(final, output, True), headers=headers)
    produced = 0
    sequence = 0

    def event(kind: str, data: Mapping[str, Any]) -> str:
        nonlocal sequence
        sequence += 1
        return _event(kind, {**data, "sequence_number": sequence - 1})

    def pieces() -> Iterator[str]:
        nonlocal produced
        yield event("response.created", {"response": response("in_progress", [], False)})
        yield event("response.in_progress", {"response": response("in_progress", [], False)})
        step = max(1, reply.chunk)
        position = 0
        if made.content:
            item_id = text_item["id"]
            yield event("response.output_item.added", {"output_index": 0, "item": {
                **text_item, "status": "in_progress", "content": []}})
            yield event("response.content_part.added", {
                "item_id": item_id, "output_index": 0, "content_index": 0,
                "part": {"type": "output_text", "text": "", "annotations": []}})
            for start in range(0, len(made.content), step):
                produced += len(made.content[start:start + step])
                yield event("response.output_text.delta", {
                    "item_id": item_id, "output_index": 0, "content_index": 0,
                    "delta": made.content[start:start + step], "logprobs": []})
            yield event("response.output_text.done", {
                "item_id": item_id, "output_index": 0, "content_index": 0,
                "text": made.content, "logprobs": []})
            yield event("response.content_part.done", {
                "item_id": item_id, "output_index": 0, "content_index": 0,
                "part": text_item["content"][0]})
            yield event("response.output_item.done", {"output_index": 0, "item": text_item})
            position = 1
        for offset, item in enumerate(call_items):
            index = position + offset
            yield event("response.output_item.added", {"output_index": index, "item": {
                **item, "arguments": "", "status": "in_progress"}})
            args = item["arguments"]
            for start in range(0, len(args), step * 4):
                produced += len(args[start:start + step * 4])
                yield event("response.function_call_arguments.delta", {
                    "item_id": item["id"], "output_index": index,
                    "delta": args[start:start + step * 4]})
            yield event("response.function_call_arguments.done", {
                "item_id": item["id"], "output_index": index, "arguments": args})
            yield event("response.output_item.done", {"output_index": index, "item": item})
        yield event(f"response.{final}", {"response": response(final, output, True)})

    return StreamingResponse(paced(pieces(), reply, cut_after,
                                   _ended(made, count, lambda: produced)),
                             media_type="text/event-stream", headers=headers)
