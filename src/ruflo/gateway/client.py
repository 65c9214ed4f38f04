"""GatewayClient: the only road from ruflo to a model, through one OpenAI-compatible gateway.

Depends on the `openai` SDK (retries off: ours come from stamina), the Store protocol (ledger,
pausing a hive) and the gateway's metering, budgets and error classification. Each call: book the
budget → call, retrying 429 (as Retry-After says) and 5xx/connection errors (jittered backoff),
bounded in attempts and time → meter the answer into the ledger → settle the budget. A refused
key or a spent gateway budget is never retried: the call's hive is paused. A plain call whose
caller is cancelled (a paused attempt) still lands in the ledger when the gateway answers; a
stream its reader left is metered with what it delivered. `probe`: an unmetered look at the models.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import httpx  # noqa: F401 (see below)
import httpx2
import openai
import stamina
from openai.types.chat import ChatCompletionChunk

from ruflo import telemetry
from ruflo.errors import ConfigError, GatewayError, NotFound
from ruflo.event_kinds import EventKind
from ruflo.gateway.base import (
    CallContext,
    ChatMessage,
    ChatResult,
    Gateway,
    ModelInfo,
    StreamDelta,
    ToolCall,
    Usage,
)
from ruflo.gateway.budget import Budgets, BudgetWarning, Reservation, estimate_prompt_tokens
from ruflo.gateway.classify import ERROR_CLASSES, Failure, FailureKind, classify, describe
from ruflo.gateway.metering import PriceTable, call_cost, record, request_id
from ruflo.model import JSON, HiveStatus, utcnow
from ruflo.store.base import Store

if TYPE_CHECKING:
    from ruflo.config import Settings
    from ruflo.gateway.relay import ModelRelay

__all__ = ["GatewayClient", "ModelsStatus", "RetryPolicy"]

log = logging.getLogger(__name__)
T = TypeVar("T")

# `httpx` is imported above, in full, before any call: the SDK peeks at a legacy `httpx` in
# sys.modules whenever a call fails, and a first `import httpx` in another thread (the notify
# dispatcher's first send, e.g. the pause notice of an outage) would show it a half-initialized
# module, turning the failure into an AttributeError classified as a bad answer.

PROBE_TIMEOUT = 10.0
"""Seconds one `probe` waits for the model list: a gateway slower than this is not back yet."""

PauseHook = Callable[[str, GatewayError], None]
"""Called with (hive_id, error) after a refused key or a spent gateway budget paused a hive."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try before giving up on a call."""

    attempts: int = 5
    timeout: float = 60.0
    """Seconds for all attempts of one call together."""
    wait_initial: float = 0.25
    wait_max: float = 8.0
    wait_jitter: float = 0.5
    max_retry_after: float = 30.0
    """A 429 asking for a longer wait than this is given up at once."""


@dataclass(frozen=True, slots=True)
class ModelsStatus:
    """The model list's health, for banners and `ruflo doctor`."""

    ok: bool
    error: str | None
    refreshed_at: datetime | None
    """Last successful refresh."""
    checked_at: datetime | None
    """Last attempt, successful or not."""
    count: int


class _AttemptFailed(Exception):
    """One attempt failed (stamina decides whether to try again)."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.detail)
        self.failure = failure


class _CallFailed(Exception):
    """The call failed for good; the client words it once it knows what it did about it."""

    def __init__(self, failure: Failure, attempts: int = 1, elapsed: float = 0.0) -> None:
        super().__init__(failure.detail)
        self.failure = failure
        self.attempts = attempts
        self.elapsed = elapsed


class _Abandoned(Exception):
    """The caller left before this attempt started: it is not made."""


class _Call:
    """One plain call, which may outlive its caller."""

    __slots__ = ("abandoned", "cut", "sent")

    def __init__(self) -> None:
        self.abandoned = False
        """The caller was cancelled: finish what the gateway is answering, start no retry."""
        self.sent = False
        """A request went out: from now on the gateway may bill it."""
        self.cut = False
        """The client closed before the answer came: meter the call's booking as an estimate."""


