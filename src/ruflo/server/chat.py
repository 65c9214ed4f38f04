"""The chat API, shaped like ruvocal's /api/v2: models, conversations, messages streamed over
SSE, stop generating, user settings and export. Every route is scoped to the caller: another
user's conversation is a 404. Depends on the server context, the store and gateway protocols.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import JSONResponse, StreamingResponse

from ruflo.errors import Conflict, GatewayError, NotFound, PolicyError, RufloError
from ruflo.gateway.base import ChatMessage, ModelInfo
from ruflo.model import Conversation, Message, utcnow
from ruflo.server import chat_markdown
from ruflo.server.access import CallerDep, require_operator
from ruflo.server.chat_mcp import MAX_SERVERS as MAX_MCP_SERVERS
from ruflo.server.chat_mcp import McpServer
from ruflo.server.chat_stream import DEFAULT_TITLE, ChatGeneration
from ruflo.server.chat_tools import (
    RUFLO_TOOLS,
    ChatTool,
    ToolSession,
    ToolUse,
    mcp_tools,
    policy_of,
)
from ruflo.server.context import ServerContext, context, current_user
from ruflo.server.gateway_status import UNCONFIGURED, GatewayState, describe_gateway_error
from ruflo.server.schemas import (
    ConversationCreate,
    ConversationCreated,
    ConversationOut,
    ConversationPage,
    ConversationPatch,
    GatewayStatus,
    McpServerSpec,
    MessageCreate,
    ModelEntry,
    RefreshAnswer,
    StopAnswer,
    ToolDecision,
    ToolDecisionAnswer,
    UserSettings,
)
from ruflo.server.wire import SSE_HEADERS, iso

PAGE_SIZE = 50
MODELS_WAIT_SECONDS = 5.0
CONVERSATION_ID = re.compile(r"[0-9a-f]{24}")

router = APIRouter(prefix="/api/v2", tags=["chat"], dependencies=[Depends(current_user)])

Ctx = Annotated[ServerContext, Depends(context)]
User = Annotated[str, Depends(current_user)]
ConversationId = Annotated[str, Path(max_length=100)]

DEFAULT_SETTINGS: dict[str, Any] = {
    "customPrompts": {}, "streamingMode": "smooth", "hidePromptExamples": {},
    "disableStream": False, "directPaste": False, "welcomeModalSeen": False,
    "shareConversationsWithModelAuthors": False, "multimodalOverrides": {}, "toolsOverrides": {},
}


def new_conversation_id() -> str:
    """24 hex characters, as ruvocal's (Mongo-style) ids."""
    return uuid.uuid4().hex[:24]


# -- models ------------------------------------------------------------------------------------

def model_entry(info: ModelInfo) -> dict[str, Any]:
    raw = info.raw or {}
    return {"id": info.id, "name": info.id, "displayName": str(raw.get("display_name") or info.id),
            "description": str(raw.get("description") or (f"served by {info.owned_by}"
                                                          if info.owned_by else "")),
            "multimodal": bool(raw.get("multimodal", False)),
            "supportsTools": bool(raw.get("supports_tools", True)), "unlisted": False}


async def read_models(ctx: ServerContext, *, refresh: bool) -> tuple[list[dict[str, Any]],
                                                                     GatewayState]:
    """The gateway's model list and how the gateway is doing. Never raises: trouble is
    reported as a state beside an empty list."""
    if ctx.gateway is None:
        ctx.gateway_state = UNCONFIGURED
        return [], UNCONFIGURED
    try:
        models = await asyncio.wait_for(ctx.gateway.models(refresh=refresh), MODELS_WAIT_SECONDS)
    except (GatewayError, TimeoutError, RufloError) as error:
        ctx.metrics.gateway_errors[type(error).__name__] += 1
        ctx.gateway_state = describe_gateway_error(error)
        return [], ctx.gateway_state
    ctx.gateway_state = GatewayState("ok")
    return [model_entry(info) for info in models], ctx.gateway_state


def gateway_status(ctx: ServerContext, state: GatewayState) -> dict[str, Any]:
    return {"status": state.status, "message": state.message,
            "base_url": ctx.gateway.base_url if ctx.gateway is not None else None}


