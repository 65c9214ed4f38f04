"""The model relay: how agents ruflo starts reach models — every call metered, budgeted and
stopped by the kill switch, whatever protocol the agent speaks.

Depends on aiohttp, the gateway client (its ledger, budgets and pausing: the same functions the
built-in agent's calls go through) and the relay's protocol readers and tokens. It speaks OpenAI
Chat Completions, OpenAI Responses, Anthropic Messages and Gemini's generateContent (plain,
streamed, with tools) and the model list. Per call: the attempt's token is checked (unknown or revoked: refused, nothing
recorded) → the hive must be running → the budget is booked → the request goes to the gateway
with the gateway key, unchanged but for asking a chat stream for its usage → the answer comes
back unchanged → its ledger entry (usage read from the answer; a cut stream is estimated from
what arrived) settles the booking. A budget stop, a refused gateway key or a paused hive is
answered in the protocol's own error shape, and the attempt's grant carries the error to the
engine, which pauses the hive as it does for the built-in agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import time
import typing
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from ruflo import telemetry
from ruflo.errors import BudgetExceeded, ConfigError, GatewayError, NotFound
from ruflo.gateway.base import CallContext, ChatMessage, Usage
from ruflo.gateway.budget import Reservation, estimate_prompt_tokens
from ruflo.gateway.classify import Failure, FailureKind, classify_status
from ruflo.gateway.metering import PriceTable, call_cost, request_id
from ruflo.gateway.relay_tokens import Grant, TokenBook
from ruflo.gateway.relay_wire import (
    Ask,
    Protocol,
    StreamReader,
    error_body,
    gemini_target,
    plain_usage,
    read_request,
)
from ruflo.model import JSON, HiveStatus
from ruflo.store.base import Store

__all__ = ["MeteringClient", "ModelRelay", "parse_address"]


class MeteringClient(typing.Protocol):
    """What the relay uses of the gateway client (ruflo.gateway.client.GatewayClient): its
    address and key, and the ledger, budgets and pausing its own calls go through."""

    base_url: str
    api_key: str
    store: Store | None
    prices: PriceTable

    def failure_error(self, failure: Failure, context: CallContext | None, *,
                      attempts: int = 1, elapsed: float = 0.0,
                      began: float | None = None) -> GatewayError: ...

    async def reserve(self, context: CallContext, model: str,
                      messages: Sequence[ChatMessage], tools: Sequence[JSON] | None,
                      max_tokens: int | None) -> Reservation | None: ...

    def release(self, reservation: Reservation | None) -> None: ...

    def meter(self, context: CallContext, reservation: Reservation | None, *, model: str,
              usage: Usage, cost: float | None, cost_source: str, request: str | None,
              started: float | None = None) -> None: ...

log = logging.getLogger(__name__)

DEFAULT_ADDRESS = "127.0.0.1:0"
"""Loopback, a free port: agents on this machine only."""

PASSED_REQUEST_HEADERS = ("content-type", "accept", "anthropic-version", "anthropic-beta",
                          "openai-beta", "user-agent")
"""Request headers the gateway sees from the agent; never its credentials."""
DROPPED_ANSWER_HEADERS = frozenset({"content-length", "transfer-encoding", "connection",
                                    "keep-alive", "content-encoding", "date", "server"})


def parse_address(address: str) -> tuple[str, int]:
    """`host:port` (IPv6 in brackets) → (host, port); ConfigError in one line otherwise."""
    host, sep, port = address.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"RUFLO_RELAY_ADDRESS must be host:port (e.g. 127.0.0.1:4001), got "
                          f"{address!r}; nothing was started")
    return host, int(port)


class ModelRelay:
    """The relay of one process: one listener (TCP), the tokens of the attempts it runs."""

    def __init__(self, client: MeteringClient, *, address: str = DEFAULT_ADDRESS) -> None:
        self.client = client
        self.host, self.port = parse_address(address)
        self.tokens = TokenBook()
        root = client.base_url[:-3] if client.base_url.endswith("/v1") else client.base_url
        self.root = root
        self.upstream = root + "/v1"
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        app = web.Application(client_max_size=64 * 1024 * 1024)
        for protocol in Protocol:
            for prefix in ("/v1beta", "") if protocol is Protocol.GEMINI else ("/v1", ""):
                app.router.add_post(prefix + protocol.path, self._handler(protocol))
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/models", self._models)
        self.app = app

    # -- life ------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The relay's root URL (an agent's OpenAI base URL is this plus /v1)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> str:
        """Listen, in a context of its own: the relay is often started inside the first
        attempt, whose span and log ids must not cling to every later call it answers."""
        return await asyncio.create_task(self._start(), context=contextvars.Context())

    async def _start(self) -> str:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300), auto_decompress=False)
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError as error:
            await runner.cleanup()
            await self._session.close()
            raise ConfigError(f"the model relay could not listen on {self.host}:{self.port} "
                              f"({error.strerror}); set RUFLO_RELAY_ADDRESS to a free address"
                              ) from None
        self._runner = runner
        self.port = int(runner.addresses[0][1])  # the port bound, when 0 asked for any
        log.info("model relay listening on %s", self.url)
        return self.url

    async def aclose(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    @contextlib.contextmanager
    def attempt(self, context: CallContext) -> Iterator[tuple[str, Grant]]:
        """A token for one attempt, revoked when the block ends. Called inside the attempt's
        span (tracing on), the token keeps its context: the spans of its calls join it."""
        token, grant = self.tokens.mint(context, telemetry.traceparent())
        try:
            yield token, grant
        finally:
            self.tokens.revoke(grant)

    def agent_env(self, token: str) -> dict[str, str]:
        """How an agent CLI finds the relay: OpenAI's, Anthropic's and Gemini's variables, the
        token as their key (never the gateway key)."""
        return {"OPENAI_BASE_URL": f"{self.url}/v1", "LITELLM_BASE_URL": self.url,
                "OPENAI_API_KEY": token, "ANTHROPIC_BASE_URL": self.url,
                "ANTHROPIC_API_KEY": token, "GOOGLE_GEMINI_BASE_URL": self.url,
                "GEMINI_API_KEY": token}

    # -- refusing --------------------------------------------------------------------------------
    @staticmethod
    def _refuse(protocol: Protocol, status: int, message: str) -> web.Response:
        return web.json_response(error_body(protocol, status, message), status=status)

    def _grant(self, request: web.Request) -> Grant | None:
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else \
            request.headers.get("x-api-key", "").strip() or \
            request.headers.get("x-goog-api-key", "").strip() or \
            request.query.get("key", "").strip()
        return self.tokens.find(token) if token else None

    def _hive_stopped(self, grant: Grant) -> str | None:
        """Why calls for this grant's hive must not go out now, if they must not."""
        if grant.stop is not None:
            return f"{grant.stop}"
        hive_id = grant.context.hive_id
        if hive_id is None or self.client.store is None:
            return None
        try:
            hive = self.client.store.get_hive(hive_id)
        except NotFound:
            return f"the hive {hive_id} no longer exists"
        if hive.status is not HiveStatus.RUNNING:
            why = f": {hive.pause_reason}" if hive.pause_reason else ""
            return f"the hive {hive_id} is {hive.status.value}{why}; ruflo made no call"
        return None

    # -- the calls -------------------------------------------------------------------------------
    def _handler(self, protocol: Protocol) -> Any:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self._call(protocol, request)
        return handle

    async def _models(self, request: web.Request) -> web.StreamResponse:
        if self._grant(request) is None:
            return self._refuse(Protocol.CHAT, 401, "unknown or expired relay token")
        assert self._session is not None
        try:
            async with self._session.get(f"{self.upstream}/models",
                                         headers=self._headers(request)) as answer:
                body = await answer.read()
                return web.Response(body=body, status=answer.status,
                                    headers=self._answer_headers(answer))
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            return self._refuse(Protocol.CHAT, 502,
                                f"the gateway could not be reached ({error})")

    def _headers(self, request: web.Request) -> dict[str, str]:
        headers = {name: request.headers[name] for name in PASSED_REQUEST_HEADERS
                   if name in request.headers}
        headers["authorization"] = f"Bearer {self.client.api_key}"
        headers["accept-encoding"] = "identity"
        headers.update(telemetry.headers())  # the call's span, so the gateway's spans join it
        return headers

    def _target(self, protocol: Protocol, request: web.Request) -> str:
        """Where a call goes on the gateway: the same path (LiteLLM serves each protocol);
        Gemini's with its query (`alt=sse`) but never a `key` in it."""
        if protocol is not Protocol.GEMINI:
            return self.upstream + protocol.path
        query = urlencode([(k, v) for k, v in request.query.items() if k != "key"])
        path = f"{self.root}/v1beta/models/{request.match_info['target']}"
        return f"{path}?{query}" if query else path

    @staticmethod
    def _answer_headers(answer: aiohttp.ClientResponse) -> dict[str, str]:
        return {name: value for name, value in answer.headers.items()
                if name.lower() not in DROPPED_ANSWER_HEADERS}

    async def _call(self, protocol: Protocol, request: web.Request) -> web.StreamResponse:
        grant = self._grant(request)
        if grant is None:
            return self._refuse(protocol, 401, "unknown or expired relay token: a token works "
                                "for its own attempt only; nothing was called")
        raw = await request.read()
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError("the request body is not a JSON object")
            if protocol is Protocol.GEMINI:  # the model and the streaming are in the path
                model, streamed = gemini_target(request.match_info["target"])
                ask = read_request(protocol, {**body, "model": model, "stream": streamed})
            else:
                ask = read_request(protocol, body)
        except ValueError as error:
            return self._refuse(protocol, 400, f"bad request: {error}; nothing was called")
        stopped = self._hive_stopped(grant)
        if stopped is not None:
            return self._refuse(protocol, 403, stopped)
        context = grant.context
        with telemetry.relay_call(grant.traceparent, protocol.value, ask.model, context.hive_id,
                                  context.agent_id, context.task_id,
                                  context.kind.value) as span:
            reply = await self._forward(protocol, request, grant, ask, body, raw)
            if reply.status >= 400:
                span.set("error.type", str(reply.status))
            return reply

    async def _forward(self, protocol: Protocol, request: web.Request, grant: Grant, ask: Ask,
                       body: dict[str, Any], raw: bytes) -> web.StreamResponse:
        """Book the budget, send the call to the gateway, pass its answer back, meter it."""
        context = grant.context
        try:
            reservation = await self.client.reserve(context, ask.model, ask.prompt, ask.tools,
                                                    ask.max_tokens)
        except BudgetExceeded as error:
            grant.halt(error)
            return self._refuse(protocol, 402, str(error))
        options = body.get("stream_options")
        options = options if isinstance(options, dict) else {}
        if protocol is Protocol.CHAT and ask.stream and not options.get("include_usage"):
            # A chat stream carries its usage only when asked: ask, so the ledger gets it.
            body["stream_options"] = {**options, "include_usage": True}
            raw = json.dumps(body).encode()
        grant.calls += 1
        assert self._session is not None
        began, started = time.time(), time.monotonic()
        try:
            answer = await self._session.post(self._target(protocol, request), data=raw,
                                              headers=self._headers(request))
        except (aiohttp.ClientError, OSError) as error:
            self.client.release(reservation)
            return self._refuse(protocol, 502, f"the gateway could not be reached ({error}); "
                                "nothing was billed")
        try:
            if answer.status >= 400:
                return await self._failed(protocol, grant, reservation, answer, began)
            if ask.stream:
                return await self._stream(protocol, request, grant, reservation, ask, answer,
                                          started)
            return await self._plain(protocol, request, grant, reservation, ask, answer, started)
        finally:
            answer.release()

    async def _failed(self, protocol: Protocol, grant: Grant, reservation: Reservation | None,
                      answer: aiohttp.ClientResponse, began: float) -> web.StreamResponse:
        self.client.release(reservation)
        data = await answer.read()
        try:
            said: Any = json.loads(data)
        except ValueError:
            said = data.decode(errors="replace")
        failure = classify_status(answer.status, said, answer.headers)
        if failure.kind in (FailureKind.AUTH, FailureKind.BUDGET):
            # The same road as the built-in agent's calls: the hive pauses, on_pause is told
            # (unless a person resumed it after this call began).
            error = self.client.failure_error(failure, grant.context, began=began)
            grant.halt(error)
            return self._refuse(protocol, 403 if failure.kind is FailureKind.AUTH else 402,
                                str(error))
        return web.Response(body=data, status=answer.status,
                            headers=self._answer_headers(answer))

    async def _plain(self, protocol: Protocol, request: web.Request, grant: Grant,
                     reservation: Reservation | None, ask: Ask,
                     answer: aiohttp.ClientResponse, started: float) -> web.StreamResponse:
        try:
            data = await answer.read()
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            # The gateway may have done the work: book the most it can cost, as an estimate.
            self._meter(grant, reservation, ask, None, None, None, answer, started,
                        estimate=True)
            return self._refuse(protocol, 502, f"the gateway's answer was cut ({error})")
        reply = web.Response(body=data, status=answer.status,
                             headers=self._answer_headers(answer))
        try:
            parsed = json.loads(data)
        except ValueError:
            parsed = None
        said = plain_usage(protocol, parsed)
        try:
            await reply.prepare(request)
            await reply.write_eof()
        finally:
            # The answer is on its way: metering does not hold it up.
            self._meter(grant, reservation, ask, said.usage, said.model, said.cost, answer,
                        started, response_id=said.response_id, received=len(data))
        return reply

    async def _stream(self, protocol: Protocol, request: web.Request, grant: Grant,
                      reservation: Reservation | None, ask: Ask,
                      answer: aiohttp.ClientResponse, started: float) -> web.StreamResponse:
        reader = StreamReader(protocol)
        reply = web.StreamResponse(status=answer.status, headers=self._answer_headers(answer))
        try:
            await reply.prepare(request)
            async for chunk in answer.content.iter_any():
                await reply.write(chunk)
                reader.feed(chunk)
            await reply.write_eof()
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            # Cut by the gateway or left by the agent: meter what the gateway produced.
            log.info("a relayed stream was cut after %d characters: %s", reader.received,
                     type(error).__name__)
        finally:
            self._meter(grant, reservation, ask, reader.usage, reader.model, reader.cost,
                        answer, started, response_id=reader.response_id,
                        received=reader.received, estimate=not reader.finished)
        return reply

    # -- metering --------------------------------------------------------------------------------
    def _meter(self, grant: Grant, reservation: Reservation | None, ask: Ask,
               usage: Usage | None, model: str | None, reported: Any,
               answer: aiohttp.ClientResponse, started: float, *,
               response_id: str | None = None, received: int = 0,
               estimate: bool = False) -> None:
        """One ledger entry for one call: the answer's usage and cost; for an answer cut short
        or without usage, tokens estimated from what arrived (cost unknown, "estimate")."""
        headers: Mapping[str, str] = answer.headers
        used_model = model or ask.model
        rid = request_id(headers, response_id)
        if usage is not None and not estimate:
            cost, source = call_cost(headers, used_model, usage, self.client.prices, reported)
        else:
            prompt = usage.prompt_tokens if usage is not None and usage.prompt_tokens else \
                estimate_prompt_tokens(ask.prompt, ask.tools)
            usage, cost, source = Usage(prompt, received // 4), None, "estimate"
        self.client.meter(grant.context, reservation, model=used_model, usage=usage, cost=cost,
                          cost_source=source, request=rid, started=started)
