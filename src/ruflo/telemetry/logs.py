"""Log lines: plain by default, JSON lines with `RUFLO_LOG_FORMAT=json`.

A JSON line carries the time, level, logger, message, the hive, agent and task ids the engine
set around the current attempt (context variables, so concurrent attempts do not mix), and the
current trace and span ids when tracing is on. The standard library's logging with a small
formatter: the fields are fixed, and the light install gains no dependency.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

HIVE: ContextVar[str | None] = ContextVar("ruflo_hive", default=None)
AGENT: ContextVar[str | None] = ContextVar("ruflo_agent", default=None)
TASK: ContextVar[str | None] = ContextVar("ruflo_task", default=None)

FORMAT_VAR = "RUFLO_LOG_FORMAT"


def json_logs() -> bool:
    return os.environ.get(FORMAT_VAR, "").strip().lower() == "json"


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, var in (("hive_id", HIVE), ("agent_id", AGENT), ("task_id", TASK)):
            value = var.get()
            if value is not None:
                line[key] = value
        if "opentelemetry" in sys.modules:
            from opentelemetry import trace

            context = trace.get_current_span().get_span_context()
            if context.is_valid:
                line["trace_id"] = f"{context.trace_id:032x}"
                line["span_id"] = f"{context.span_id:016x}"
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure(level: int, plain_format: str) -> None:
    """Set up the root logger like `logging.basicConfig` (once), as JSON lines when
    `RUFLO_LOG_FORMAT=json`, else in `plain_format`. Another value: plain, with one warning."""
    wanted = os.environ.get(FORMAT_VAR, "").strip().lower()
    if wanted == "json":
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        logging.basicConfig(level=level, handlers=[handler])
    else:
        logging.basicConfig(level=level, format=plain_format)
        if wanted not in ("", "plain"):
            logging.getLogger(__name__).warning(
                "%s=%r is not a log format (plain or json): logging plain", FORMAT_VAR, wanted)