@router.get("/models", response_model=list[ModelEntry])
async def list_models(ctx: Ctx) -> Any:
    """The models the gateway offers this key. On gateway trouble: 200 with `[]`, and the
    header `X-Gateway-Status` (ok, refused, unreachable, ...) says which; the full story is at
    GET /api/v2/gateway."""
    models, state = await read_models(ctx, refresh=False)
    return JSONResponse(models, headers={"X-Gateway-Status": state.status})


@router.get("/gateway", response_model=GatewayStatus)
async def gateway_state(ctx: Ctx) -> Any:
    """How the gateway is doing, in words (for the page banner)."""
    _, state = await read_models(ctx, refresh=False)
    return gateway_status(ctx, state)


@router.post("/models/refresh", response_model=RefreshAnswer)
async def refresh_models(ctx: Ctx) -> Any:
    """Read the gateway's model list again (concurrent refreshes share one request)."""
    models, state = await read_models(ctx, refresh=True)
    return {"models": models, "gateway": gateway_status(ctx, state)}


# -- conversations -----------------------------------------------------------------------------

def owned_conversation(ctx: ServerContext, conversation_id: str, user: str) -> Conversation:
    if not CONVERSATION_ID.fullmatch(conversation_id):
        raise NotFound(f"no conversation {conversation_id!r}")
    return ctx.store.get_conversation(conversation_id, user_id=user)


def message_json(message: Message, children: dict[str | None, list[str]],
                 by_id: dict[str, Message]) -> dict[str, Any]:
    ancestors: list[str] = []
    seen: set[str] = {message.id}
    parent = message.parent_id
    while parent is not None and parent in by_id and parent not in seen:
        ancestors.append(parent)
        seen.add(parent)
        parent = by_id[parent].parent_id
    ancestors.reverse()
    out: dict[str, Any] = {"id": message.id, "parentId": message.parent_id,
                           "from": message.role, "content": message.content,
                           "createdAt": iso(message.created_at),
                           "updatedAt": iso(message.updated_at), "ancestors": ancestors,
                           "children": children.get(message.id, []),
                           "interrupted": message.interrupted}
    if message.role == "assistant":
        out["html"] = chat_markdown.render(message.content)
    for key in ("updates", "reasoning", "files", "model", "usage", "cost", "error", "tools"):
        if key in message.data:
            out[key] = message.data[key]
    return out


def conversation_json(conversation: Conversation, messages: Sequence[Message]) -> dict[str, Any]:
    by_id = {message.id: message for message in messages}
    children: dict[str | None, list[str]] = {}
    for message in messages:
        children.setdefault(message.parent_id, []).append(message.id)
    return {"id": conversation.id, "title": conversation.title, "model": conversation.model,
            "preprompt": conversation.preprompt, "rootMessageId": conversation.root_message_id,
            "updatedAt": iso(conversation.updated_at), "createdAt": iso(conversation.created_at),
            "messages": [message_json(m, children, by_id) for m in messages]}


@router.get("/conversations", response_model=ConversationPage)
async def list_conversations(ctx: Ctx, user: User,
                             p: Annotated[int, Query(ge=0, le=100_000)] = 0) -> Any:
    """The caller's conversations, newest first, 50 a page."""
    found = ctx.store.list_conversations(user, limit=PAGE_SIZE + 1, offset=p * PAGE_SIZE)
    return {"conversations": [{"id": c.id, "title": c.title, "updatedAt": iso(c.updated_at),
                               "model": c.model} for c in found[:PAGE_SIZE]],
            "hasMore": len(found) > PAGE_SIZE}


@router.post("/conversations", response_model=ConversationCreated, status_code=201)
async def create_conversation(body: ConversationCreate, ctx: Ctx, user: User) -> Any:
    """Start a conversation. Its root is a system message holding the preprompt."""
    model = body.model or ctx.store.get_user_settings(user).get("activeModel") \
        or ctx.settings.model
    conversation_id = new_conversation_id()
    root = Message(id=str(uuid.uuid4()), conversation_id=conversation_id, role="system",
                   content=body.preprompt or "")
    conversation = Conversation(id=conversation_id, user_id=user,
                                title=body.title or DEFAULT_TITLE, model=str(model),
                                preprompt=body.preprompt, root_message_id=root.id)
    ctx.store.create_conversation(conversation, [root])
    return {"conversationId": conversation_id}


