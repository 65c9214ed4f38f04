"""The core model: plain frozen dataclasses and enums that every layer shares.

Depends on nothing in ruflo. Validation of outside input (API bodies, YAML, settings) happens at
the edges with pydantic; inside, these are the facts.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

JSON = dict[str, Any]

LOCAL_USER = "local"
"""The user of this machine: whoever runs the CLI, MCP over stdio, a worker or a comparison, and
the one user of a server without auth. Hives made outside the server are owned by it; a server
with auth never lets a signed-in user take this name."""


def utcnow() -> datetime:
    """The one clock read for stored timestamps: timezone-aware UTC."""
    return datetime.now(UTC)


def new_id() -> str:
    """A fresh opaque identifier (32 hex characters)."""
    return uuid.uuid4().hex


class Mode(enum.StrEnum):
    """How a hive decides who does what."""

    SWARM = "swarm"
    COMPANY = "company"
    SOLO = "solo"
    ROUND_ROBIN = "round_robin"


class HiveStatus(enum.StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (HiveStatus.DONE, HiveStatus.FAILED, HiveStatus.CANCELLED)


class AgentStatus(enum.StrEnum):
    IDLE = "idle"
    WORKING = "working"
    PAUSED = "paused"
    DEAD = "dead"


class AdapterKind(enum.StrEnum):
    """How an agent does a task: the built-in LLM tool loop, an external command, an HTTP hook,
    a remote A2A agent, or a known agent CLI driven by its preset (ruflo.agents.presets)."""

    LLM = "llm"
    PROCESS = "process"
    HTTP = "http"
    A2A = "a2a"
    CLAUDE_CODE = "claude-code"
    CODEX = "codex"
    GEMINI_CLI = "gemini-cli"
    OPENCODE = "opencode"
    AIDER = "aider"

    @property
    def is_agent_cli(self) -> bool:
        """An agent CLI with a preset: its program, flags and output are known to ruflo."""
        return self in AGENT_CLIS


AGENT_CLIS = frozenset({AdapterKind.CLAUDE_CODE, AdapterKind.CODEX, AdapterKind.GEMINI_CLI,
                        AdapterKind.OPENCODE, AdapterKind.AIDER})
"""The adapters that drive a known agent CLI through its preset."""


class TaskState(enum.StrEnum):
    OPEN = "open"
    CLAIMED = "claimed"
    DONE = "done"
    FAILED = "failed"
    BLOCKED = "blocked"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (TaskState.DONE, TaskState.FAILED, TaskState.CANCELLED)


class ApprovalKind(enum.StrEnum):
    BUDGET_OVERRIDE = "budget_override"
    HIRE = "hire"
    STRATEGY = "strategy"
    ACTION = "action"
    """An agent's action (a command, a file change, a merge) its policy says to ask about."""


class ApprovalStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


class CostKind(enum.StrEnum):
    """What a metered call was for: doing the work, or deciding who does it."""

    WORK = "work"
    COORDINATION = "coordination"
    CHAT = "chat"


@dataclass(frozen=True, slots=True)
class Budget:
    """A cap on spend. Either limit may be absent; both absent means no cap."""

    max_tokens: int | None = None
    """Total prompt + completion tokens allowed."""
    max_cost: float | None = None
    """Total money allowed, in USD."""

    @property
    def unlimited(self) -> bool:
        return self.max_tokens is None and self.max_cost is None


@dataclass(frozen=True, slots=True)
class Hive:
    """One run of work: an objective, a board of tasks and the agents working it."""

    id: str
    name: str
    mode: Mode
    objective: str
    status: HiveStatus = HiveStatus.RUNNING
    pause_reason: str | None = None
    """Why the hive is paused (e.g. "gateway refused the key"), shown to people."""
    budget: Budget = field(default_factory=Budget)
    workspace: str | None = None
    """Folder the agents work in; None for simulated hives."""
    config: JSON = field(default_factory=dict)
    """Mode-specific settings (seed, auto-approval policy, ...), recorded for reproducibility."""
    owner: str = LOCAL_USER
    """User who started it: the signed-in user for hives made over HTTP, else LOCAL_USER. The
    owner and the operators may change the hive; other users may only look."""
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    damage: str | None = None
    """Set when the stored row could not be read whole: what was wrong with it. The other
    fields are what could be read (an unreadable config reads as empty)."""


