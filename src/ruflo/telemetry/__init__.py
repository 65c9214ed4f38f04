"""Telemetry: OpenTelemetry traces when the standard OTEL_* variables ask for them.

The core layer's seam for tracing; it imports nothing of ruflo, so every layer may call it.
Tracing is on when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) is set or
`OTEL_TRACES_EXPORTER` names an exporter (`otlp`, `console`), and `OTEL_SDK_DISABLED` is not
true. Off, the OpenTelemetry SDK is never imported and every call here answers a constant
(`NOOP`, an empty header map) without allocating. On without the `otel` extra, one warning line
says so and ruflo runs untraced.

One hive is one trace: `hive_traceparent` opens the trace when the hive is stored (the hive's
config keeps its `traceparent`), and every process that works the hive (the CLI, a server,
`ruflo worker`s) parents its spans on it through `attempt`. Model calls are spans in the GenAI
semantic conventions (`model_call`, `metered`); prompt and completion text are recorded only
when `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Coroutine, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from ruflo.telemetry import logs
from ruflo.telemetry.histograms import ModelCalls

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

__all__ = [
    "MODEL_CALLS",
    "NOOP",
    "attempt",
    "capture_content",
    "describe",
    "headers",
    "hive_traceparent",
    "metered",
    "model_call",
    "relay_call",
    "span",
    "traceparent",
    "tracing_on",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

TRACEPARENT = "traceparent"
"""The key of a hive's config that holds its trace context (W3C trace-context text)."""
CAPTURE_VAR = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_NO_HEADERS: Mapping[str, str] = {}

MODEL_CALLS = ModelCalls()
"""This process's gateway calls by model (latency, tokens), for `/metrics`."""


class _NoopSpan:
    """What a span is when tracing is off: every call does nothing."""

    __slots__ = ()

    def set(self, key: str, value: Any) -> None:
        pass

    def __enter__(self) -> _NoopSpan:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


NOOP = _NoopSpan()
"""The one span (and its own context manager) handed out while tracing is off."""


class _Span:
    """A recording span: `set` skips None (OpenTelemetry refuses it as an attribute value)."""

    __slots__ = ("span",)

    def __init__(self, span: Span) -> None:
        self.span = span

    def set(self, key: str, value: Any) -> None:
        if value is not None:
            self.span.set_attribute(key, value)


class _State:
    """The process's tracer, set up on first use from the environment."""

    settled = False
    tracer: Tracer | None = None
    provider: Any = None
    note = "off (no OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_TRACES_EXPORTER)"


def asked(env: Mapping[str, str] | None = None) -> bool:
    """Whether the OTEL_* variables ask for traces."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or
                env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def _settle() -> Tracer | None:
    if _State.settled:
        return _State.tracer
    _State.settled = True
    if not asked():
        return None
    try:
        from ruflo.telemetry import sdk

        _State.provider, _State.tracer, _State.note = sdk.start()
    except ImportError as error:
        _State.note = (f"asked by the OTEL_* variables, but the OpenTelemetry SDK is missing "
                       f"({error.name}): pip install 'ruflo[otel]'; running untraced")
        log.warning("tracing %s", _State.note)
    except ValueError as error:
        _State.note = f"asked by the OTEL_* variables, but {error}; running untraced"
        log.warning("tracing %s", _State.note)
    return _State.tracer


def tracing_on() -> bool:
    return (_State.tracer if _State.settled else _settle()) is not None


def describe() -> str:
    """The boot trace's line: where traces go, or why there are none."""
    _settle()
    return f"tracing: {_State.note}"


def reset() -> None:
    """Forget the set-up tracer (flushing it): the next call reads the environment again."""
    if _State.provider is not None:
        _State.provider.shutdown()
    _State.settled, _State.tracer, _State.provider = False, None, None


def flush() -> None:
    """Send the spans ended so far (a process about to exit, a test about to look)."""
    if _State.provider is not None:
        _State.provider.force_flush()


