"""A hive as a model: an OpenAI-compatible `/v1/models` and `/v1/chat/completions`, so any
OpenAI-compatible chat UI (ruvocal, Open WebUI, the openai SDK) can drive ruflo.

The last user message becomes a hive's objective (`ruflo/swarm` or `ruflo/company`); the hive is
started through the hive API's own create path, its notable events stream as the answer, and the
final message is the verified summary with a link to the hive's page. A request may carry a
`ruflo` object with the rest of a hive's create body (agents, org, budget, tasks, config). The
answer ends early, saying why, when the hive waits for a person (an approval, a pause). A client
that goes away leaves the hive running. Auth and the guard are as for the rest of the API.
Depends on the server's hive routes and context.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ruflo.errors import NotFound, PolicyError
from ruflo.model import ApprovalStatus, Hive, Mode
from ruflo.server import hives
from ruflo.server.access import CallerDep
from ruflo.server.context import ServerContext, context, current_user
from ruflo.server.hive_news import (
    NOTABLE,
    describe,
    run_summary,
    summary_text,
    waits_for_a_person,
)
from ruflo.server.schemas import HiveCreate
from ruflo.server.wire import SSE_HEADERS, dumps

router = APIRouter(prefix="/v1", tags=["openai-compatible"],
                   dependencies=[Depends(current_user)])

Ctx = Annotated[ServerContext, Depends(context)]

MODELS: dict[str, tuple[Mode, str]] = {
    "ruflo/swarm": (Mode.SWARM, "a swarm hive: alike agents share one board"),
    "ruflo/company": (Mode.COMPANY, "a company hive: a lead delegates to reports"),
}
DEFAULT_ORG: list[dict[str, Any]] = [
    {"name": "lead", "role": "manager"},
    {"name": "worker-1", "reports_to": "lead"},
    {"name": "worker-2", "reports_to": "lead"},
]
"""The org chart of `ruflo/company` when the request gives none."""
CREATED = int(time.time())


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class CompletionMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Annotated[str, Field(max_length=40)]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(part.text or "" for part in self.content if part.type == "text")
        return self.content or ""


class CompletionRequest(BaseModel):
    """The fields ruflo reads; the rest of OpenAI's (temperature, tools...) is accepted and
    ignored: a hive chooses its own."""
    model_config = ConfigDict(extra="ignore")
    model: Annotated[str, Field(max_length=200)]
    messages: list[CompletionMessage] = Field(min_length=1, max_length=1_000)
    stream: bool = False
    ruflo: dict[str, Any] | None = None
    """The rest of a hive's create body (agents, org, budget, tasks, config, name)."""


def hive_body(request: CompletionRequest) -> HiveCreate:
    """The hive the request asks for: its last user message is the objective."""
    if request.model not in MODELS:
        raise NotFound(f"no model {request.model!r}; ruflo offers {', '.join(MODELS)}")
    mode = MODELS[request.model][0]
    objective = next((m.text().strip() for m in reversed(request.messages)
                      if m.role == "user"), "")
    if not objective:
        raise PolicyError("no user message with text: the last user message is the hive's "
                          "objective")
    extra = dict(request.ruflo or {})
    for reserved in ("objective", "mode"):
        if reserved in extra:
            raise PolicyError(f"ruflo.{reserved} is not accepted: the objective is the last "
                              "user message and the mode comes from the model")
    if mode is Mode.COMPANY and "org" not in extra and not isinstance(extra.get("agents"),
                                                                       list):
        extra["org"] = DEFAULT_ORG
    try:
        return HiveCreate.model_validate({**extra, "objective": objective, "mode": mode})
    except ValidationError as error:
        raise RequestValidationError([{**item, "loc": ("body", "ruflo", *item["loc"])}
                                      for item in error.errors()]) from None


@router.get("/models")
async def list_models() -> dict[str, Any]:
    """The hive kinds offered as models."""
    return {"object": "list", "data": [
        {"id": name, "object": "model", "created": CREATED, "owned_by": "ruflo",
         "description": about} for name, (_, about) in MODELS.items()]}