@router.delete("/conversations")
async def delete_all_conversations(ctx: Ctx, user: User) -> dict[str, int]:
    """Delete every conversation of the caller."""
    return {"deleted": ctx.store.delete_conversations(user)}


@router.get("/conversations/{conversation_id}", response_model=ConversationOut)
async def get_conversation(conversation_id: ConversationId, ctx: Ctx, user: User) -> Any:
    conversation = owned_conversation(ctx, conversation_id, user)
    return conversation_json(conversation, ctx.store.messages(conversation.id))


@router.patch("/conversations/{conversation_id}", response_model=ConversationOut)
async def patch_conversation(conversation_id: ConversationId, body: ConversationPatch, ctx: Ctx,
                             user: User) -> Any:
    """Rename a conversation or switch its model."""
    conversation = owned_conversation(ctx, conversation_id, user)
    fields = body.model_dump(exclude_none=True)
    conversation = ctx.store.update_conversation(conversation.id, **fields)
    return conversation_json(conversation, ctx.store.messages(conversation.id))


@router.delete("/conversations/{conversation_id}")
async def delete_conversation(conversation_id: ConversationId, ctx: Ctx,
                              user: User) -> dict[str, bool]:
    conversation = owned_conversation(ctx, conversation_id, user)
    await ctx.chats.stop(conversation.id)
    ctx.store.delete_conversation(conversation.id, user_id=user)
    return {"deleted": True}


# -- messages ----------------------------------------------------------------------------------

def path_to(message_id: str, by_id: dict[str, Message]) -> list[Message]:
    """The messages from the root down to `message_id`: the branch the model should see."""
    path: list[Message] = []
    seen: set[str] = set()
    current: str | None = message_id
    while current is not None and current in by_id and current not in seen:
        seen.add(current)
        path.append(by_id[current])
        current = by_id[current].parent_id
    path.reverse()
    return path


def with_files(message: Message) -> str:
    """A user message as the model reads it: its text, then each attached file's."""
    files = message.data.get("files") or []
    parts = [message.content]
    for attached in files:
        parts.append(f"<file name={json.dumps(str(attached.get('name', '')))}>\n"
                     f"{attached.get('content', '')}\n</file>")
    return "\n\n".join(parts)


def chat_history(branch: Sequence[Message]) -> list[ChatMessage]:
    history: list[ChatMessage] = []
    for message in branch:
        if message.role == "system":
            if message.content.strip():
                history.append({"role": "system", "content": message.content})
        elif message.role == "user":
            history.append({"role": "user", "content": with_files(message)})
        elif message.role == "assistant" and message.content:
            history.append({"role": "assistant", "content": message.content})
    return history


@router.post("/conversations/{conversation_id}/messages",
             responses={200: {"content": {"text/event-stream": {}},
                              "description": "SSE: JSON updates `status` (started, error), "
                                             "`stream` (token), `finalAnswer`, `title`."}})
async def send_message(conversation_id: ConversationId, body: MessageCreate, ctx: Ctx,
                       caller: CallerDep) -> StreamingResponse:
    """Add a user message (as a child of `id`, or after the newest message) and stream the
    model's answer. With `is_retry`, answer the user message `id` again as a new branch.
    The model is offered the caller's tools (GET /api/v2/tools); a call whose policy is `ask`
    waits for POST .../tool-calls/{call_id}."""
    user = caller.name
    conversation = owned_conversation(ctx, conversation_id, user)
    if conversation.id in ctx.chats.running:
        raise Conflict("an answer is already being written in this conversation; stop it "
                       "first (POST .../stop-generating)")
    messages = ctx.store.messages(conversation.id)
    by_id = {message.id: message for message in messages}
    if body.is_retry:
        assert body.id is not None
        question = by_id.get(body.id)
        if question is None:
            raise NotFound(f"no message {body.id!r} in this conversation")
        if question.role != "user":
            raise PolicyError("is_retry needs the id of a user message")
    else:
        if body.id is not None and body.id not in by_id:
            raise NotFound(f"no message {body.id!r} in this conversation")
        parent = body.id if body.id is not None else (messages[-1].id if messages else None)
        question = Message(id=str(uuid.uuid4()), conversation_id=conversation.id, role="user",
                           content=body.inputs or "", parent_id=parent,
                           data={"files": [f.model_dump() for f in body.files]}
                           if body.files else {})
        ctx.store.add_message(question)
        by_id[question.id] = question
    first_question = not any(m.role == "user" for m in messages)
    answer = ctx.store.add_message(Message(
        id=str(uuid.uuid4()), conversation_id=conversation.id, role="assistant", content="",
        parent_id=question.id, data={"model": conversation.model}))
    generation = ChatGeneration(
        store=ctx.store, gateway=ctx.gateway, metrics=ctx.metrics, conversation=conversation,
        assistant=answer, history=chat_history(path_to(question.id, by_id)),
        title_from=question.content if first_question and conversation.title == DEFAULT_TITLE
        else None,
        task_model=ctx.settings.task_model,
        tools=ToolSession(ToolUse(ctx, caller), RUFLO_TOOLS, tool_policies(ctx, user),
                          lambda _: None, more=more_tools(ctx, user)))
    ctx.chats.start(generation)
    return StreamingResponse(generation.frames(), media_type="text/event-stream",
                             headers=SSE_HEADERS)


