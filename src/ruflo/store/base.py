"""The Store protocol: the only road to disk or database, as one role-sized protocol per kind of
data (HiveStore, BoardStore, EventStore, ...) and `Store`, all of them in one. Code that needs one
role asks for that role. Depends on the core model only.

Every method is atomic on its own. Mutations that change a hive's board also append their event
in the same transaction, so the event log and the board never disagree. `transaction()` groups
several calls into one atomic unit (nesting is allowed; the outermost commits).

Methods are synchronous: on SQLite a call takes tens of microseconds, and async callers may
call them directly or through `asyncio.to_thread` for long ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from ruflo.model import (
    JSON,
    Agent,
    Approval,
    ApprovalStatus,
    AttemptJournal,
    Conversation,
    CostKind,
    Event,
    Hive,
    HiveDriver,
    HiveStatus,
    JournalEntryKind,
    LedgerEntry,
    MemoryEntry,
    Message,
    Task,
    TaskOutline,
    TaskState,
)

EventListener = Callable[[Event], None]
"""Called after commit, in the committing thread, for each event this process appended."""

Wake = Callable[[str | None], None]
"""Called with a hive's id when its event log grew, or None when wake-ups may have been missed."""


class Listening(Protocol):
    """A running subscription to wake-ups (see `EventStore.listen`)."""

    def stop(self) -> None:
        """Stop calling back; returns once no call is in flight (from another thread)."""


class Spend:
    """Totals of metered calls for a scope (hive or agent)."""

    __slots__ = ("calls", "cost", "tokens", "unknown_cost_calls")

    def __init__(self, tokens: int = 0, cost: float = 0.0, calls: int = 0,
                 unknown_cost_calls: int = 0) -> None:
        self.tokens = tokens
        self.cost = cost
        self.calls = calls
        self.unknown_cost_calls = unknown_cost_calls
        """Calls whose cost nobody knew; their cost is not in `cost` (never counted as zero)."""

    def __repr__(self) -> str:
        return (f"Spend(tokens={self.tokens}, cost={self.cost:.6f}, calls={self.calls}, "
                f"unknown_cost_calls={self.unknown_cost_calls})")


@runtime_checkable
class Lifecycle(Protocol):
    """Opening facts, health, transactions and commit listeners: what every role shares."""

    url: str
    """Where the data lives, password masked (for the boot trace)."""
    dialect: str
    """"sqlite" or "postgresql"."""

    def close(self) -> None: ...
    def ping(self) -> None:
        """Raise StoreUnreachable if the store can't answer (used by /readyz)."""
    def check_writes(self) -> None:
        """Raise StoreFull while writes fail for want of space (used by /readyz): free until a
        write fails so, then a small probe write decides."""
    def transaction(self) -> AbstractContextManager[None]: ...
    def add_listener(self, listener: EventListener) -> None: ...
    def remove_listener(self, listener: EventListener) -> None: ...


@runtime_checkable
class HiveStore(Protocol):
    """Hives and their agents."""

    def create_hive(self, hive: Hive, agents: Sequence[Agent] = (),
                    tasks: Sequence[Task] = ()) -> Hive:
        """Store a new hive with its agents and first tasks; events: hive_created, agent_added,
        task_posted."""
    def get_hive(self, hive_id: str) -> Hive:
        """Raise NotFound when absent."""
    def list_hives(self, *, owner: str | None = None, limit: int = 100,
                   offset: int = 0) -> list[Hive]:
        """Newest first; only `owner`'s hives when given."""
    def set_hive_status(self, hive_id: str, status: HiveStatus, *,
                        reason: str | None = None) -> Hive:
        """Event: hive_<status> (hive_running on resume) with the reason."""
    def update_hive(self, hive_id: str, **fields: Any) -> Hive: ...

    def add_agent(self, agent: Agent) -> Agent: ...
    def get_agent(self, agent_id: str) -> Agent: ...
    def list_agents(self, hive_id: str) -> list[Agent]: ...
    def update_agent(self, agent_id: str, **fields: Any) -> Agent:
        """Change plain fields (status, thresholds, current_task, heartbeat_at, ...); no event."""