def capture_content() -> bool:
    """Whether prompt and completion text may go into spans (opt-in, never by default)."""
    return os.environ.get(CAPTURE_VAR, "").strip().lower() == "true"


def span(name: str, attributes: Mapping[str, Any] | None = None) -> AbstractContextManager[Any]:
    """A child span of the current one (`NOOP` when off). Attributes with value None are left
    out."""
    tracer = _State.tracer if _State.settled else _settle()
    if tracer is None:
        return NOOP
    return _started(tracer, name, attributes, kind=None)


@contextmanager
def _started(tracer: Tracer, name: str, attributes: Mapping[str, Any] | None,
             kind: Any) -> Iterator[_Span]:
    from opentelemetry.trace import SpanKind, Status, StatusCode

    clean = {k: v for k, v in (attributes or {}).items() if v is not None}
    with tracer.start_as_current_span(name, kind=kind or SpanKind.INTERNAL, attributes=clean,
                                      record_exception=False,
                                      set_status_on_exception=False) as current:
        try:
            yield _Span(current)
        except BaseException as error:
            # A cancelled attempt (a pause) is not an error of the span's work.
            if not isinstance(error, GeneratorExit) and type(error).__name__ != "CancelledError":
                current.set_status(Status(StatusCode.ERROR, str(error)[:300]))
                current.set_attribute("error.type", type(error).__name__)
            else:
                current.set_attribute("ruflo.cancelled", True)
            raise


def hive_traceparent(hive_id: str, name: str, mode: str) -> str | None:
    """Open a hive's trace: a root span `ruflo.hive` (ended at once: a hive outlives any one
    process) whose context every process working the hive joins. None when off."""
    tracer = _State.tracer if _State.settled else _settle()
    if tracer is None:
        return None
    from opentelemetry import context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    with tracer.start_as_current_span(
            f"hive {name}", context=context.Context(),
            attributes={"ruflo.hive.id": hive_id, "ruflo.hive.mode": mode}):
        TraceContextTextMapPropagator().inject(carrier)
    return carrier.get(TRACEPARENT)


@contextmanager
def joined(traceparent: str | None) -> Iterator[None]:
    """Make the hive's stored trace context the current one (nothing when off or absent)."""
    if not traceparent or not tracing_on():
        yield
        return
    from opentelemetry import context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    token = context.attach(TraceContextTextMapPropagator().extract({TRACEPARENT: traceparent}))
    try:
        yield
    finally:
        context.detach(token)


def hive_span(traceparent: str | None, name: str,
              attributes: Mapping[str, Any] | None = None) -> AbstractContextManager[Any]:
    """A span of the hive whose stored trace context is `traceparent`, wherever the current
    context is (a claim, a decided approval). `NOOP` when off."""
    tracer = _State.tracer if _State.settled else _settle()
    if tracer is None:
        return NOOP
    return _in_hive(tracer, traceparent, name, attributes)


@contextmanager
def _in_hive(tracer: Tracer, traceparent: str | None, name: str,
             attributes: Mapping[str, Any] | None) -> Iterator[_Span]:
    with joined(traceparent), _started(tracer, name, attributes, kind=None) as current:
        yield current


def mark(traceparent: str | None, name: str, attributes: Mapping[str, Any]) -> None:
    """A moment of the hive (an approval decided) as a short span of its trace."""
    with hive_span(traceparent, name, attributes):
        pass


def attempt(work: Coroutine[Any, Any, T], *, hive_id: str, traceparent: str | None,
            agent_id: str, agent_name: str, task_id: str,
            title: str) -> Coroutine[Any, Any, T]:
    """An agent's attempt at a task, as the engine starts it: with tracing on, a span joined
    to the hive's trace; with JSON logs, the ids the log lines carry. Neither: `work` itself."""
    if not logs.json_logs() and not tracing_on():
        return work
    return _attempt(work, hive_id, traceparent, agent_id, agent_name, task_id, title)