@router.post("/conversations/{conversation_id}/stop-generating", response_model=StopAnswer)
async def stop_generating(conversation_id: ConversationId, ctx: Ctx, user: User) -> Any:
    """Stop the answer being written; what was written so far is kept, marked interrupted."""
    conversation = owned_conversation(ctx, conversation_id, user)
    return {"stopped": await ctx.chats.stop(conversation.id)}


@router.post("/conversations/{conversation_id}/tool-calls/{call_id}",
             response_model=ToolDecisionAnswer)
async def decide_tool_call(conversation_id: ConversationId,
                           call_id: Annotated[str, Path(max_length=200)], body: ToolDecision,
                           ctx: Ctx, user: User) -> Any:
    """Allow or deny a tool call that waits for the person (its policy is `ask`)."""
    conversation = owned_conversation(ctx, conversation_id, user)
    generation = ctx.chats.running.get(conversation.id)
    if generation is None or not generation.tools.decide(call_id, body.decision == "allow"):
        raise NotFound(f"no tool call {call_id!r} waits for a decision in this conversation")
    return {"decided": True}


# -- tools ---------------------------------------------------------------------------------------

def offered_tools(ctx: ServerContext, user: str) -> list[ChatTool]:
    """ruflo's tools and those already found at the person's MCP servers (never waits)."""
    found = [(server, tool) for server in mcp_servers(ctx, user)
             for tool in ctx.mcp.look(server).tools]
    return [*RUFLO_TOOLS, *mcp_tools(found)]


def mcp_servers(ctx: ServerContext, user: str) -> list[McpServer]:
    stored = ctx.store.get_user_settings(user).get("mcpServers")
    return [McpServer.of(raw) for raw in stored] if isinstance(stored, list) else []


def more_tools(ctx: ServerContext, user: str) -> Callable[[], Awaitable[list[ChatTool]]]:
    """The person's MCP tools, looked up when the answer starts (waiting only a moment for a
    server not asked yet)."""
    async def find() -> list[ChatTool]:
        return mcp_tools(await ctx.mcp.tools(mcp_servers(ctx, user)))
    return find


def tool_policies(ctx: ServerContext, user: str) -> dict[str, Any]:
    policies = ctx.store.get_user_settings(user).get("toolPolicies")
    return dict(policies) if isinstance(policies, dict) else {}


@router.get("/tools")
async def list_tools(ctx: Ctx, user: User) -> dict[str, Any]:
    """The tools a chat model may be offered, each with the caller's policy (allow, ask, off;
    set them with POST /api/v2/user/settings {"toolPolicies": {name: policy}})."""
    policies = tool_policies(ctx, user)
    return {"tools": [{"name": t.name, "title": t.title, "description": t.description,
                       "source": t.source, "changes": t.changes,
                       "policy": policy_of(t, policies), "default": t.default_policy}
                      for t in offered_tools(ctx, user)]}


