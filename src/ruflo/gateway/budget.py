"""Budgets: per-hive and per-agent caps in tokens and/or money, enforced around each gateway call.

Depends on the core model, the Store protocol and the price table. Before a call, `reserve()`
books its maximum cost (estimated prompt + max_tokens, priced when a price is known; a call that
sends no max_tokens books `completion_reservation`, which does not bound it, so agents always
send one); after it, `settle()` replaces the booking with the real cost. A call is admitted only while spent + booked
< cap, so however many callers run at once the recorded spend passes a cap by at most one
reservation; a caller blocked only by other callers' bookings waits for them to settle instead
of failing. Spend is the ledger's, read from the store's running totals before each call is
admitted: a restart does not reset it, and calls settled by other processes (the workers of one
hive, the server) count. Warns once at 80% (`budget_warning` event + callback); stops at 100%
(`BudgetExceeded`, event `budget_exceeded`). Calls of unknown cost are priced from the price
table (the model's price, or the dearest one) or from the rate the gateway charged earlier, and
reported (`budget_unknown_cost`); while nothing can price a call, a money-capped account admits
one call at a time. Bookings live in this process (one event loop, one Budgets), so when several
processes spend from one cap (a hive's workers) each sees the others' settled calls but not
their calls in flight: the cap is then passed by at most one reservation per call in flight
anywhere.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

from ruflo.errors import BudgetExceeded, NotFound
from ruflo.event_kinds import EventKind
from ruflo.gateway.base import CallContext, ChatMessage, Usage
from ruflo.gateway.metering import Price, PriceTable
from ruflo.model import JSON, Budget
from ruflo.store.base import Store

log = logging.getLogger(__name__)

CHARS_PER_TOKEN_BOUND = 3
"""Prompt size guess for reservations: fewer characters per token than real text has, so the
guess errs high (no tokenizer: it would download its tables at first use)."""
TOKENS_PER_MESSAGE = 4


@dataclass(frozen=True, slots=True)
class BudgetWarning:
    """A budget passed its warning threshold (80% by default)."""

    scope: str
    """"hive" or "agent"."""
    scope_id: str
    hive_id: str | None
    fraction: float
    """Share of the tighter cap already spent."""
    spent_tokens: int
    spent_cost: float
    budget: Budget


@dataclass(slots=True)
class Account:
    """What one hive or agent has spent and has booked for calls in flight."""

    scope: str
    scope_id: str
    hive_id: str | None
    budget: Budget
    spent_tokens: int = 0
    spent_cost: float = 0.0
    """Includes the estimated cost of unknown-cost calls (see `estimated_cost`)."""
    reserved_tokens: int = 0
    reserved_cost: float = 0.0
    unpriced: int = 0
    """Calls in flight whose maximum cost nothing could price (no price, nothing learned)."""
    unknown_cost_calls: int = 0
    estimated_cost: float = 0.0
    uncounted_calls: int = 0
    """Unknown-cost calls that nothing could price: invisible to a money cap, reported."""
    warned: bool = False
    stopped: bool = False
    unknown_reported: bool = False

    def spent_fraction(self) -> float:
        fractions = [0.0]
        if self.budget.max_tokens is not None:
            fractions.append(self.spent_tokens / self.budget.max_tokens
                             if self.budget.max_tokens > 0 else math.inf)
        if self.budget.max_cost is not None:
            fractions.append(self.spent_cost / self.budget.max_cost
                             if self.budget.max_cost > 0 else math.inf)
        return max(fractions)

    def spent_out(self) -> bool:
        """The cap is reached by real spend: stop."""
        b = self.budget
        return ((b.max_tokens is not None and self.spent_tokens >= b.max_tokens)
                or (b.max_cost is not None and self.spent_cost >= b.max_cost))

    def booked_out(self) -> bool:
        """Spend plus bookings reach the cap: no room for another booking right now."""
        b = self.budget
        return ((b.max_tokens is not None
                 and self.spent_tokens + self.reserved_tokens >= b.max_tokens)
                or (b.max_cost is not None
                    and (self.unpriced > 0
                         or self.spent_cost + self.reserved_cost >= b.max_cost)))

    def describe_cap(self) -> str:
        parts = []
        if self.budget.max_tokens is not None:
            parts.append(f"{self.spent_tokens}/{self.budget.max_tokens} tokens")
        if self.budget.max_cost is not None:
            parts.append(f"${self.spent_cost:.4f}/${self.budget.max_cost:.4f}")
        return ", ".join(parts)

    def snapshot(self) -> JSON:
        return {"scope": self.scope, "scope_id": self.scope_id,
                "max_tokens": self.budget.max_tokens, "max_cost": self.budget.max_cost,
                "spent_tokens": self.spent_tokens, "spent_cost": self.spent_cost,
                "reserved_tokens": self.reserved_tokens, "reserved_cost": self.reserved_cost,
                "unknown_cost_calls": self.unknown_cost_calls,
                "estimated_cost": self.estimated_cost, "uncounted_calls": self.uncounted_calls,
                "fraction": self.spent_fraction()}


@dataclass(slots=True)
class Reservation:
    """The booking for one call in flight."""

    accounts: tuple[Account, ...]
    model: str
    tokens: int
    cost: float
    priced: bool = True
    """False when no price was known: money-capped accounts then admit one call at a time."""
    done: bool = False


def estimate_prompt_tokens(messages: Sequence[ChatMessage],
                           tools: Sequence[JSON] | None = None) -> int:
    """A high guess of the prompt's tokens, from its size."""
    chars = 0
    for message in messages:
        content = message.get("content")
        chars += len(content) if isinstance(content, str) else len(json.dumps(content or ""))
        if message.get("tool_calls"):
            chars += len(json.dumps(message["tool_calls"]))
    if tools:
        chars += len(json.dumps(list(tools)))
    return math.ceil(chars / CHARS_PER_TOKEN_BOUND) + TOKENS_PER_MESSAGE * len(messages)


