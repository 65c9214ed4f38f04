"""Errors a user can meet, each with a message that says what happened, what ruflo did and what
to do next. Depends on nothing in ruflo.

    RufloError
    ├── ConfigError              settings or a file given to ruflo are wrong
    ├── StoreError
    │   ├── StoreUnreachable     DATABASE_URL set but the server can't be reached or refuses us
    │   ├── StoreCorrupt         the store file is not a readable ruflo database (left untouched)
    │   ├── StoreFull            the store's disk (or size limit) is full: the change was not saved
    │   ├── Unstorable           a value the store can't hold (a NUL character in text): not stored
    │   ├── NotFound             no such hive / task / conversation / note
    │   └── Conflict             the thing changed under us (e.g. a claim already held)
    ├── GatewayError
    │   ├── GatewayAuthError     key refused: never retried, the hive pauses
    │   ├── GatewayBudgetError   the gateway's budget for the key is spent: pause
    │   ├── GatewayRateLimited   429 after bounded waiting
    │   ├── GatewayUnavailable   5xx, connection errors, timeouts after bounded retries: the
    │   │                        hive pauses ("gateway unreachable") until the gateway answers
    │   ├── GatewayBadResponse   the answer was not what an OpenAI-compatible gateway sends
    │   └── GatewayRequestRejected  the gateway refused this request (400/404/422): not retried
    ├── BudgetExceeded           ruflo's own cap for a hive or agent is reached
    ├── PolicyError              a workload, org chart or policy input is invalid
    ├── WorkspaceError           a tool call tried to leave the workspace or was malformed
    └── ShellError               the shell inventory is invalid or could not be read
"""

from __future__ import annotations


class RufloError(Exception):
    """Base of every error ruflo raises on purpose; its message is meant for a person."""


class ConfigError(RufloError):
    pass


class StoreError(RufloError):
    pass


class StoreUnreachable(StoreError):
    pass


class StoreCorrupt(StoreError):
    pass


class StoreFull(StoreError):
    """A write failed for want of space; the store recovers by itself once space returns."""


class Unstorable(StoreError):
    """A value no store can hold (a NUL character in text); refused the same on SQLite and
    Postgres, before anything is written."""


class NotFound(StoreError):
    pass


class Conflict(StoreError):
    pass


class GatewayError(RufloError):
    """Any failure talking to the gateway. `pauses_hive` says whether work must stop."""

    pauses_hive: bool = False
    pause_reason: str = ""
    hive_paused: bool = False
    """The gateway client found the call's hive paused when it raised this (it paused it
    itself, or it already was): a hive running now was resumed after that pause."""


class GatewayAuthError(GatewayError):
    pauses_hive = True
    pause_reason = "gateway refused the key"


class GatewayBudgetError(GatewayError):
    pauses_hive = True
    pause_reason = "gateway budget exceeded"


class GatewayRateLimited(GatewayError):
    pass


class GatewayUnavailable(GatewayError):
    """The gateway did not answer (5xx, refused or dropped connections, timeouts) within the
    retry budget: an outage, not the task's fault. The engine pauses the hive, looks again
    cheaply and resumes it by itself when the gateway answers."""

    pauses_hive = True
    pause_reason = "gateway unreachable"


class GatewayBadResponse(GatewayError):
    pass


class GatewayRequestRejected(GatewayError):
    """The gateway understood the key but refused the request itself (unknown model, context
    too long, bad parameters); retrying the same request would fail the same way."""


class BudgetExceeded(RufloError):
    """A ruflo budget (hive or agent) would be passed by the next call."""

    def __init__(self, message: str, *, scope: str = "hive", scope_id: str | None = None) -> None:
        super().__init__(message)
        self.scope = scope
        self.scope_id = scope_id


class PolicyError(RufloError):
    pass


class WorkspaceError(RufloError):
    pass


class ShellError(RufloError):
    pass
