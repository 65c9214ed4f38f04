"""A chat answer being generated: streamed from the gateway to the browser as SSE, stored as it
ends, stoppable. Depends on the gateway and store protocols and the core model.

Each answer runs as its own task that feeds a queue the HTTP response drains, so "stop
generating" (another request), a client that goes away and server shutdown all end it the same
way: the partial answer is stored with interrupted=true and nothing already streamed is lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Protocol

from ruflo.errors import GatewayAuthError, GatewayError
from ruflo.gateway.base import CallContext, ChatMessage, ChatResult, Gateway
from ruflo.model import Conversation, CostKind, Message
from ruflo.server.chat_markdown import render
from ruflo.server.gateway_status import describe_gateway_error
from ruflo.server.metrics import ServerMetrics
from ruflo.server.wire import sse_frame
from ruflo.store.base import Store

log = logging.getLogger("ruflo.server")

DEFAULT_TITLE = "New Chat"
TITLE_PROMPT = ("Write a title of at most six words for a conversation that starts with the "
                "message below. Answer with the title only, no quotes.")
TITLE_WAIT_SECONDS = 10.0
RENDER_SECONDS = 0.1
"""The least time between two renders of an answer being streamed."""
MAX_TOOL_TURNS = 8
"""Model turns with tools offered in one answer; the last turn is offered none, so it answers."""


def words_title(text: str, limit: int = 60) -> str:
    """A title from the first words of a message, for when no TASK_MODEL is set (or it failed)."""
    words = " ".join(text.split())
    if len(words) <= limit:
        return words or DEFAULT_TITLE
    cut = words[:limit].rsplit(" ", 1)[0] or words[:limit]
    return cut + "…"


def clean_title(text: str | None) -> str | None:
    if not text:
        return None
    title = " ".join(text.split()).strip().strip("\"'`*").strip()
    if title.lower().startswith("title:"):
        title = title[6:].strip()
    return title[:100] or None


class Painter:
    """When to send the answer so far as sanitized HTML while it streams: as often as rendering
    stays a small share of the time (at most every RENDER_SECONDS), so a long answer costs no
    more than a short one per second. The page shows the last HTML plus the raw text after it,
    so nothing flickers or waits for a render."""

    def __init__(self) -> None:
        self.next_at = 0.0
        self.gap = RENDER_SECONDS

    def frame(self, parts: list[str]) -> bytes | None:
        now = time.perf_counter()
        if now < self.next_at:
            return None
        text = "".join(parts)
        html = render(text)
        spent = time.perf_counter() - now
        self.next_at = now + max(self.gap, spent * 10)
        return sse_frame({"type": "rendered", "html": html, "length": len(text)})


class Tools(Protocol):
    """The tools offered to the model in one answer (server/chat_tools.py's ToolSession)."""

    emit: Callable[[dict[str, Any]], None]
    log: list[dict[str, Any]]

    def specs(self) -> list[dict[str, Any]] | None: ...

    async def prepare(self) -> None: ...

    def decide(self, call_id: str, allow: bool) -> bool: ...

    async def call(self, call_id: str, name: str, arguments: str) -> str: ...


class NoTools:
    """No tool offered: the model only writes."""

    def __init__(self) -> None:
        self.emit: Callable[[dict[str, Any]], None] = lambda _: None
        self.log: list[dict[str, Any]] = []

    def specs(self) -> list[dict[str, Any]] | None:
        return None

    async def prepare(self) -> None:
        return None

    def decide(self, call_id: str, allow: bool) -> bool:
        return False

    async def call(self, call_id: str, name: str, arguments: str) -> str:
        return '{"error": "no tools are offered here"}'


class Spent:
    """What every model call of one answer used (a tool call takes one more turn)."""

    def __init__(self) -> None:
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cost: float | None = None

    def add(self, result: ChatResult) -> None:
        self.prompt_tokens += result.usage.prompt_tokens
        self.completion_tokens += result.usage.completion_tokens
        if result.cost is not None:
            self.cost = (self.cost or 0.0) + result.cost


class ChatGeneration:
    """One answer being written."""

    def __init__(self, *, store: Store, gateway: Gateway | None, metrics: ServerMetrics,
                 conversation: Conversation, assistant: Message, history: Sequence[ChatMessage],
                 title_from: str | None, task_model: str | None,
                 tools: Tools | None = None) -> None:
        self.store = store
        self.gateway = gateway
        self.metrics = metrics
        self.conversation = conversation
        self.assistant = assistant
        self.history = list(history)
        self.title_from = title_from
        """The first user message, when this answer should also name the conversation."""
        self.task_model = task_model
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.tools: Tools = tools or NoTools()
        self.tools.emit = lambda entry: self.queue.put_nowait(sse_frame({"type": "tool",
                                                                         "call": entry}))
        self.task: asyncio.Task[None] = asyncio.create_task(self._run())

    async def _run(self) -> None:
        parts: list[str] = []
        result: ChatResult | None = None
        spent = Spent()
        interrupted = False
        failure: str | None = None
        title_task = asyncio.create_task(self._title()) if self.title_from is not None else None
        self.metrics.chat_streams_open += 1
        self.queue.put_nowait(sse_frame({"type": "status", "status": "started",
                                         "messageId": self.assistant.id,
                                         "parentId": self.assistant.parent_id}))
        try:
            if self.gateway is None:
                raise GatewayError("no gateway is configured (set OPENAI_BASE_URL or "
                                   "LITELLM_BASE_URL); nothing was sent to a model")
            await self.tools.prepare()
            messages = list(self.history)
            painter = Painter()
            for turn in range(MAX_TOOL_TURNS + 1):
                offered = self.tools.specs() if turn < MAX_TOOL_TURNS else None
                if turn and parts and not "".join(parts[-1:]).endswith("\n"):
                    parts.append("\n\n")  # the words after a tool call start a paragraph
                result = None
                async for delta in self.gateway.stream(messages, model=self.conversation.model,
                                                       context=CallContext(kind=CostKind.CHAT),
                                                       tools=offered):
                    if delta.text:
                        parts.append(delta.text)
                        self.queue.put_nowait(sse_frame({"type": "stream", "token": delta.text}))
                        rendered = painter.frame(parts)
                        if rendered is not None:
                            self.queue.put_nowait(rendered)
                    if delta.done:
                        result = delta.result
                if result is not None:
                    spent.add(result)
                if result is None or not result.tool_calls:
                    break
                messages.append(result.as_message())
                for call in result.tool_calls:
                    messages.append({"role": "tool", "tool_call_id": call.id,
                                     "content": await self.tools.call(call.id, call.name,
                                                                      call.arguments)})
        except asyncio.CancelledError:
            interrupted = True
        except GatewayError as error:
            interrupted = True
            failure = describe_gateway_error(error).message
            self.metrics.gateway_errors[type(error).__name__] += 1
        except Exception as error:
            # Whatever broke, the browser must get an end to the stream and the words so far.
            log.exception("chat answer failed")
            interrupted = True
            failure = f"the answer failed: {error}"
        finally:
            self.metrics.chat_streams_open -= 1
        content = "".join(parts)
        if result is not None and result.content and not parts:
            content = result.content
        data: dict[str, Any] = dict(self.assistant.data)
        if result is not None:
            data.update(model=result.model or self.conversation.model,
                        usage={"prompt_tokens": spent.prompt_tokens,
                               "completion_tokens": spent.completion_tokens},
                        cost=spent.cost, requestId=result.request_id,
                        finishReason=result.finish_reason)
        if self.tools.log:
            data["tools"] = self.tools.log
        if failure is not None:
            data["error"] = failure
        self.store.update_message(self.assistant.id, content=content, interrupted=interrupted,
                                  data=data)
        if failure is not None:
            self.queue.put_nowait(sse_frame({"type": "status", "status": "error",
                                             "message": failure}))
        self.queue.put_nowait(sse_frame({"type": "finalAnswer", "text": content,
                                         "html": render(content),
                                         "interrupted": interrupted}))
        if title_task is not None:
            await self._finish_title(title_task, wait=not interrupted)
        self.queue.put_nowait(None)

    async def _title(self) -> str:
        assert self.title_from is not None
        fallback = words_title(self.title_from)
        if not self.task_model or self.gateway is None:
            return fallback
        try:
            answer = await self.gateway.chat(
                [{"role": "system", "content": TITLE_PROMPT},
                 {"role": "user", "content": self.title_from[:4000]}],
                model=self.task_model, context=CallContext(kind=CostKind.CHAT), max_tokens=24)
        except GatewayAuthError:
            return fallback
        except GatewayError as error:
            log.info("title from TASK_MODEL failed (%s); using the message's first words", error)
            return fallback
        return clean_title(answer.content) or fallback

    async def _finish_title(self, title_task: asyncio.Task[str], *, wait: bool) -> None:
        if not wait and not title_task.done():
            title_task.cancel()
            title = words_title(self.title_from or "")
        else:
            try:
                title = await asyncio.wait_for(title_task, TITLE_WAIT_SECONDS)
            except (TimeoutError, asyncio.CancelledError):
                title = words_title(self.title_from or "")
        self.store.update_conversation(self.conversation.id, title=title)
        self.queue.put_nowait(sse_frame({"type": "title", "title": title}))

    async def frames(self) -> AsyncIterator[bytes]:
        """The SSE body. If the client goes away, the answer stops and is stored as it is."""
        try:
            while True:
                frame = await self.queue.get()
                if frame is None:
                    return
                yield frame
        finally:
            if not self.task.done():
                self.task.cancel()


class ChatGenerations:
    """The answers being generated in this process, one per conversation at most."""

    def __init__(self) -> None:
        self.running: dict[str, ChatGeneration] = {}

    def start(self, generation: ChatGeneration) -> None:
        conversation_id = generation.conversation.id
        self.running[conversation_id] = generation
        generation.task.add_done_callback(
            lambda _: self.running.pop(conversation_id, None)
            if self.running.get(conversation_id) is generation else None)

    async def stop(self, conversation_id: str, *, wait: float = 10.0) -> bool:
        """Stop the answer being written in the conversation; True when one was. Returns once
        the partial answer is stored."""
        generation = self.running.get(conversation_id)
        if generation is None:
            return False
        generation.task.cancel()
        await asyncio.wait({generation.task}, timeout=wait)
        return True

    async def stop_all(self, *, wait: float = 5.0) -> None:
        tasks = [generation.task for generation in self.running.values()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=wait)