class Budgets:
    """Reserve-then-settle accounting of hive and agent budgets for one event loop."""

    def __init__(self, store: Store, prices: PriceTable | None = None, *, warn_at: float = 0.8,
                 completion_reservation: int = 1024,
                 on_warning: Callable[[BudgetWarning], None] | None = None) -> None:
        self.store = store
        self.prices = prices or PriceTable()
        self.warn_at = warn_at
        self.completion_reservation = completion_reservation
        """Completion tokens booked for a call that sets no max_tokens."""
        self.on_warning = on_warning
        self._accounts: dict[tuple[str, str], Account] = {}
        self._learned: dict[str, float] = {}
        self._changed = asyncio.Event()

    # -- accounts ----------------------------------------------------------------------------
    def account(self, scope: str, scope_id: str) -> Account:
        """The account of a hive or agent, loaded from the store on first use."""
        key = (scope, scope_id)
        account = self._accounts.get(key)
        if account is None:
            account = self._load(scope, scope_id)
            self._accounts[key] = account
        return account

    def _load(self, scope: str, scope_id: str) -> Account:
        hive_id: str | None
        try:
            if scope == "agent":
                agent = self.store.get_agent(scope_id)
                budget, hive_id = agent.budget, agent.hive_id
            else:
                budget, hive_id = self.store.get_hive(scope_id).budget, scope_id
        except NotFound:
            budget, hive_id = Budget(), (scope_id if scope == "hive" else None)
        account = Account(scope, scope_id, hive_id, budget)
        if budget.unlimited:
            return account
        self._sync(account)
        return account

    def _sync(self, account: Account) -> None:
        """Set the account's spend from the store (the ledger's running totals): every call
        settled so far, by any process (this one's own calls are in it: a call is metered before
        it is settled)."""
        scope, scope_id = account.scope, account.scope_id
        spend = (self.store.spend(agent_id=scope_id) if scope == "agent"
                 else self.store.spend(hive_id=scope_id))
        account.spent_tokens, account.spent_cost = spend.tokens, spend.cost
        account.unknown_cost_calls = spend.unknown_cost_calls
        account.estimated_cost, account.uncounted_calls = 0.0, 0
        if spend.unknown_cost_calls and account.budget.max_cost is not None:
            entries = (self.store.ledger(agent_id=scope_id) if scope == "agent"
                       else self.store.ledger(hive_id=scope_id))
            for entry in entries:
                if entry.cost is None:
                    estimate = self._estimate(entry.model, entry.prompt_tokens,
                                              entry.completion_tokens)
                    if estimate is None:
                        account.uncounted_calls += 1
                    else:
                        account.estimated_cost += estimate
                        account.spent_cost += estimate
        if account.spent_fraction() >= self.warn_at:
            account.warned = True  # whoever passed the mark (here or elsewhere) warned then

    def refresh(self, *, hive_id: str | None = None, agent_id: str | None = None) -> None:
        """Reload accounts from the store (after a budget was changed). An account is reloaded
        in place: the calls in flight hold it, keep their bookings in it and settle into it,
        under the new cap."""
        for scope, scope_id in (("hive", hive_id), ("agent", agent_id)):
            if scope_id is None:
                continue
            account = self._accounts.get((scope, scope_id))
            if account is None:
                self.account(scope, scope_id)
                continue
            fresh = self._load(scope, scope_id)
            for name in (f.name for f in fields(Account)):
                if name not in ("reserved_tokens", "reserved_cost", "unpriced"):
                    setattr(account, name, getattr(fresh, name))
        self._wake()

    def snapshot(self, *, hive_id: str | None = None, agent_id: str | None = None) -> list[JSON]:
        return [self.account(scope, scope_id).snapshot()
                for scope, scope_id in (("hive", hive_id), ("agent", agent_id)) if scope_id]

    def _accounts_for(self, context: CallContext) -> tuple[Account, ...]:
        found = []
        if context.hive_id:
            found.append(self.account("hive", context.hive_id))
        if context.agent_id:
            found.append(self.account("agent", context.agent_id))
        return tuple(a for a in found if not a.budget.unlimited)

    # -- pricing -----------------------------------------------------------------------------
    def _rate(self, model: str) -> Price | None:
        price = self.prices.get(model)
        if price is not None:
            return price
        learned = self._learned.get(model)
        if learned is not None:
            return Price(learned, learned)
        return self.prices.dearest()

    def _estimate(self, model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
        rate = self._rate(model)
        return None if rate is None else rate.cost(prompt_tokens, completion_tokens)

    # -- the call cycle ------------------------------------------------------------------------
    async def reserve(self, context: CallContext, *, model: str,
                      messages: Sequence[ChatMessage], tools: Sequence[JSON] | None = None,
                      max_tokens: int | None = None) -> Reservation:
        """Book the call's maximum cost, or raise BudgetExceeded when a cap is reached.

        Waits while the caps are full only because of other calls in flight."""
        accounts = self._accounts_for(context)
        prompt = estimate_prompt_tokens(messages, tools)
        completion = max_tokens if max_tokens is not None else self.completion_reservation
        rate = self._rate(model)
        cost = rate.cost(prompt, completion) if rate is not None else 0.0
        while True:
            for account in accounts:
                self._sync(account)
                if account.spent_out():
                    self._stop(account)
            if not any(a.booked_out() for a in accounts):
                break
            changed = self._changed
            await changed.wait()
        for account in accounts:
            account.reserved_tokens += prompt + completion
            account.reserved_cost += cost
            if rate is None and account.budget.max_cost is not None:
                account.unpriced += 1
        return Reservation(accounts, model, prompt + completion, cost, priced=rate is not None)

    def release(self, reservation: Reservation) -> None:
        """Drop the booking of a call that failed before any answer came back."""
        if reservation.done:
            return
        reservation.done = True
        for account in reservation.accounts:
            account.reserved_tokens -= reservation.tokens
            account.reserved_cost -= reservation.cost
            if not reservation.priced and account.budget.max_cost is not None:
                account.unpriced -= 1
        self._wake()

    def learn(self, model: str, usage: Usage, cost: float | None, cost_source: str) -> None:
        """Remember what the gateway charged per token, to price later calls of unknown cost."""
        if cost_source == "gateway" and cost is not None and usage.total_tokens > 0:
            rate = cost / usage.total_tokens * 1_000_000
            self._learned[model] = max(rate, self._learned.get(model, 0.0))

    def settle(self, reservation: Reservation, usage: Usage, cost: float | None,
               cost_source: str) -> None:
        """Replace the booking with what the call really spent."""
        if reservation.done:
            return
        self.release(reservation)
        self.learn(reservation.model, usage, cost, cost_source)
        charged = cost
        if cost is None:
            charged = self._estimate(reservation.model, usage.prompt_tokens,
                                     usage.completion_tokens)
        for account in reservation.accounts:
            account.spent_tokens += usage.total_tokens
            account.spent_cost += charged or 0.0
            if cost is None:
                account.unknown_cost_calls += 1
                if charged is None:
                    account.uncounted_calls += 1
                else:
                    account.estimated_cost += charged
                if account.budget.max_cost is not None:
                    self._report_unknown(account, reservation.model, charged)
            if not account.warned and account.spent_fraction() >= self.warn_at:
                self._warn(account)

    # -- events --------------------------------------------------------------------------------
    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _event(self, account: Account, kind: EventKind, data: JSON) -> None:
        if account.hive_id is None:
            return
        try:
            self.store.append_event(account.hive_id, kind,
                                    agent_id=account.scope_id if account.scope == "agent"
                                    else None, data={**account.snapshot(), **data})
        except NotFound:
            log.warning("budget event %s for unknown hive %s not recorded", kind, account.hive_id)

    def _warn(self, account: Account) -> None:
        account.warned = True
        warning = BudgetWarning(account.scope, account.scope_id, account.hive_id,
                                account.spent_fraction(), account.spent_tokens,
                                account.spent_cost, account.budget)
        log.warning("%s %s has spent %.0f%% of its budget (%s)", account.scope,
                    account.scope_id, warning.fraction * 100, account.describe_cap())
        self._event(account, EventKind.BUDGET_WARNING, {})
        if self.on_warning is not None:
            self.on_warning(warning)

    def _stop(self, account: Account) -> None:
        if not account.stopped:
            account.stopped = True
            self._event(account, EventKind.BUDGET_EXCEEDED, {})
        raise BudgetExceeded(
            f"the {account.scope} {account.scope_id} has spent its budget "
            f"({account.describe_cap()}); ruflo did not call the gateway and nothing was lost; "
            f"raise the budget (or approve an override), then resume",
            scope=account.scope, scope_id=account.scope_id)

    def _report_unknown(self, account: Account, model: str, charged: float | None) -> None:
        if charged is None:
            log.warning("a call to %s of unknown cost could not be priced; %s %s's money cap "
                        "cannot see it (set RUFLO_PRICES)", model, account.scope,
                        account.scope_id)
        if not account.unknown_reported:
            account.unknown_reported = True
            self._event(account, EventKind.BUDGET_UNKNOWN_COST,
                        {"model": model, "counted": charged is not None})