async def _attempt(work: Coroutine[Any, Any, T], hive_id: str, traceparent: str | None,
                   agent_id: str, agent_name: str, task_id: str, title: str) -> T:
    logs.HIVE.set(hive_id)
    logs.AGENT.set(agent_id)
    logs.TASK.set(task_id)
    with joined(traceparent), span(f"attempt {title[:60]}", {
            "ruflo.hive.id": hive_id, "ruflo.agent.id": agent_id,
            "gen_ai.agent.name": agent_name, "ruflo.task.id": task_id}):
        return await work


def model_call(operation: str, model: str, hive_id: str | None, agent_id: str | None,
               task_id: str | None, kind: str) -> AbstractContextManager[Any]:
    """A gateway call's span in the GenAI conventions (`NOOP` when off)."""
    tracer = _State.tracer if _State.settled else _settle()
    if tracer is None:
        return NOOP
    from opentelemetry.trace import SpanKind

    provider = model.split("/", 1)[0] if "/" in model else "openai"
    return _started(tracer, f"{operation} {model}", {
        "gen_ai.operation.name": operation, "gen_ai.provider.name": provider,
        "gen_ai.system": provider, "gen_ai.request.model": model,
        "ruflo.hive.id": hive_id, "ruflo.agent.id": agent_id, "ruflo.task.id": task_id,
        "ruflo.cost.kind": kind}, kind=SpanKind.CLIENT)


def relay_call(traceparent: str | None, protocol: str, model: str, hive_id: str | None,
               agent_id: str | None, task_id: str | None,
               kind: str) -> AbstractContextManager[Any]:
    """An outside agent's call through the model relay: a `model_call` span joined to the
    context its token was minted in (the attempt's, else the hive's), whatever the current
    context is (the relay's request handler). `NOOP` when off."""
    tracer = _State.tracer if _State.settled else _settle()
    if tracer is None:
        return NOOP
    return _relayed(traceparent, protocol, model, hive_id, agent_id, task_id, kind)


@contextmanager
def _relayed(traceparent: str | None, protocol: str, model: str, hive_id: str | None,
             agent_id: str | None, task_id: str | None, kind: str) -> Iterator[Any]:
    with joined(traceparent), model_call("chat", model, hive_id, agent_id, task_id,
                                         kind) as current:
        current.set("ruflo.relay.protocol", protocol)
        yield current


def traceparent() -> str | None:
    """The current span's W3C trace context (where a later span is to join), None when off."""
    return headers().get(TRACEPARENT)


def metered(model: str, prompt_tokens: int, completion_tokens: int, cost: float | None,
            cost_source: str, request_id: str | None) -> None:
    """What the ledger got for the current model call, on its span (nothing when off)."""
    if _State.tracer is None:
        return
    from opentelemetry import trace

    current = trace.get_current_span()
    if not current.is_recording() or "gen_ai.operation.name" not in (
            getattr(current, "attributes", None) or {}):
        return  # a call without a span of its own (a stream): not the caller's span
    current.set_attribute("gen_ai.response.model", model)
    current.set_attribute("gen_ai.usage.input_tokens", prompt_tokens)
    current.set_attribute("gen_ai.usage.output_tokens", completion_tokens)
    current.set_attribute("ruflo.cost_source", cost_source)
    if cost is not None:
        current.set_attribute("ruflo.cost", cost)
    if request_id:
        current.set_attribute("gen_ai.response.id", request_id)


def content(key: str, text: Callable[[], str]) -> None:
    """Prompt or completion text on the current span, only when the user opted in."""
    if _State.tracer is None or not capture_content():
        return
    from opentelemetry import trace

    trace.get_current_span().set_attribute(key, text())


def headers() -> Mapping[str, str]:
    """The `traceparent` header for an outgoing call (LiteLLM passes it on); empty when off."""
    if _State.tracer is None:
        return _NO_HEADERS
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier
