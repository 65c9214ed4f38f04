"""Every kind of event ruflo records in a hive's log, as one enum: the readers (the UI, the CLI,
notifications, metrics, reports) and the writers name the same members. Depends on ruflo.errors.

Members are strings (StrEnum), so a stored kind compares equal to its member. `known_event_kind`
is the one check for a store to run before it appends: an unknown kind refused, nothing recorded.
"""

from __future__ import annotations

import enum

from ruflo.errors import Unstorable


@enum.unique
class EventKind(enum.StrEnum):
    """What happened, grouped by who records it."""

    # -- the store, as it changes hives, agents, tasks and approvals
    HIVE_CREATED = "hive_created"
    HIVE_RUNNING = "hive_running"
    """Started again after a pause."""
    HIVE_PAUSED = "hive_paused"
    HIVE_DONE = "hive_done"
    HIVE_FAILED = "hive_failed"
    HIVE_CANCELLED = "hive_cancelled"
    AGENT_ADDED = "agent_added"
    TASK_POSTED = "task_posted"
    TASK_CLAIMED = "task_claimed"
    TASK_DONE = "task_done"
    TASK_FAILED = "task_failed"
    TASK_CANCELLED = "task_cancelled"
    TASK_RELEASED = "task_released"
    """A claim given back: the task is open again."""
    TASK_UPDATED = "task_updated"
    LEASE_EXPIRED = "lease_expired"
    """A claim whose holder stopped renewing it: the task is open again."""
    APPROVAL_REQUESTED = "approval_requested"
    APPROVAL_DECIDED = "approval_decided"
    APPROVAL_CANCELLED = "approval_cancelled"
    """A pending approval that could no longer take effect (its task, attempt or hive ended), set
    to cancelled by ruflo; `reason` says which."""

    # -- the engine, driving a hive
    ENGINE_STARTED = "engine_started"
    ENGINE_STOPPED = "engine_stopped"
    ENGINE_ERROR = "engine_error"
    """The server's engine for this hive stopped on an error."""
    SERVER_REATTACHED = "server_reattached"
    WORKER_ATTACHED = "worker_attached"
    WORKER_DETACHED = "worker_detached"
    WORKER_LOST = "worker_lost"
    """A `ruflo worker` stopped heartbeating; its agents are taken up elsewhere."""
    AGENT_PAUSED = "agent_paused"
    AGENT_RESUMED = "agent_resumed"
    AGENT_LOST = "agent_lost"
    AGENT_WOKEN = "agent_woken"
    ATTEMPT_DISCARDED = "attempt_discarded"
    """An attempt's result was thrown away (its claim was lost meanwhile)."""
    GATEWAY_UNREACHABLE = "gateway_unreachable"
    GATEWAY_BACK = "gateway_back"
    HIVE_PAUSE_DETAIL = "hive_pause_detail"
    HIVE_BUDGET_CHANGED = "hive_budget_changed"
    ACTIONS_CHANGED = "actions_changed"
    """A hive's or an agent's action policy was set (agents/permissions.py)."""
    OBJECTIVE_VERIFIED = "objective_verified"
    """The objective's verify command ran on the finished workspace."""
    APPROVAL_AMENDED = "approval_amended"
    APPROVAL_AUTO_DECIDED = "approval_auto_decided"
    APPROVAL_APPLIED = "approval_applied"

    # -- the company: tickets, their owners and the org chart
    TICKET_PLANNED = "ticket_planned"
    TICKET_ASSIGNED = "ticket_assigned"
    TICKET_DELEGATED = "ticket_delegated"
    TICKET_ESCALATED = "ticket_escalated"
    TICKET_REASSIGNED = "ticket_reassigned"
    TICKET_BLOCKED = "ticket_blocked"
    TICKET_UNBLOCKED = "ticket_unblocked"
    TICKET_GIVEN_UP = "ticket_given_up"
    CHILDREN_COMPLETED = "children_completed"
    """Every sub-ticket of a ticket ended: its owner integrates the results."""
    PLAN_REFUSED = "plan_refused"
    """A planner's answer was not a usable plan."""
    PLAN_FALLBACK = "plan_fallback"
    """No usable plan: the ticket went whole to a delegate."""
    HIRE_REQUESTED = "hire_requested"
    AGENT_HIRED = "agent_hired"
    OBJECTIVE_PLANNED = "objective_planned"
    """`ruflo orchestrate` planned the first board from the objective."""

    # -- agents at work (the transcript of an attempt)
    AGENT_STARTED = "agent_started"
    AGENT_TURN = "agent_turn"
    TOOL_CALL = "tool_call"
    TOOL_RESULT = "tool_result"
    PROCESS_STARTED = "process_started"
    PROCESS_OUTPUT = "process_output"
    PROCESS_EXITED = "process_exited"
    HTTP_REQUEST = "http_request"
    HTTP_RESPONSE = "http_response"
    A2A_REQUEST = "a2a_request"
    """The task sent to a remote A2A agent."""
    A2A_RESPONSE = "a2a_response"
    A2A_MESSAGE = "a2a_message"
    A2A_STATUS = "a2a_status"
    A2A_ARTIFACT = "a2a_artifact"
    A2A_FILE = "a2a_file"
    """An artifact file written into the workspace (or refused)."""
    A2A_CANCEL = "a2a_cancel"
    ATTEMPT_RESUMED = "attempt_resumed"
    """The built-in agent took up its attempt's journal: from which turn, the files replayed,
    the calls answered as interrupted and those run now."""
    AGENT_OUTCOME = "agent_outcome"
    TASK_VERIFIED = "task_verified"
    """A task's verify command ran (by an agent, over REST or over MCP)."""

    # -- git isolation (agents/gitwork.py, agents/isolated.py)
    ISOLATION_READY = "isolation_ready"
    """The hive's integration branch and start commit (or the shared folder, said loudly)."""
    TASK_COMMITTED = "task_committed"
    """ruflo committed an attempt's worktree on its task branch."""
    TASK_MERGED = "task_merged"
    """A task's commit was merged into the integration branch."""
    MERGE_CHECK_FAILED = "merge_check_failed"
    """After a merge a merged task's verify failed: the merge was undone."""
    INTEGRATION_POSTED = "integration_posted"
    """A merge conflicted or broke the verify: an integration task carries it."""
    WORKTREE_OPENED = "worktree_opened"
    """An outside client's claim (MCP) got its attempt worktree: its path, branch and base."""
    WORKTREES_CLEANED = "worktrees_cleaned"
    """Leftover attempt worktrees (a killed process's) were removed at start."""

    # -- budgets, the MCP desk, notifications and comparisons
    BUDGET_WARNING = "budget_warning"
    BUDGET_EXCEEDED = "budget_exceeded"
    BUDGET_UNKNOWN_COST = "budget_unknown_cost"
    """A call's cost was not reported: the budget counts its tokens only."""
    MCP_CALL = "mcp_call"
    NOTIFY_FAILED = "notify_failed"
    """A notification could not be sent (or was dropped): who, what and why."""
    COMPARE_RUN_STARTED = "compare_run_started"
    """Which comparison run a live hive is, and the auto-approval policy it used."""
    COMPARE_VERIFIED = "compare_verified"
    """The workload's verify command, run on the final workspace."""
    COMPARE_AGENT_KILLED = "compare_agent_killed"
    """The comparison killed this agent on purpose (--kill-fraction)."""


def known_event_kind(kind: str) -> EventKind:
    """The member named by `kind`, or Unstorable: a store calls this before it appends."""
    try:
        return EventKind(kind)
    except ValueError:
        raise Unstorable(f"unknown event kind {kind!r}: not recorded (every kind is a member of "
                         "ruflo.event_kinds.EventKind; add it there first)") from None