def server_json(ctx: ServerContext, server: McpServer) -> dict[str, Any]:
    """A server as settings show it: header values hidden, with what was found there."""
    return {"name": server.name, "url": server.url, "command": list(server.command) or None,
            "headers": dict.fromkeys(server.headers, "•••"), "env": sorted(server.env),
            **ctx.mcp.look(server).state()}


@router.get("/mcp-servers")
async def list_mcp_servers(ctx: Ctx, user: User) -> dict[str, Any]:
    """The caller's MCP servers, each with its state (connecting, ok with its tools, or error
    with why); asking never waits for a server."""
    return {"servers": [server_json(ctx, s) for s in mcp_servers(ctx, user)]}


@router.post("/mcp-servers", status_code=201)
async def add_mcp_server(body: McpServerSpec, ctx: Ctx, caller: CallerDep) -> dict[str, Any]:
    """Add an MCP server (or replace the one of that name). A stdio command needs an operator:
    the server runs it (in the command sandbox)."""
    require_operator(caller, ["command"] if body.command is not None else [],
                     outcome="the MCP server was not added")
    settings = dict(ctx.store.get_user_settings(caller.name))
    servers = [s for s in settings.get("mcpServers") or [] if s.get("name") != body.name]
    if len(servers) >= MAX_MCP_SERVERS:
        raise PolicyError(f"at most {MAX_MCP_SERVERS} MCP servers; remove one first")
    servers.append(body.model_dump(exclude_none=True))
    settings["mcpServers"] = servers
    ctx.store.put_user_settings(caller.name, settings)
    return server_json(ctx, McpServer.of(servers[-1]))


@router.delete("/mcp-servers/{name}")
async def remove_mcp_server(name: Annotated[str, Path(max_length=40)], ctx: Ctx,
                            user: User) -> dict[str, bool]:
    settings = dict(ctx.store.get_user_settings(user))
    servers = list(settings.get("mcpServers") or [])
    kept = [s for s in servers if s.get("name") != name]
    if len(kept) == len(servers):
        raise NotFound(f"no MCP server {name!r}")
    settings["mcpServers"] = kept
    ctx.store.put_user_settings(user, settings)
    return {"deleted": True}


@router.post("/mcp-servers/{name}/check")
async def check_mcp_server(name: Annotated[str, Path(max_length=40)], ctx: Ctx,
                           user: User) -> dict[str, Any]:
    """Connect to the server now and list its tools (or say why not)."""
    server = next((s for s in mcp_servers(ctx, user) if s.name == name), None)
    if server is None:
        raise NotFound(f"no MCP server {name!r}")
    await ctx.mcp.check(server)
    return server_json(ctx, server)


# -- user settings and export ------------------------------------------------------------------

def user_settings(ctx: ServerContext, user: str) -> dict[str, Any]:
    merged = dict(DEFAULT_SETTINGS, activeModel=ctx.settings.model)
    merged.update(ctx.store.get_user_settings(user))
    if isinstance(merged.get("mcpServers"), list):  # header values are secrets: never shown
        merged["mcpServers"] = [{**raw, "headers": dict.fromkeys(raw.get("headers") or {},
                                                                 "•••")}
                                for raw in merged["mcpServers"]]
    return merged


@router.get("/user/settings")
async def get_user_settings(ctx: Ctx, user: User) -> dict[str, Any]:
    return user_settings(ctx, user)


@router.post("/user/settings")
async def post_user_settings(body: UserSettings, ctx: Ctx, user: User) -> dict[str, Any]:
    """Change some settings; the ones not given keep their value."""
    stored = dict(ctx.store.get_user_settings(user))
    stored.update(body.model_dump(exclude_unset=True, exclude_none=True))
    ctx.store.put_user_settings(user, stored)
    return user_settings(ctx, user)


@router.get("/export")
async def export(ctx: Ctx, user: User) -> dict[str, Any]:
    """Everything the caller has here: settings and every conversation with its messages."""
    conversations: list[dict[str, Any]] = []
    offset = 0
    while True:
        page = ctx.store.list_conversations(user, limit=200, offset=offset)
        conversations.extend(conversation_json(c, ctx.store.messages(c.id)) for c in page)
        if len(page) < 200:
            break
        offset += 200
    return {"user": user, "exportedAt": iso(utcnow()), "settings": user_settings(ctx, user),
            "conversations": conversations}