@runtime_checkable
class BoardStore(Protocol):
    """The board: tasks, dependencies, claims and leases."""

    def post_tasks(self, hive_id: str, tasks: Sequence[Task], *,
                   agent_id: str | None = None) -> list[Task]:
        """Add tasks (event task_posted each). Unknown dependencies raise PolicyError."""
    def get_task(self, task_id: str) -> Task: ...
    def list_tasks(self, hive_id: str, *, states: Sequence[TaskState] | None = None,
                   assignee: str | None = None, limit: int | None = None,
                   offset: int = 0) -> list[Task]: ...
    def policy_board(self, hive_id: str) -> list[TaskOutline]:
        """What a rebuilt policy needs of the board: the unfinished tasks (posting order), then
        the finished tasks they depend on; only the columns a decision reads."""
    def count_tasks(self, hive_id: str) -> dict[TaskState, int]: ...
    def claim_task(self, hive_id: str, agent_id: str, *, lease_seconds: float,
                   task_id: str | None = None, alternatives: Sequence[str] = (),
                   now: datetime | None = None) -> Task | None:
        """Atomically claim `task_id` (or the most urgent ready open task) for the agent; if
        it is taken, the first of `alternatives` that is still claimable.

        Ready means open with every dependency done. Compare-and-set on SQLite,
        `FOR UPDATE SKIP LOCKED` on Postgres: of many concurrent claimers exactly one wins;
        the others get None (or one of their alternatives). Event: task_claimed. Increments
        `attempts`.
        """
    def renew_lease(self, task_id: str, agent_id: str, *, lease_seconds: float,
                    now: datetime | None = None) -> bool:
        """Extend the lease if the agent still holds the claim; False when it lost it."""
    def finish_task(self, task_id: str, agent_id: str | None, *, state: TaskState,
                    result: str | None = None, verified: bool | None = None,
                    data: JSON | None = None) -> Task:
        """Move a claimed task to done/failed (or any task to cancelled when agent_id is None).

        Raises Conflict when the agent no longer holds the claim: a task is finished once.
        Event: task_done / task_failed / task_cancelled.
        """
    def release_task(self, task_id: str, agent_id: str, *, reason: str) -> Task:
        """Give a claim back: the task is open again. Event: task_released."""
    def update_task(self, task_id: str, **fields: Any) -> Task:
        """Change plain fields (assignee, blocked_on, state for block/unblock...)."""
    def expire_leases(self, *, hive_id: str | None = None,
                      now: datetime | None = None) -> list[Task]:
        """Reopen claimed tasks whose lease has passed. Event: lease_expired each."""
    def next_lease_expiry(self, hive_id: str | None = None) -> datetime | None: ...


@runtime_checkable
class EventStore(Protocol):
    """Each hive's event log, and wake-ups when it grows."""

    def append_event(self, hive_id: str, kind: str, *, agent_id: str | None = None,
                     task_id: str | None = None, data: JSON | None = None) -> Event: ...
    def events(self, hive_id: str, *, after_seq: int = 0, limit: int | None = None,
               kinds: Sequence[str] | None = None) -> list[Event]: ...
    def last_seq(self, hive_id: str) -> int: ...
    def listen(self, on_notify: Wake, *, hives: Iterable[str] | None = None) -> Listening:
        """Call `on_notify(hive_id)` soon after events of a hive (of `hives`, or any) are
        committed, and `on_notify(None)` when notifications may have been missed (at start and
        after every reconnect): look at the log then. Wake-ups are hints that may be merged or
        lost; a follower still polls now and then.

        Postgres: LISTEN on a connection of its own, in a thread of its own (`on_notify` runs
        there), for the commits of every process on the database. SQLite: the commits of this
        store object in this process only, `on_notify` running in the committing thread (another
        process writing the file wakes nobody: SQLite has no way to tell). StoreError when the
        store is closed."""


