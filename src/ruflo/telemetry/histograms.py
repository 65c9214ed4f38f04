"""Per-model histograms of gateway calls in this process (latency, prompt and completion
tokens), for Prometheus `/metrics`: cumulative buckets, a sum and a count per model."""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
"""Seconds from the first request of a call (retries included) to its metered answer."""
TOKEN_BUCKETS = (16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0)


@dataclass(slots=True)
class Histogram:
    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    """Observations per bucket (not cumulative; the last slot is above every bound)."""
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, count) pairs as Prometheus shows them, ending with +Inf."""
        out, running = [], 0
        for bound, count in zip((*map(_number, self.bounds), "+Inf"), self.counts,
                                strict=True):
            running += count
            out.append((bound, running))
        return out


def _number(value: float) -> str:
    return f"{value:g}"


class ModelCalls:
    """Latency and token histograms by model, for the calls this process made."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_model: dict[str, tuple[Histogram, Histogram, Histogram]] = {}

    def observe(self, model: str, seconds: float, prompt_tokens: int,
                completion_tokens: int) -> None:
        with self._lock:
            entry = self._by_model.get(model)
            if entry is None:
                entry = self._by_model[model] = (Histogram(LATENCY_BUCKETS),
                                                 Histogram(TOKEN_BUCKETS),
                                                 Histogram(TOKEN_BUCKETS))
            entry[0].observe(seconds)
            entry[1].observe(prompt_tokens)
            entry[2].observe(completion_tokens)

    def snapshot(self) -> dict[str, tuple[Histogram, Histogram, Histogram]]:
        """model -> (latency, prompt tokens, completion tokens), copied."""
        with self._lock:
            return {model: (_copy(latency), _copy(prompt), _copy(completion))
                    for model, (latency, prompt, completion) in self._by_model.items()}


def _copy(histogram: Histogram) -> Histogram:
    return Histogram(histogram.bounds, list(histogram.counts), histogram.total, histogram.count)
