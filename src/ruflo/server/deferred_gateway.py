"""A Gateway that builds the real client off the start-up path: `ruflo serve` answers probes
before the OpenAI SDK (about a second of imports) has loaded, since readiness never depends on
the gateway. The first call waits for the client; `warm()` builds it in a thread right after
start. Depends on the gateway protocol only.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from ruflo.gateway.base import CallContext, ChatMessage, ChatResult, Gateway, ModelInfo, StreamDelta
from ruflo.model import JSON

log = logging.getLogger("ruflo.server")


class DeferredGateway:
    """Stands in for the gateway client until `factory()` has built it (once, in a thread)."""

    def __init__(self, base_url: str, factory: Callable[[], Gateway]) -> None:
        self.base_url = base_url
        self._factory = factory
        self._client: Gateway | None = None
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._built = threading.Event()

    def _build(self) -> Gateway:
        with self._lock:
            if self._client is None and self._error is None:
                try:
                    self._client = self._factory()
                except BaseException as error:  # kept and raised to every caller
                    self._error = error
                finally:
                    self._built.set()
        if self._error is not None:
            raise self._error
        assert self._client is not None
        return self._client

    async def client(self) -> Gateway:
        if self._client is not None:
            return self._client
        return await asyncio.to_thread(self._build)

    def warm(self) -> None:
        """Start building the client in the background (call once the server listens)."""
        threading.Thread(target=self._warm, name="gateway-warm-up", daemon=True).start()

    def _warm(self) -> None:
        try:
            self._build()
        except Exception as error:  # kept in _error: every later call raises it
            log.warning("the gateway client could not be built: %s", error)

    async def open_relay(self) -> None:
        """Start the model relay of the real client (`ruflo serve`: at start, so the address
        the pod's shell names answers before any agent runs). A relay that can't listen is
        logged in one line: hives still run, their outside agents then get no model."""
        try:
            client = await self.client()
            relay = getattr(client, "relay", None)
            if callable(relay):
                started = await relay()
                log.info("model relay listening on %s", started.url)
        except Exception as error:
            log.warning("the model relay did not start: %s", error)

    @property
    def models_status(self) -> Any:
        return getattr(self._client, "models_status", None)

    async def chat(self, messages: Sequence[ChatMessage], *, model: str,
                   context: CallContext, tools: Sequence[JSON] | None = None,
                   max_tokens: int | None = None,
                   temperature: float | None = None) -> ChatResult:
        client = await self.client()
        return await client.chat(messages, model=model, context=context, tools=tools,
                                 max_tokens=max_tokens, temperature=temperature)

    async def stream(self, messages: Sequence[ChatMessage], *, model: str,
                     context: CallContext, max_tokens: int | None = None,
                     tools: Sequence[JSON] | None = None) -> AsyncIterator[StreamDelta]:
        client = await self.client()
        async for delta in client.stream(messages, model=model, context=context,
                                         max_tokens=max_tokens, tools=tools):
            yield delta

    async def models(self, *, refresh: bool = False) -> list[ModelInfo]:
        client = await self.client()
        return await client.models(refresh=refresh)

    async def probe(self) -> None:
        client = await self.client()
        await client.probe()

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