@runtime_checkable
class LedgerStore(Protocol):
    """Metered calls and what they cost."""

    def add_ledger_entry(self, *, model: str, prompt_tokens: int, completion_tokens: int,
                         cost: float | None, cost_source: str, kind: CostKind = CostKind.WORK,
                         hive_id: str | None = None, agent_id: str | None = None,
                         task_id: str | None = None, request_id: str | None = None,
                         ts: datetime | None = None) -> LedgerEntry:
        """Record one metered call and add it to the agent's spent counters."""
    def ledger(self, *, hive_id: str | None = None, agent_id: str | None = None,
               limit: int | None = None) -> list[LedgerEntry]: ...
    def spend(self, *, hive_id: str | None = None, agent_id: str | None = None,
              kind: CostKind | None = None) -> Spend: ...


@runtime_checkable
class ApprovalStore(Protocol):
    """Requests a person decides once."""

    def create_approval(self, approval: Approval) -> Approval:
        """Event: approval_requested."""
    def decide_approval(self, approval_id: str, status: ApprovalStatus, *,
                        decided_by: str, reason: str | None = None) -> Approval:
        """Raise Conflict when already decided. `reason` is kept in the approval's data (an
        agent whose action was rejected reads it). Event: approval_decided."""
    def get_approval(self, approval_id: str) -> Approval: ...
    def list_approvals(self, *, hive_id: str | None = None,
                       status: ApprovalStatus | None = None) -> list[Approval]: ...


@runtime_checkable
class ChatStore(Protocol):
    """Conversations, messages, users' settings."""

    def create_conversation(self, conversation: Conversation,
                            messages: Sequence[Message] = ()) -> Conversation: ...
    def get_conversation(self, conversation_id: str, *, user_id: str | None = None) -> Conversation:
        """Raise NotFound when absent or owned by another user."""
    def list_conversations(self, user_id: str, *, limit: int = 50,
                           offset: int = 0) -> list[Conversation]:
        """Newest first (by updated_at)."""
    def count_conversations(self, user_id: str | None = None) -> int: ...
    def update_conversation(self, conversation_id: str, **fields: Any) -> Conversation: ...
    def delete_conversation(self, conversation_id: str, *, user_id: str | None = None) -> None: ...
    def delete_conversations(self, user_id: str) -> int: ...
    def add_message(self, message: Message) -> Message:
        """Also bumps the conversation's updated_at."""
    def update_message(self, message_id: str, **fields: Any) -> Message: ...
    def messages(self, conversation_id: str) -> list[Message]: ...
    def user_ids(self) -> list[str]: ...

    def get_user_settings(self, user_id: str) -> JSON: ...
    def put_user_settings(self, user_id: str, settings: JSON) -> JSON: ...


@runtime_checkable
class TokenStore(Protocol):
    """Auth tokens, stored by hash."""

    def create_token(self, *, token_id: str, name: str, user_id: str, token_hash: str,
                     scopes: Sequence[str] = ()) -> JSON:
        """A token row: id, name, user_id, scopes (a list: "operator"), created_at,
        revoked_at."""
    def find_token(self, token_hash: str) -> JSON | None:
        """The live (not revoked) token with that hash, or None."""
    def list_tokens(self) -> list[JSON]: ...
    def revoke_token(self, token_id: str) -> None: ...


@runtime_checkable
class MemoryStore(Protocol):
    """Memory notes with full-text search."""

    def memory_put(self, entry: MemoryEntry) -> MemoryEntry:
        """Insert or replace the note at (namespace, key)."""
    def memory_get(self, namespace: str, key: str) -> MemoryEntry: ...
    def memory_list(self, namespace: str | None = None, *, limit: int | None = None) -> list[MemoryEntry]: ...
    def memory_delete(self, namespace: str, key: str) -> bool: ...
    def memory_search(self, query: str, *, namespace: str | None = None,
                      limit: int = 10) -> list[MemoryEntry]:
        """Full-text search ranked by relevance (FTS5 bm25 / Postgres ts_rank); best first."""


