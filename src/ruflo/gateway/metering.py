"""Metering: what a gateway call cost, and its ledger entry.

Depends on the core model and the Store protocol. The cost comes from the gateway: LiteLLM's
`x-litellm-response-cost` header on a plain answer, `usage.cost` in the last chunk of a stream
(its headers leave before the cost is known); else from the price table in settings; else it
is unknown (None, cost_source "unknown") — never recorded as zero. A stream cut before its usage
came is recorded with tokens estimated from what arrived (cost_source "estimate", cost None).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ruflo.errors import ConfigError
from ruflo.gateway.base import CallContext, Usage
from ruflo.model import LedgerEntry
from ruflo.store.base import Store

COST_HEADER = "x-litellm-response-cost"
CALL_ID_HEADER = "x-litellm-call-id"


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens."""

    prompt: float
    completion: float

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.prompt + completion_tokens * self.completion) / 1_000_000


class PriceTable:
    """Model -> Price, from settings (`RUFLO_PRICES`). A provider prefix ("openai/gpt-4o") also
    finds the bare name."""

    def __init__(self, prices: Mapping[str, Mapping[str, float] | Price] | None = None) -> None:
        self._prices: dict[str, Price] = {}
        for model, entry in (prices or {}).items():
            if isinstance(entry, Price):
                self._prices[model] = entry
                continue
            try:
                price = Price(float(entry["prompt"]), float(entry["completion"]))
            except (KeyError, TypeError, ValueError):
                raise ConfigError(
                    f"price for {model!r} must be {{\"prompt\": USD per 1M tokens, "
                    f"\"completion\": USD per 1M tokens}}, got {entry!r}") from None
            if not all(math.isfinite(v) and v >= 0 for v in (price.prompt, price.completion)):
                raise ConfigError(f"price for {model!r} must be finite and not negative")
            self._prices[model] = price

    def __bool__(self) -> bool:
        return bool(self._prices)

    def get(self, model: str) -> Price | None:
        return self._prices.get(model) or self._prices.get(model.rsplit("/", 1)[-1])

    def dearest(self) -> Price | None:
        """The most expensive price in the table: the safe guess for a model it lacks."""
        if not self._prices:
            return None
        return Price(max(p.prompt for p in self._prices.values()),
                     max(p.completion for p in self._prices.values()))

    def cost(self, model: str, usage: Usage) -> float | None:
        price = self.get(model)
        return None if price is None else price.cost(usage.prompt_tokens, usage.completion_tokens)


def gateway_cost(raw: Any) -> float | None:
    """A cost the gateway reported (header text or a JSON number), if it is a real one."""
    if raw is None or isinstance(raw, bool):
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value >= 0 else None


def header_cost(headers: Mapping[str, str]) -> float | None:
    return gateway_cost(headers.get(COST_HEADER))


def call_cost(headers: Mapping[str, str], model: str, usage: Usage | None,
              prices: PriceTable, reported: Any = None) -> tuple[float | None, str]:
    """(cost, cost_source) for one call: the cost header, else `reported` (the `usage.cost` the
    gateway put in the answer), else the price table. Without usage, the table says nothing."""
    cost = header_cost(headers)
    if cost is None:
        cost = gateway_cost(reported)
    if cost is not None:
        return cost, "gateway"
    if usage is not None:
        cost = prices.cost(model, usage)
        if cost is not None:
            return cost, "price_table"
    return None, "unknown"


def request_id(headers: Mapping[str, str], response_id: Any) -> str | None:
    return headers.get(CALL_ID_HEADER) or (str(response_id) if response_id else None)


def record(store: Store, context: CallContext, *, model: str, usage: Usage,
           cost: float | None, cost_source: str, request: str | None) -> LedgerEntry:
    """Write the ledger entry for one call (the store adds it to the agent's counters)."""
    return store.add_ledger_entry(
        model=model, prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens, cost=cost, cost_source=cost_source,
        kind=context.kind, hive_id=context.hive_id, agent_id=context.agent_id,
        task_id=context.task_id, request_id=request)