class JournalEntryKind(enum.StrEnum):
    """What one entry of an attempt's journal records."""

    MESSAGE = "message"
    """A message added to the conversation: the model's answer, a nudge, or a tool result."""
    TOOL_STARTED = "tool_started"
    """A tool call about to run; without a later result, it was cut short (the process died)."""


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One thing an attempt did, in order (see AttemptJournal)."""

    seq: int
    kind: JournalEntryKind
    turn: int
    call_id: str | None
    data: JSON
    """MESSAGE: {"message": the chat message, and for a tool result "name", "error" and, for a
    file tool that wrote, "path" and "after" (the file's text after it)}.
    TOOL_STARTED: {"name", "arguments"}."""


@dataclass(frozen=True, slots=True)
class AttemptJournal:
    """The journal of one attempt of one task by the built-in agent: what it began with and, in
    `entries`, every message since, so the attempt can continue where it stopped."""

    id: str
    hive_id: str
    task_id: str
    agent_id: str
    task_hash: str
    """The hash of what the task asked (title, description, verify) when the attempt began."""
    opening: JSON
    """{"messages": the system and task messages the attempt began with}."""
    opened_at: datetime
    closed_at: datetime | None = None
    close_reason: str | None = None
    entries: tuple[JournalEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class HiveDriver:
    """The one process driving a hive's engine, and how long its claim to it holds."""

    hive_id: str
    instance: str
    """A random id of the driving process, new at each start (a pid may be reused)."""
    host: str
    pid: int
    driving_since: datetime
    driver_until: datetime
    """The lease: the driver renews it while it lives; after it, another process may take over."""

    @property
    def who(self) -> str:
        return f"{self.host}:{self.pid}"

    def live(self, now: datetime | None = None) -> bool:
        return self.driver_until > (now or utcnow())


@dataclass(frozen=True, slots=True)
class Agent:
    """A cell of the hive: it takes up tasks and does them through its adapter."""

    id: str
    hive_id: str
    name: str
    role: str = "worker"
    title: str = ""
    capabilities: str = ""
    """Free text a manager reads when choosing whom to delegate to (company mode)."""
    skills: tuple[str, ...] = ()
    thresholds: dict[str, float] = field(default_factory=dict)
    """Response threshold θ per skill: low means eager (swarm mode)."""
    adapter: AdapterKind = AdapterKind.LLM
    adapter_config: JSON = field(default_factory=dict)
    model: str | None = None
    reports_to: str | None = None
    """Manager's agent id (company mode); None for the root and in swarm mode."""
    budget: Budget = field(default_factory=Budget)
    spent_tokens: int = 0
    spent_cost: float = 0.0
    status: AgentStatus = AgentStatus.IDLE
    current_task: str | None = None
    heartbeat_at: datetime | None = None
    worker_id: str | None = None
    """The worker process hosting this agent, when the hive is distributed."""

    @property
    def external(self) -> bool:
        """Driven by an outside client (the REST board API or MCP) that claims for itself: no
        engine, server or worker hosts it."""
        return self.adapter_config.get("via") in ("rest", "mcp")


@dataclass(frozen=True, slots=True)
class Task:
    """A unit of work on the board."""

    id: str
    hive_id: str
    title: str
    description: str = ""
    parent_id: str | None = None
    skills: tuple[str, ...] = ()
    priority: int = 1
    """Higher is more urgent; feeds the stimulus."""
    effort: float = 1.0
    """Estimated work units (the simulator's duration at a perfect skill match)."""
    depends_on: tuple[str, ...] = ()
    state: TaskState = TaskState.OPEN
    assignee: str | None = None
    """Agent holding the claim, or the agent it is assigned to in company mode."""
    lease_until: datetime | None = None
    attempts: int = 0
    verify: str | None = None
    """Shell command run in the workspace; its exit code decides success."""
    result: str | None = None
    verified: bool | None = None
    """The verify command's verdict: None when not run or no command."""
    blocked_on: str | None = None
    """What a blocked task waits on, in words or a task id."""
    depth: int = 0
    """How far the task was delegated from the objective (company mode)."""
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    claimed_at: datetime | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class TaskOutline:
    """What a hive's policy reads of a task when it is put back from the store
    (Store.policy_board): no title, description, verify command or result, which can be large
    and which no decision looks at."""

    id: str
    state: TaskState
    parent_id: str | None
    skills: tuple[str, ...]
    priority: int
    effort: float
    depends_on: tuple[str, ...]
    assignee: str | None
    """Agent holding the claim."""
    attempts: int
    created_at: datetime
    updated_at: datetime
    """When a reopened task reopened (the last change to its row)."""
    finished_at: datetime | None
    """When a finished dependency finished: its dependents became ready then."""


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened in a hive; append-only, ordered by a gap-free per-hive seq."""

    seq: int
    hive_id: str
    kind: str
    ts: datetime
    agent_id: str | None = None
    task_id: str | None = None
    data: JSON = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One metered gateway call."""

    id: int
    ts: datetime
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost: float | None
    """USD; None when neither the gateway nor the price table knew it (never recorded as 0)."""
    cost_source: str
    """Where the cost came from: "gateway", "price_table" or "unknown"; "estimate" when a stream
    ended before its usage came (tokens estimated from what arrived, cost None) or a call was
    given up unanswered at shutdown (charged its booking)."""
    kind: CostKind = CostKind.WORK
    hive_id: str | None = None
    agent_id: str | None = None
    task_id: str | None = None
    request_id: str | None = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


CANCELLED_BY = "ruflo"
"""`decided_by` of an approval ruflo cancelled because it could no longer take effect (its
task, attempt journal or hive ended)."""


@dataclass(frozen=True, slots=True)
class Approval:
    """A decision that waits for a person (or an explicit auto-approval policy)."""

    id: str
    hive_id: str
    kind: ApprovalKind
    subject: str
    """What is asked, in words."""
    status: ApprovalStatus = ApprovalStatus.PENDING
    agent_id: str | None = None
    data: JSON = field(default_factory=dict)
    decided_by: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    decided_at: datetime | None = None

    def settled_text(self) -> str:
        """Why a decision on this approval is refused, in one line: decided already, or
        cancelled by ruflo because it could no longer take effect."""
        if self.status is ApprovalStatus.CANCELLED:
            why = self.data.get("reason") or "it could no longer take effect"
            return (f"approval {self.id} was cancelled ({why}): it can no longer be decided; "
                    "nothing was changed")
        return (f"approval {self.id} was already {self.status.value} by "
                f"{self.decided_by or 'someone'}; nothing was changed")


@dataclass(frozen=True, slots=True)
class Message:
    """One message of a conversation; `parent_id` links make a tree so an edit can branch."""

    id: str
    conversation_id: str
    role: str
    """"user", "assistant" or "system" (ruvocal's `from`)."""
    content: str
    parent_id: str | None = None
    interrupted: bool = False
    data: JSON = field(default_factory=dict)
    """Everything else ruvocal keeps on a message (updates, reasoning, files)."""
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, slots=True)
class Conversation:
    """A chat thread of one user."""

    id: str
    """24 hex characters, as ruvocal's ids."""
    user_id: str
    title: str
    model: str
    preprompt: str | None = None
    root_message_id: str | None = None
    data: JSON = field(default_factory=dict)
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, slots=True)
class MemoryEntry:
    """A namespaced note agents (and people) leave for each other."""

    namespace: str
    key: str
    content: str
    tags: tuple[str, ...] = ()
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    score: float | None = None
    """Relevance, set only on search results."""


def find_cycle(edges: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A dependency cycle as a list of ids (first repeated at the end), or None. Iterative DFS.
    A board never holds one: tasks in a cycle would wait for each other forever. Workload files,
    plans, the engine and the store all refuse one with this same check."""
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(edges, white)
    for start in edges:
        if colour[start] != white:
            continue
        stack: list[tuple[str, int]] = [(start, 0)]
        path: list[str] = [start]
        colour[start] = grey
        while stack:
            node, index = stack[-1]
            targets = edges.get(node, ())
            if index < len(targets):
                stack[-1] = (node, index + 1)
                nxt = targets[index]
                state = colour.get(nxt, black)
                if state == grey:
                    return [*path[path.index(nxt):], nxt]
                if state == white:
                    colour[nxt] = grey
                    stack.append((nxt, 0))
                    path.append(nxt)
            else:
                colour[node] = black
                stack.pop()
                path.pop()
    return None