class _StreamState:
    """What a streamed answer has delivered so far."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.calls: dict[int, dict[str, str]] = {}
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.cost: Any = None
        """`usage.cost` of the last chunk: where LiteLLM puts a stream's cost."""
        self.model = ""
        self.response_id: str | None = None
        self.chunks = 0

    def add(self, chunk: Any) -> str:
        self.chunks += 1
        self.response_id = self.response_id or getattr(chunk, "id", None)
        self.model = getattr(chunk, "model", None) or self.model
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            self.usage = Usage(int(usage.prompt_tokens or 0), int(usage.completion_tokens or 0))
            self.cost = getattr(usage, "cost", None)
        piece = ""
        for choice in chunk.choices or []:
            delta = choice.delta
            if delta is not None and delta.content:
                piece += delta.content
            for call in (delta.tool_calls if delta is not None else None) or []:
                slot = self.calls.setdefault(int(call.index or 0),
                                             {"id": "", "name": "", "arguments": ""})
                if call.id:
                    slot["id"] = call.id
                if call.function is not None:
                    slot["name"] += call.function.name or ""
                    slot["arguments"] += call.function.arguments or ""
            if choice.finish_reason:
                self.finish_reason = choice.finish_reason
        if piece:
            self.text.append(piece)
        return piece

    def tool_calls(self) -> tuple[ToolCall, ...]:
        return tuple(ToolCall(c["id"], c["name"], c["arguments"])
                     for _, c in sorted(self.calls.items()))