@runtime_checkable
class DriverStore(Protocol):
    """Which one process drives each hive (a lease)."""

    def take_hive(self, driver: HiveDriver, *, lease_seconds: float,
                  now: datetime | None = None) -> HiveDriver:
        """Make `driver` the hive's driver, in one atomic compare-and-set, if the hive has no
        driver, its driver's lease has run out, or `driver.instance` drives it already (then
        the lease is renewed). Returns the hive's driver afterwards: compare its instance to
        tell whether this call won. NotFound if the hive does not exist."""
    def release_hive(self, hive_id: str, instance: str) -> bool:
        """Stop driving the hive, if `instance` drives it; True if it did."""
    def hive_driver(self, hive_id: str) -> HiveDriver | None:
        """The hive's driver record (its lease may have run out), or None."""


@runtime_checkable
class WorkerStore(Protocol):
    """Processes hosting agents, their heartbeats, and the adoption lock."""

    def register_worker(self, worker_id: str, *, hive_id: str | None, host: str,
                        agents: int, now: datetime | None = None) -> None: ...
    def worker_heartbeat(self, worker_id: str, *, now: datetime | None = None) -> None: ...
    def unregister_worker(self, worker_id: str) -> None: ...
    def list_workers(self, hive_id: str | None = None) -> list[JSON]: ...
    def merge_lock(self, hive_id: str) -> Callable[[], None]:
        """Take the hive's merge lock, waiting while another process holds it; returns what
        gives it back. One merge at a time per hive across machines (a hive on a git remote,
        agents/isolated.py). Postgres: a session advisory lock on a connection of its own,
        freed by the server if the process dies. SQLite: StoreError (one machine)."""
    def adoption_lock(self) -> AbstractContextManager[None]:
        """Hold the store-wide lock under which hosts adopt agents, so two processes never
        adopt one agent. Take it outside any transaction.

        Postgres: a session advisory lock on this thread's connection, waiting while another
        process holds it; freed on exit, or by the server if the connection dies. SQLite: the
        block is one write transaction (the file's write lock, which every writer in every
        process waits for), so what it changes commits together at the end."""


@runtime_checkable
class JournalStore(Protocol):
    """Attempt journals of the built-in agent: an attempt's opening messages and every message
    since, so whoever takes the task up next continues it (agents/journal.py)."""

    def open_journal(self, journal: AttemptJournal) -> AttemptJournal:
        """Store a new, open journal (its `entries` are not read)."""
    def open_journal_of(self, task_id: str) -> AttemptJournal | None:
        """The task's open journal with its entries in order, or None."""
    def task_journals(self, task_id: str) -> list[AttemptJournal]:
        """Every journal of the task, open or closed, oldest first, with their entries."""
    def append_journal(self, journal_id: str, kind: JournalEntryKind, *, turn: int,
                       call_id: str | None, data: JSON) -> int:
        """Record one entry at the end of an open journal; its sequence number. ValueError
        (nothing recorded) if the journal is closed or unknown."""
    def close_journal(self, journal_id: str, reason: str) -> bool:
        """Close the journal (it will not be resumed); False if it was closed already."""


@runtime_checkable
class Store(Lifecycle, HiveStore, BoardStore, EventStore, LedgerStore, ApprovalStore, ChatStore,
            TokenStore, MemoryStore, DriverStore, WorkerStore, JournalStore, Protocol):
    """Durable state of every hive, agent, task, event, ledger entry, conversation and note:
    every role above in one object. Code that needs one role may ask for just that one."""


def iter_batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """Split a sequence for bulk inserts that stay under driver parameter limits."""
    for start in range(0, len(items), size):
        yield items[start:start + size]