class Follower:
    """Follows one hive from its start: its news as lines, then how the answer ends."""

    def __init__(self, ctx: ServerContext, hive_id: str, link: str) -> None:
        self.ctx = ctx
        self.hive_id = hive_id
        self.link = link
        self.finish_reason = "stop"
        self.tokens = 0
        self.titles: dict[str, str] = {}

    async def lines(self) -> AsyncIterator[str]:
        yield f"Started hive {self.hive_id}: {self.link}\n\n"
        async for batch in self.ctx.hub.batches(self.hive_id, 0):
            for event in batch:
                if event.kind in NOTABLE:
                    yield f"- {describe(event.kind, self.named(event.task_id, event.data))}\n"
            hive = self.ctx.store.get_hive(self.hive_id)
            ending = self.ending(hive)
            if ending is not None:
                yield ending
                return
        self.finish_reason = "length"
        yield (f"\nThe server is shutting down; hive {self.hive_id} goes on. Follow it at "
               f"{self.link}\n")

    def named(self, task_id: str | None, data: Mapping[str, Any]) -> Mapping[str, Any]:
        """The event's data, with its task's title when the event names a task but no title."""
        if task_id is None or data.get("title"):
            return data
        if task_id not in self.titles:
            try:
                self.titles[task_id] = self.ctx.store.get_task(task_id).title
            except NotFound:
                return data
        return {**data, "title": self.titles[task_id]}

    def ending(self, hive: Hive) -> str | None:
        """The answer's last words once the hive ended or waits for a person, else None."""
        if hive.status.terminal:
            summary = run_summary(self.ctx, hive.id)
            self.tokens = int(summary.get("tokens") or 0)
            return f"\n{summary_text(summary)}\n\nThe hive: {self.link}\n"
        pending = self.ctx.store.list_approvals(hive_id=hive.id, status=ApprovalStatus.PENDING)
        if pending:
            subjects = "; ".join(a.subject for a in pending)
            return (f"\nHive {hive.id} waits for a decision: {subjects}. Decide it on the "
                    f"hive's page: {self.link}\n")
        if waits_for_a_person(hive):
            return (f"\nHive {hive.id} is paused ({hive.pause_reason or 'by a person'}); "
                    f"resume it on the hive's page: {self.link}\n")
        return None


def _chunk(answer_id: str, model: str, delta: dict[str, Any],
           finish: str | None = None) -> bytes:
    body = {"id": answer_id, "object": "chat.completion.chunk", "created": int(time.time()),
            "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + dumps(body) + b"\n\n"


async def _streamed(follower: Follower, answer_id: str, model: str) -> AsyncIterator[bytes]:
    yield _chunk(answer_id, model, {"role": "assistant", "content": ""})
    async for line in follower.lines():
        yield _chunk(answer_id, model, {"content": line})
    yield _chunk(answer_id, model, {}, follower.finish_reason)
    yield b"data: [DONE]\n\n"


@router.post("/chat/completions", response_model=None)
async def chat_completions(body: CompletionRequest, request: Request, ctx: Ctx,
                           caller: CallerDep) -> StreamingResponse | dict[str, Any]:
    """Start a hive on the last user message and answer with its progress and verified result
    (streamed as chat.completion.chunk events with `stream: true`)."""
    created = await hives.create_hive(hive_body(body), ctx, caller)
    hive_id = str(created["id"])
    link = f"{str(request.base_url).rstrip('/')}/hives/{hive_id}"
    follower = Follower(ctx, hive_id, link)
    answer_id = f"chatcmpl-{uuid.uuid4().hex}"
    if body.stream:
        return StreamingResponse(_streamed(follower, answer_id, body.model),
                                 media_type="text/event-stream",
                                 headers={**SSE_HEADERS, "X-Ruflo-Hive": hive_id})
    text = "".join([line async for line in follower.lines()])
    finish: Literal["stop", "length"] = "stop" if follower.finish_reason == "stop" else "length"
    return {"id": answer_id, "object": "chat.completion", "created": int(time.time()),
            "model": body.model, "ruflo": {"hive_id": hive_id, "url": link},
            "choices": [{"index": 0, "finish_reason": finish,
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 0, "completion_tokens": follower.tokens,
                      "total_tokens": follower.tokens}}
