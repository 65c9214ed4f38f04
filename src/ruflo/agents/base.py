"""The Executor seam: how an agent does a task, and what it reports back (a TaskOutcome).

Depends on the core model and the Store and Gateway protocols. Executors do the work and say how
it ended; the engine applies the outcome to the board (finish, release, post subtasks, delegate).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ruflo.model import Agent, Hive, Task

if TYPE_CHECKING:
    from ruflo.agents.sandbox import Sandbox
    from ruflo.gateway.base import Gateway
    from ruflo.memory.notes import Memory
    from ruflo.store.base import Store


class OutcomeKind(enum.StrEnum):
    """How a task attempt ended."""

    COMPLETE = "complete"
    """Done; `result` says what was done (the verify command may still overrule it)."""
    ABSTAIN = "abstain"
    """Not for this agent; the task goes back to the board (swarm thresholds rise)."""
    DECOMPOSE = "decompose"
    """Split into `subtasks`, posted to the board."""
    DELEGATE = "delegate"
    """Company mode: hand the work to report `delegate_to`."""
    ESCALATE = "escalate"
    """Company mode: blocked, passed up the chain with `reason`."""
    FAILED = "failed"
    """Could not be done (turn limit, verify failed, command crashed...); `reason` says why."""


class TaskTool(enum.StrEnum):
    """The task tools a coordination mode offers to the built-in agent."""

    COMPLETE = "complete"
    ABSTAIN = "abstain"
    POST_SUBTASKS = "post_subtasks"
    DELEGATE = "delegate"
    ESCALATE = "escalate"


SWARM_TOOLS = frozenset({TaskTool.COMPLETE, TaskTool.ABSTAIN, TaskTool.POST_SUBTASKS})
COMPANY_TOOLS = frozenset(TaskTool)
SOLO_TOOLS = frozenset({TaskTool.COMPLETE})


@dataclass(frozen=True, slots=True)
class SubtaskSpec:
    """A subtask an agent asks to post; `depends_on` names other subtasks of the same list by
    their 0-based index or their title, or existing tasks by id."""

    title: str
    description: str = ""
    skills: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()
    verify: str | None = None


@dataclass(frozen=True, slots=True)
class TaskOutcome:
    """What an executor reports when it stops working on a task."""

    kind: OutcomeKind
    result: str | None = None
    """What was done (complete), or the final answer of an outside agent."""
    reason: str | None = None
    """Why (abstain, escalate, failed)."""
    subtasks: tuple[SubtaskSpec, ...] = ()
    delegate_to: str | None = None
    """Company mode: the report (agent id or name) the work goes to."""
    delegate_title: str | None = None
    delegate_description: str | None = None
    verified: bool | None = None
    """The verify command's verdict; None when the task has none or it was not run."""
    turns: int = 0
    """Gateway calls (built-in agent) spent on this attempt."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on one task attempt."""

    max_turns: int = 30
    """Gateway calls before the attempt is given up as failed."""
    completion_tokens: int = 4096
    """Most tokens one answer of the built-in agent may take: sent as the call's max_tokens, so
    the budget's booking for the call bounds what it can spend. An agent's `max_tokens` setting
    (adapter config) overrides it."""
    tool_output_chars: int = 12_000
    """Longest tool result the model sees; longer ones are cut with a marker."""
    transcript_chars: int = 2_000
    """Longest text stored in one transcript event field."""
    command_timeout: float = 120.0
    command_grace: float = 3.0
    """Seconds between SIGTERM and SIGKILL."""
    command_output_bytes: int = 64_000
    """Output kept per command (head and tail); the rest is counted, not kept."""
    verify_timeout: float = 600.0
    process_timeout: float = 1800.0
    """Outside agent CLIs (process adapter)."""
    http_timeout: float = 300.0
    approval_poll: float = 1.0
    """Seconds between looks at an action approval waited on (commit hints wake it sooner)."""


@dataclass(frozen=True, slots=True)
class RunContext:
    """What an executor may use for one attempt."""

    store: Store
    workspace: Path
    """Folder the agent works in (the hive's workspace)."""
    gateway: Gateway | None = None
    """The road to a model; needed by the built-in agent only."""
    memory: Memory | None = None
    """Notes to read before and write after; None means plain keyword memory over `store`."""
    task_tools: frozenset[TaskTool] = SWARM_TOOLS
    env: Mapping[str, str] = field(default_factory=dict)
    """Environment for commands and outside agents (see agents.commands.command_env); empty
    means the bare minimum (PATH and locale) and no gateway variables."""
    limits: Limits = field(default_factory=Limits)
    model: str = "gpt-4o-mini"
    """Model for agents that do not name one."""
    reports: tuple[Agent, ...] = ()
    """Company mode: the agent's direct reports, offered as delegation targets."""
    sandbox: Sandbox | None = None
    """Where commands run (see agents.sandbox); None means this process's configured one."""


class Executor(Protocol):
    """Does one attempt at a task for an agent."""

    async def run(self, task: Task, agent: Agent, hive: Hive, ctx: RunContext) -> TaskOutcome:
        """Work on `task` and report how it ended. Gateway auth/budget errors and BudgetExceeded
        propagate (the engine pauses); everything else ends as an outcome."""
        ...
