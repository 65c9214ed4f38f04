"""The Gateway seam: what ruflo needs from the one OpenAI-compatible road to a model.

Depends on the core model only. The real client (`ruflo.gateway.client.GatewayClient`) meters
every call into the store's ledger and charges it to budgets; the shipped double is the
ScriptedGateway *server*, so tests exercise the real client over real HTTP.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ruflo.model import JSON, CostKind

ChatMessage = dict[str, Any]
"""An OpenAI chat message: {"role": ..., "content": ..., "tool_calls"?: [...], ...}."""


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function call the model asked for. `arguments` is the raw JSON text, unparsed:
    malformed JSON is the tool loop's to report back to the model, not the gateway's."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class ChatResult:
    """One finished chat completion, after metering."""

    content: str | None
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str | None = None
    model: str = ""
    usage: Usage = field(default_factory=Usage)
    cost: float | None = None
    request_id: str | None = None

    def as_message(self) -> ChatMessage:
        """The assistant message to append to the conversation for the next turn."""
        message: ChatMessage = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = [
                {"id": c.id, "type": "function",
                 "function": {"name": c.name, "arguments": c.arguments}}
                for c in self.tool_calls
            ]
        return message


@dataclass(frozen=True, slots=True)
class StreamDelta:
    """A piece of a streamed answer. The last one has `done=True` and carries the result."""

    text: str = ""
    done: bool = False
    result: ChatResult | None = None


@dataclass(frozen=True, slots=True)
class CallContext:
    """Who a call is for: the ledger entry and the budgets it is charged to."""

    hive_id: str | None = None
    agent_id: str | None = None
    task_id: str | None = None
    kind: CostKind = CostKind.WORK


@dataclass(frozen=True, slots=True)
class ModelInfo:
    id: str
    owned_by: str | None = None
    raw: JSON = field(default_factory=dict)


class Gateway(Protocol):
    """Chat completions (plain, streaming, with tools) and the model list, metered."""

    base_url: str

    async def chat(self, messages: Sequence[ChatMessage], *, model: str,
                   context: CallContext, tools: Sequence[JSON] | None = None,
                   max_tokens: int | None = None,
                   temperature: float | None = None) -> ChatResult: ...

    def stream(self, messages: Sequence[ChatMessage], *, model: str, context: CallContext,
               max_tokens: int | None = None,
               tools: Sequence[JSON] | None = None) -> AsyncIterator[StreamDelta]: ...

    async def models(self, *, refresh: bool = False) -> list[ModelInfo]: ...

    async def probe(self) -> None:
        """One cheap look at the gateway (the model list: no tokens, no retries). Returns when
        it answers; raises the classified GatewayError when it does not (or refuses the key)."""

    async def aclose(self) -> None: ...