class GatewayClient:
    """The Gateway: chat completions (plain, streaming, tools) and the model list, metered into
    the store's ledger and charged to hive and agent budgets."""

    def __init__(self, base_url: str, api_key: str, *, store: Store | None = None,
                 prices: PriceTable | Mapping[str, Mapping[str, float]] | None = None,
                 budgets: Budgets | None = None, retry: RetryPolicy | None = None,
                 timeout: float = 120.0, connect_timeout: float = 5.0,
                 models_ttl: float = 300.0, close_wait: float = 5.0,
                 on_pause: PauseHook | None = None,
                 on_budget_warning: Callable[[BudgetWarning], None] | None = None,
                 base_url_source: str = "argument",
                 relay_address: str = "127.0.0.1:0") -> None:
        if not base_url:
            raise ConfigError("no gateway URL: set OPENAI_BASE_URL (or LITELLM_BASE_URL) to the "
                              "gateway's address; nothing was called")
        if not api_key:
            raise ConfigError("no gateway key: set OPENAI_API_KEY to the gateway's virtual key "
                              "(not a provider key); nothing was called")
        self.base_url = base_url.rstrip("/")
        self.base_url_source = base_url_source
        """Which setting the URL came from (OPENAI_BASE_URL or LITELLM_BASE_URL), for the boot
        trace."""
        self.store = store
        self.prices = prices if isinstance(prices, PriceTable) else PriceTable(prices)
        if budgets is None and store is not None:
            budgets = Budgets(store, self.prices, on_warning=on_budget_warning)
        self.budgets = budgets
        self.retry = retry or RetryPolicy()
        self.models_ttl = models_ttl
        self.on_pause = on_pause
        self.api_key = api_key
        """The gateway key: sent by this client and the model relay, never handed to agents."""
        self._sdk = openai.AsyncOpenAI(
            base_url=self.base_url, api_key=api_key, max_retries=0,
            timeout=openai.Timeout(timeout, connect=connect_timeout))
        self._models: list[ModelInfo] | None = None
        self._models_at = 0.0
        self._models_refreshed: datetime | None = None
        self._models_checked: datetime | None = None
        self._models_error: str | None = None
        self._models_flight: asyncio.Future[list[ModelInfo]] | None = None
        self._in_flight: set[asyncio.Future[ChatResult]] = set()
        """Plain calls being answered, some perhaps for callers already gone."""
        self._calls: dict[asyncio.Future[ChatResult], _Call] = {}
        self.close_wait = close_wait
        self.relay_address = relay_address
        """Where the model relay listens once started (see `relay`)."""
        self._relay: ModelRelay | None = None
        self._relay_start: asyncio.Lock | None = None

    @classmethod
    def from_settings(cls, settings: Settings, store: Store | None = None,
                      **kwargs: Any) -> GatewayClient:
        """The client the settings describe: URL from OPENAI_BASE_URL else LITELLM_BASE_URL."""
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else ""
        kwargs.setdefault("relay_address", settings.relay_address)
        return cls(settings.gateway_url or "", key, store=store, prices=settings.prices,
                   base_url_source=settings.gateway_url_var or "unset", **kwargs)

    async def relay(self) -> ModelRelay:
        """The model relay of this client (started on first use, closed with the client): how
        agents ruflo starts reach models, metered and budgeted like this client's own calls."""
        if self._relay_start is None:
            self._relay_start = asyncio.Lock()
        async with self._relay_start:
            if self._relay is None:
                from ruflo.gateway.relay import ModelRelay

                relay = ModelRelay(self, address=self.relay_address)
                await relay.start()
                self._relay = relay
        return self._relay

    async def aclose(self) -> None:
        """Close the connections, once every call still being answered is metered (waiting at
        most `close_wait` seconds; see `drain`)."""
        if self._relay is not None:
            await self._relay.aclose()
            self._relay = None
        await self.drain(give_up_after=self.close_wait)
        await self._sdk.close()

    async def drain(self, *, give_up_after: float | None = None) -> None:
        """Wait until every plain call in flight, including those whose caller was cancelled
        (a paused attempt), is answered and metered. After `give_up_after` seconds the calls still
        unanswered are given up and each is metered as its booking (prompt guess + max_tokens,
        the most it can cost; cost_source "estimate"): the gateway may still bill them."""
        deadline = None if give_up_after is None else time.monotonic() + give_up_after
        while self._in_flight:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            await asyncio.wait(set(self._in_flight), timeout=left)
        late = list(self._in_flight)
        for answer in late:
            self._calls[answer].cut = True
            answer.cancel()
        if late:
            await asyncio.wait(late)

    async def __aenter__(self) -> GatewayClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- retries and failures ------------------------------------------------------------------
    async def _attempts(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run `operation` with bounded retries; raise _CallFailed with the classified failure."""
        policy = self.retry
        started = time.monotonic()
        attempts = 0

        def backoff(error: BaseException) -> bool | float:
            if not isinstance(error, _AttemptFailed):
                return False
            failure = error.failure
            if failure.kind is FailureKind.RATE_LIMITED and failure.retry_after is not None:
                remaining = policy.timeout - (time.monotonic() - started)
                if failure.retry_after > min(policy.max_retry_after, remaining):
                    return False
                return failure.retry_after
            return failure.kind.retried

        try:
            async for attempt in stamina.retry_context(
                    on=backoff, attempts=policy.attempts, timeout=policy.timeout,
                    wait_initial=policy.wait_initial, wait_max=policy.wait_max,
                    wait_jitter=policy.wait_jitter):
                with attempt:
                    attempts += 1
                    try:
                        return await operation()
                    except (openai.OpenAIError, ValueError, TypeError, KeyError,
                            AttributeError) as error:
                        raise _AttemptFailed(classify(error)) from error
        except _AttemptFailed as failed:
            raise _CallFailed(failed.failure, attempts, time.monotonic() - started) from None
        raise AssertionError("stamina ended without a result or an error")

    def _error(self, failed: _CallFailed, context: CallContext | None,
               started: float | None = None) -> GatewayError:
        began = None if started is None else time.time() - (time.monotonic() - started)
        return self.failure_error(failed.failure, context, began=began, attempts=failed.attempts,
                                  elapsed=failed.elapsed)

    def failure_error(self, failure: Failure, context: CallContext | None, *, attempts: int = 1,
                      elapsed: float = 0.0, began: float | None = None) -> GatewayError:
        """The error for a failed call. A refused key or a spent gateway budget pauses the call's
        hive first (unless a person resumed it after the call `began`), then tells `on_pause`.
        The model relay (gateway.relay) words its callers' failures here too."""
        hive_id = context.hive_id if context is not None else None
        paused = resumed = False
        if failure.kind in (FailureKind.AUTH, FailureKind.BUDGET) and hive_id is not None \
                and self.store is not None:
            hive = None
            with contextlib.suppress(NotFound):
                hive = self.store.get_hive(hive_id)
            paused = hive is not None
            running = hive is not None and hive.status is HiveStatus.RUNNING
            if running and began is not None:
                # A call begun before the hive's last resume: the person's resume stands.
                resumes = self.store.events(hive_id, kinds=[EventKind.HIVE_RUNNING])
                resumed = bool(resumes) and resumes[-1].ts.timestamp() > began
            if running and not resumed:
                reason = ERROR_CLASSES[failure.kind].pause_reason
                self.store.set_hive_status(hive_id, HiveStatus.PAUSED, reason=reason)
                log.warning("hive %s paused: %s", hive_id, reason)
        error = failure.to_error(self.base_url, attempts=attempts, elapsed=elapsed, paused=paused)
        if paused and not resumed and hive_id is not None and self.on_pause is not None:
            self.on_pause(hive_id, error)
        return error

    def _bad(self, detail: str) -> _CallFailed:
        return _CallFailed(Failure(FailureKind.BAD_RESPONSE, detail))

    # -- chat ------------------------------------------------------------------------------------
    def _request(self, messages: Sequence[ChatMessage], model: str,
                 tools: Sequence[JSON] | None, max_tokens: int | None,
                 temperature: float | None) -> dict[str, Any]:
        request: dict[str, Any] = {"model": model, "messages": list(messages)}
        if tools:
            request["tools"] = list(tools)
        if max_tokens is not None:
            request["max_tokens"] = max_tokens
        if temperature is not None:
            request["temperature"] = temperature
        return request

    async def reserve(self, context: CallContext, model: str,
                      messages: Sequence[ChatMessage], tools: Sequence[JSON] | None,
                      max_tokens: int | None) -> Reservation | None:
        """Book a call's budget; `release` gives it back, `meter` settles it (the relay's too)."""
        if self.budgets is None:
            return None
        return await self.budgets.reserve(context, model=model, messages=messages, tools=tools,
                                          max_tokens=max_tokens)

    def meter(self, context: CallContext, reservation: Reservation | None, *, model: str,
              usage: Usage, cost: float | None, cost_source: str, request: str | None,
              started: float | None = None) -> None:
        """Write one call's ledger entry and settle its booking (also the relay's calls);
        `started` (monotonic) times the call for the per-model histograms."""
        telemetry.metered(model, usage.prompt_tokens, usage.completion_tokens, cost,
                          cost_source, request)
        if started is not None:
            telemetry.MODEL_CALLS.observe(model, time.monotonic() - started, usage.prompt_tokens,
                                          usage.completion_tokens)
        if self.store is not None:
            record(self.store, context, model=model, usage=usage, cost=cost,
                   cost_source=cost_source, request=request)
        if reservation is not None and self.budgets is not None:
            self.budgets.settle(reservation, usage, cost, cost_source)

    async def chat(self, messages: Sequence[ChatMessage], *, model: str, context: CallContext,
                   tools: Sequence[JSON] | None = None, max_tokens: int | None = None,
                   temperature: float | None = None) -> ChatResult:
        """One chat completion (with tools when given), metered and charged.

        If the caller is cancelled (the hive paused, the attempt stopped) the call carries on:
        the gateway is answering it and will bill it, so it is metered when the answer comes
        (`drain` waits for that), but no retry is started for it. The caller is not held up."""
        request = self._request(messages, model, tools, max_tokens, temperature)
        reservation = await self.reserve(context, model, messages, tools, max_tokens)
        call = _Call()
        answer = asyncio.ensure_future(self._traced(call, request, reservation, messages,
                                                    model=model, context=context, tools=tools))
        self._in_flight.add(answer)
        self._calls[answer] = call
        answer.add_done_callback(self._landed(call))
        try:
            return await asyncio.shield(answer)
        except asyncio.CancelledError:
            call.abandoned = True
            raise

    def _landed(self, call: _Call) -> Callable[[asyncio.Future[ChatResult]], None]:
        def landed(answer: asyncio.Future[ChatResult]) -> None:
            self._in_flight.discard(answer)
            self._calls.pop(answer, None)
            error = None if answer.cancelled() else answer.exception()
            if call.abandoned and error is not None and not isinstance(error, _Abandoned):
                # Its caller is gone; the ledger and the hive's status already say the rest.
                log.info("a call whose caller had stopped failed: %s", error)
        return landed

    async def _traced(self, call: _Call, request: dict[str, Any],
                      reservation: Reservation | None, messages: Sequence[ChatMessage], *,
                      model: str, context: CallContext,
                      tools: Sequence[JSON] | None) -> ChatResult:
        """`_chat` in a span of the hive's trace (nothing when tracing is off)."""
        with telemetry.model_call("chat", model, context.hive_id, context.agent_id,
                                  context.task_id, context.kind.value):
            telemetry.content("gen_ai.input.messages", lambda: json.dumps(list(messages)))
            result = await self._chat(call, request, reservation, messages, model=model,
                                      context=context, tools=tools)
            telemetry.content("gen_ai.output.messages", lambda: json.dumps(
                [{"role": "assistant", "content": result.content,
                  "tool_calls": [c.name for c in result.tool_calls]}]))
            return result

    async def _chat(self, call: _Call, request: dict[str, Any],
                    reservation: Reservation | None, messages: Sequence[ChatMessage], *,
                    model: str, context: CallContext,
                    tools: Sequence[JSON] | None) -> ChatResult:
        def post() -> Awaitable[httpx2.Response]:
            if call.abandoned:
                raise _Abandoned
            call.sent = True
            # The SDK's generic post skips its per-call request transformation (milliseconds
            # for a long conversation); the answer is checked here instead of by the SDK.
            return self._sdk.post("/chat/completions", body=request, cast_to=httpx2.Response,
                                  options={"headers": telemetry.headers()})

        started = time.monotonic()
        try:
            response = await self._attempts(post)
            try:
                data = response.json()
            except ValueError:
                raise self._bad(f"not JSON: {describe(response.text[:120])}") from None
            result, has_usage = self._completion(data, model)
        except _CallFailed as failed:
            self.release(reservation)
            raise self._error(failed, context, started) from None
        except BaseException:
            if call.cut and call.sent:
                # The client closed before the answer came, but the gateway may still bill the
                # call in full: the ledger gets the most it can cost, marked as an estimate.
                prompt = estimate_prompt_tokens(messages, tools)
                completion = (reservation.tokens - prompt if reservation is not None
                              else int(request.get("max_tokens") or 0))
                self.meter(context, reservation, model=model, usage=Usage(prompt, completion),
                           cost=None, cost_source="estimate", request=None, started=started)
            else:
                self.release(reservation)
            raise
        headers = response.headers
        usage = result.usage
        if not has_usage:
            # The gateway sent no usage: charge a size-based guess, never nothing.
            usage = Usage(estimate_prompt_tokens(messages, tools),
                          max(1, len(result.content or "") // 4))
        reported = data.get("usage")
        cost, source = call_cost(headers, result.model, usage if has_usage else None,
                                 self.prices,
                                 reported.get("cost") if isinstance(reported, dict) else None)
        rid = request_id(headers, data.get("id"))
        self.meter(context, reservation, model=result.model, usage=usage, cost=cost,
                   cost_source=source, request=rid, started=started)
        return ChatResult(result.content, result.tool_calls, result.finish_reason,
                          result.model, usage, cost, rid)

    def release(self, reservation: Reservation | None) -> None:
        if reservation is not None and self.budgets is not None:
            self.budgets.release(reservation)

    def _completion(self, data: Any, model: str) -> tuple[ChatResult, bool]:
        """Read a chat completion body, checking that it is one; also whether it had usage."""
        choices = data.get("choices") if isinstance(data, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise self._bad(f"no choices in {describe(data)}")
        message = choices[0].get("message")
        if not isinstance(message, dict):
            raise self._bad(f"no message in {describe(choices[0])}")
        content = message.get("content")
        if content is not None and not isinstance(content, str):
            raise self._bad(f"content is {type(content).__name__}, not text")
        raw_calls = message.get("tool_calls") or []
        if not isinstance(raw_calls, list):
            raise self._bad(f"tool_calls is not a list: {describe(raw_calls)}")
        calls = []
        for call in raw_calls:
            function = call.get("function") if isinstance(call, dict) else None
            name = function.get("name") if isinstance(function, dict) else None
            if not isinstance(name, str) or not name or not isinstance(function, dict):
                raise self._bad(f"tool call without a function name: {describe(call)}")
            arguments = function.get("arguments")
            if not isinstance(arguments, str):
                arguments = "" if arguments is None else json.dumps(arguments)
            calls.append(ToolCall(str(call.get("id") or ""), name, arguments))
        usage = data.get("usage")
        has_usage = isinstance(usage, dict)
        used = Usage()
        if isinstance(usage, dict):
            used = Usage(self._count(usage.get("prompt_tokens")),
                         self._count(usage.get("completion_tokens")))
        finish = choices[0].get("finish_reason")
        answered_model = data.get("model")
        return ChatResult(content, tuple(calls), finish if isinstance(finish, str) else None,
                          answered_model if isinstance(answered_model, str) and answered_model
                          else model, used), has_usage

    def _count(self, value: Any) -> int:
        if value is None:
            return 0
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise self._bad(f"token count {describe(value)} is not a number of tokens")
        return int(value)

    async def stream(self, messages: Sequence[ChatMessage], *, model: str,
                     context: CallContext, max_tokens: int | None = None,
                     tools: Sequence[JSON] | None = None,
                     temperature: float | None = None) -> AsyncIterator[StreamDelta]:
        """A streamed chat completion: text deltas, then one `done` delta with the metered
        result, priced from the last chunk's `usage.cost` (LiteLLM sends no cost header on a
        stream). Opening the stream is retried; a stream cut after it started is not (the
        answer so far was already shown): it is metered with what it delivered, and raised. A
        reader that leaves (a stopped answer, a cancelled task) closes the stream; what the
        gateway served until then is metered the same way."""
        request = self._request(messages, model, tools, max_tokens, temperature)
        request.update(stream=True, stream_options={"include_usage": True})
        reservation = await self.reserve(context, model, messages, tools, max_tokens)
        state = _StreamState()
        headers: Mapping[str, str] = {}
        chunks: openai.AsyncStream[ChatCompletionChunk] | None = None
        started = time.monotonic()
        try:
            chunks = await self._attempts(lambda: self._sdk.post(
                "/chat/completions", body=request, cast_to=ChatCompletionChunk, stream=True,
                stream_cls=openai.AsyncStream[ChatCompletionChunk],
                options={"headers": telemetry.headers()}))
            headers = chunks.response.headers
            try:
                async for chunk in chunks:
                    piece = state.add(chunk)
                    if piece:
                        yield StreamDelta(text=piece)
            except openai.APIConnectionError as error:
                raise _CallFailed(Failure(
                    FailureKind.UNAVAILABLE, f"the stream was cut after {state.chunks} chunks "
                                             f"({classify(error).detail})")) from None
            except (ValueError, TypeError, KeyError, AttributeError,
                    openai.OpenAIError) as error:
                raise _CallFailed(classify(error)) from None
            if state.finish_reason is None:
                raise _CallFailed(Failure(
                    FailureKind.UNAVAILABLE,
                    f"the stream ended after {state.chunks} chunks without a finish reason"))
        except _CallFailed as failed:
            if state.chunks:
                # The gateway did work: record it rather than pretend it cost nothing.
                self._meter_cut(context, reservation, state, headers, messages, tools, model,
                                started)
            else:
                self.release(reservation)
            raise self._error(failed, context, started) from None
        except BaseException:
            # The reader left (GeneratorExit) or was cancelled. Once the gateway started to
            # answer, it bills what it produced: meter that. Closing the response tells the
            # gateway to stop generating.
            if chunks is not None:
                self._meter_cut(context, reservation, state, headers, messages, tools, model,
                                started)
                with contextlib.suppress(Exception):
                    await chunks.response.aclose()
            else:
                self.release(reservation)
            raise
        text = "".join(state.text)
        usage = state.usage or Usage(estimate_prompt_tokens(messages, tools),
                                     max(1, len(text) // 4))
        used_model = state.model or model
        cost, source = call_cost(headers, used_model, state.usage, self.prices, state.cost)
        rid = request_id(headers, state.response_id)
        self.meter(context, reservation, model=used_model, usage=usage, cost=cost,
                   cost_source=source, request=rid, started=started)
        result = ChatResult(text if text or not state.calls else None, state.tool_calls(),
                            state.finish_reason, used_model, usage, cost, rid)
        yield StreamDelta(done=True, result=result)

    def _meter_cut(self, context: CallContext, reservation: Reservation | None,
                   state: _StreamState, headers: Mapping[str, str],
                   messages: Sequence[ChatMessage], tools: Sequence[JSON] | None,
                   model: str, started: float) -> None:
        """Meter a stream that ended early: its usage if the gateway sent it, else an estimate
        from what arrived (cost_source "estimate", cost unknown: budgets price it by rate)."""
        used_model = state.model or model
        rid = request_id(headers, state.response_id)
        if state.usage is not None:
            cost, source = call_cost(headers, used_model, state.usage, self.prices, state.cost)
            self.meter(context, reservation, model=used_model, usage=state.usage, cost=cost,
                       cost_source=source, request=rid, started=started)
            return
        received = len("".join(state.text)) + sum(len(c["arguments"])
                                                  for c in state.calls.values())
        guess = Usage(estimate_prompt_tokens(messages, tools), received // 4)
        self.meter(context, reservation, model=used_model, usage=guess, cost=None,
                   cost_source="estimate", request=rid, started=started)

    # -- is it there? ----------------------------------------------------------------------------
    async def probe(self) -> None:
        """One GET of the model list, not retried and not metered (it costs no tokens): how an
        engine whose hive paused for an unreachable gateway finds out that it answers again.
        Raises the classified GatewayError (unavailable, refused key, ...) when it does not."""
        try:
            await self._sdk.get("/models", cast_to=httpx2.Response,
                                options={"timeout": PROBE_TIMEOUT})
        except openai.OpenAIError as error:
            raise classify(error).to_error(self.base_url) from None

    # -- the model list --------------------------------------------------------------------------
    @property
    def models_status(self) -> ModelsStatus:
        return ModelsStatus(ok=self._models_error is None and self._models is not None,
                            error=self._models_error, refreshed_at=self._models_refreshed,
                            checked_at=self._models_checked, count=len(self._models or []))

    def cached_models(self) -> list[ModelInfo]:
        """The last good list, without touching the network (for page renders)."""
        return list(self._models or [])

    async def models(self, *, refresh: bool = False) -> list[ModelInfo]:
        """The models the key may use, cached for `models_ttl` seconds. Concurrent refreshes
        share one request; a failed refresh keeps the last good list (and records the error),
        and raises only when there is no list at all."""
        fresh = time.monotonic() - self._models_at < self.models_ttl
        if self._models is not None and fresh and not refresh:
            return list(self._models)
        if self._models_flight is None or self._models_flight.done():
            self._models_flight = asyncio.ensure_future(self._refresh_models())
        flight = self._models_flight
        return list(await asyncio.shield(flight))

    async def _refresh_models(self) -> list[ModelInfo]:
        self._models_checked = utcnow()
        try:
            response = await self._attempts(
                lambda: self._sdk.get("/models", cast_to=httpx2.Response))
            try:
                data = response.json()
            except ValueError:
                raise self._bad(f"not JSON: {describe(response.text[:120])}") from None
            items = data.get("data") if isinstance(data, dict) else None
            if not isinstance(items, list):
                raise self._bad(f"no model list in {describe(data)}")
            models = []
            for item in items:
                if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                    raise self._bad(f"model entry without an id: {describe(item)}")
                owner = item.get("owned_by")
                models.append(ModelInfo(item["id"], owner if isinstance(owner, str) else None,
                                        item))
        except _CallFailed as failed:
            error = self._error(failed, None)
            self._models_error = str(error)
            log.warning("model list refresh failed: %s", error)
            if self._models is None:
                raise error from None
            return self._models
        self._models = models
        self._models_at = time.monotonic()
        self._models_refreshed = self._models_checked
        self._models_error = None
        return models


if TYPE_CHECKING:
    def _implements_the_seam(client: GatewayClient) -> Gateway:
        return client
