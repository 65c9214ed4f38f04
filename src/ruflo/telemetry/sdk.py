"""Sets up the OpenTelemetry SDK from the OTEL_* variables: imported only when tracing is asked.

The SDK reads the standard variables itself (endpoint, headers, service name, resource
attributes, sampler); this module picks the exporter `OTEL_TRACES_EXPORTER` names (`otlp`, the
default, over HTTP/protobuf; or `console`) and batches spans to it.
"""

from __future__ import annotations

import os
from typing import Any

from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Tracer


def start() -> tuple[Any, Tracer, str]:
    """The provider, ruflo's tracer and the boot trace's description; ValueError for a setting
    ruflo cannot honour."""
    exporters = [name.strip().lower() for name in
                 os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if name.strip()]
    protocol = (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf")
    chosen: list[tuple[SpanExporter, str]] = []
    for name in exporters:
        if name == "otlp":
            if protocol != "http/protobuf":
                raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol} is not supported "
                                 f"(ruflo exports OTLP over http/protobuf)")
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            otlp = OTLPSpanExporter()
            chosen.append((otlp, f"OTLP http/protobuf to {otlp._endpoint}"))
        elif name == "console":
            chosen.append((ConsoleSpanExporter(), "the console"))
        else:
            raise ValueError(f"OTEL_TRACES_EXPORTER={name} is not one ruflo knows "
                             f"(otlp, console, none)")
    resource = Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or "ruflo"})
    provider = TracerProvider(resource=resource)
    for exporter, _ in chosen:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    where = ", ".join(text for _, text in chosen)
    service = resource.attributes.get(SERVICE_NAME)
    return provider, provider.get_tracer("ruflo"), f"{where}, service {service}"
