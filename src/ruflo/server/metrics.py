"""Prometheus text exposition for /metrics, written by hand (no client library).

Request counters live in process memory and cost a dict update per request; everything about
work (gateway calls, tokens, spend, tasks by state) is read from the store at scrape time, so
nothing runs between scrapes. Depends on the store protocol, and on engine/isolation.py for the
disk a live git hive's worktrees use (measured at scrape time, unfinished hives only).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable

from ruflo.engine.isolation import worktree_bytes
from ruflo.model import CostKind, HiveStatus, TaskState
from ruflo.store.base import Store
from ruflo.telemetry import MODEL_CALLS

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{name}="{_escape(value)}"' for name, value in pairs)
    return "{" + inner + "}" if inner else ""


class ServerMetrics:
    """What this server process has seen: requests by route and status, streams open."""

    def __init__(self) -> None:
        self.started_at = time.time()
        self.requests: defaultdict[tuple[str, str, str], int] = defaultdict(int)
        self.request_seconds: defaultdict[tuple[str, str], float] = defaultdict(float)
        self.chat_streams_open = 0
        self.event_streams_open = 0
        self.gateway_errors: defaultdict[str, int] = defaultdict(int)
        """Gateway failures the server met (model list, chat), by error class."""

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests[(method, route, str(status))] += 1
        self.request_seconds[(method, route)] += seconds

    def render(self, store: Store | None) -> str:
        """The exposition text. Reads the store for work figures when one is given."""
        out: list[str] = []

        def family(name: str, kind: str, text: str) -> None:
            _family(out, name, kind, text)

        family("ruflo_http_requests_total", "counter", "HTTP requests answered, by route and status.")
        for (method, route, status), count in sorted(self.requests.items()):
            labels = _labels((("method", method), ("route", route), ("status", status)))
            out.append(f"ruflo_http_requests_total{labels} {count}")
        family("ruflo_http_request_seconds_total", "counter",
               "Time spent answering HTTP requests, by route (divide by the request count).")
        for (method, route), seconds in sorted(self.request_seconds.items()):
            labels = _labels((("method", method), ("route", route)))
            out.append(f"ruflo_http_request_seconds_total{labels} {seconds:.6f}")
        family("ruflo_chat_streams_open", "gauge", "Chat answers being streamed now.")
        out.append(f"ruflo_chat_streams_open {self.chat_streams_open}")
        family("ruflo_event_streams_open", "gauge", "Hive event streams (SSE) open now.")
        out.append(f"ruflo_event_streams_open {self.event_streams_open}")
        family("ruflo_server_gateway_errors_total", "counter",
               "Gateway failures met by the server, by error class.")
        for error, count in sorted(self.gateway_errors.items()):
            out.append(f"ruflo_server_gateway_errors_total{_labels((('error', error),))} {count}")
        family("ruflo_process_start_time_seconds", "gauge", "Unix time the server started.")
        out.append(f"ruflo_process_start_time_seconds {self.started_at:.3f}")
        _render_model_calls(out)
        if store is not None:
            _render_work(store, out)
        out.append("")
        return "\n".join(out)



def _render_model_calls(out: list[str]) -> None:
    """Histograms of the gateway calls this process made, by model."""
    calls = MODEL_CALLS.snapshot()
    for index, (name, text) in enumerate((
            ("ruflo_model_call_seconds", "Gateway call latency (retries included), by model."),
            ("ruflo_model_prompt_tokens", "Prompt tokens of a gateway call, by model."),
            ("ruflo_model_completion_tokens", "Completion tokens of a gateway call, by model."))):
        _family(out, name, "histogram", text)
        for model, histograms in sorted(calls.items()):
            histogram = histograms[index]
            for le, count in histogram.cumulative():
                labels = _labels((("model", model), ("le", le)))
                out.append(f"{name}_bucket{labels} {count}")
            labels = _labels((("model", model),))
            out.append(f"{name}_sum{labels} {histogram.total:g}")
            out.append(f"{name}_count{labels} {histogram.count}")


def _family(out: list[str], name: str, kind: str, text: str) -> None:
    out.append(f"# HELP {name} {text}")
    out.append(f"# TYPE {name} {kind}")


def _render_work(store: Store, out: list[str]) -> None:
    """Work figures, read from the store at scrape time."""

    def family(name: str, kind: str, text: str) -> None:
        _family(out, name, kind, text)

    family("ruflo_gateway_calls_total", "counter", "Metered gateway calls, by purpose.")
    spends = {kind: store.spend(kind=kind) for kind in CostKind}
    for kind, spend in spends.items():
        out.append(f'ruflo_gateway_calls_total{{kind="{kind.value}"}} {spend.calls}')
    family("ruflo_tokens_total", "counter", "Prompt + completion tokens of metered calls.")
    for kind, spend in spends.items():
        out.append(f'ruflo_tokens_total{{kind="{kind.value}"}} {spend.tokens}')
    family("ruflo_spend_usd_total", "counter", "Known cost of metered calls, in USD.")
    for kind, spend in spends.items():
        out.append(f'ruflo_spend_usd_total{{kind="{kind.value}"}} {spend.cost:.6f}')
    family("ruflo_calls_unknown_cost_total", "counter",
           "Metered calls whose cost neither the gateway nor the price table knew.")
    for kind, spend in spends.items():
        out.append(f'ruflo_calls_unknown_cost_total{{kind="{kind.value}"}} '
                   f"{spend.unknown_cost_calls}")
    totals: dict[TaskState, int] = dict.fromkeys(TaskState, 0)
    hives_by_status: defaultdict[str, int] = defaultdict(int)
    open_by_hive: dict[str, int] = {}
    worktree_disk: dict[str, int] = {}
    offset = 0
    while True:
        page = store.list_hives(limit=500, offset=offset)
        for hive in page:
            hives_by_status[hive.status.value] += 1
            counts = store.count_tasks(hive.id)
            for state, count in counts.items():
                totals[TaskState(state)] += count
            if hive.status is HiveStatus.RUNNING:
                open_by_hive[hive.id] = counts.get(TaskState.OPEN, 0)
            if not hive.status.terminal and (used := worktree_bytes(hive)) is not None:
                worktree_disk[hive.id] = used
        if len(page) < 500:
            break
        offset += 500
    family("ruflo_tasks", "gauge", "Tasks on every board, by state.")
    for state, count in totals.items():
        out.append(f'ruflo_tasks{{state="{state.value}"}} {count}')
    family("ruflo_board_open_tasks", "gauge",
           "Open tasks on a running hive's board (what an autoscaler of `ruflo worker` reads).")
    for hive_id, count in sorted(open_by_hive.items()):
        out.append(f"ruflo_board_open_tasks{_labels((('hive', hive_id),))} {count}")
    family("ruflo_worktree_bytes", "gauge",
           "Disk used by an unfinished git hive's worktrees (integration and attempts), bytes.")
    for hive_id, used in sorted(worktree_disk.items()):
        out.append(f"ruflo_worktree_bytes{_labels((('hive', hive_id),))} {used}")
    family("ruflo_hives", "gauge", "Hives, by status.")
    for status, count in sorted(hives_by_status.items()):
        out.append(f'ruflo_hives{{status="{status}"}} {count}')
