"""The seam between the hive routes and whatever drives hives through time.

The server is handed a `HiveRunner`. The live engine plugs in here; `StoreRunner` is the one
that only records decisions in the store (status changes and their events), for a server that
shows and steers hives run elsewhere (`ruflo worker`) or before the engine is attached.
Depends on the core model, the store protocol and engine/start.py (the first board).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ruflo.engine.start import seed_board
from ruflo.errors import Conflict, GatewayUnavailable
from ruflo.model import Approval, ApprovalStatus, Hive, HiveStatus, TaskState
from ruflo.store.base import Store


@runtime_checkable
class HiveRunner(Protocol):
    """What the hive routes ask of the thing that runs hives. Every method is idempotent where
    the state already matches (pausing a paused hive answers the hive as it is) and raises
    Conflict when the change is impossible (resuming a cancelled hive)."""

    async def attach(self) -> None:
        """The server has started: take up the hives the store says are running."""

    async def start(self, hive_id: str) -> None:
        """Begin work on a stored hive, seeding its first board when it is empty
        (engine/start.py: the objective planned by the runner's planner, or posted as one task
        by a runner without one)."""

    async def pause(self, hive_id: str, *, reason: str) -> Hive:
        """Stop taking up new work; work in flight finishes or is released, nothing is lost."""

    async def resume(self, hive_id: str) -> Hive:
        """Continue a paused hive where it stopped."""

    async def cancel(self, hive_id: str) -> Hive:
        """End the hive: every unfinished task is cancelled."""

    async def decide_approval(self, approval_id: str, status: ApprovalStatus, *,
                              decided_by: str, reason: str | None = None) -> Approval:
        """Record a person's decision (and why) and let the waiting work go on."""

    async def aclose(self) -> None:
        """Stop driving hives (server shutdown); their state stays in the store."""


class StoreRunner:
    """A runner that drives nothing: it records status changes, first tasks, cancellations and
    approval decisions in the store, each with its event, so the routes and streams work."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def attach(self) -> None:
        return None

    async def start(self, hive_id: str) -> None:
        # No gateway here: the objective is the first task (engine/start.py's rule).
        await seed_board(self.store, hive_id, None)

    async def pause(self, hive_id: str, *, reason: str) -> Hive:
        hive = self.store.get_hive(hive_id)
        # A pause for an unreachable gateway ends by itself when it answers (the engine of the
        # process driving the hive resumes it); this pause replaces it and waits for a person.
        if hive.status is HiveStatus.PAUSED and \
                hive.pause_reason != GatewayUnavailable.pause_reason:
            return hive
        _refuse_if_over(hive, "paused")
        return self.store.set_hive_status(hive_id, HiveStatus.PAUSED, reason=reason)

    async def resume(self, hive_id: str) -> Hive:
        hive = self.store.get_hive(hive_id)
        if hive.status is HiveStatus.RUNNING:
            return hive
        _refuse_if_over(hive, "resumed")
        return self.store.set_hive_status(hive_id, HiveStatus.RUNNING)

    async def cancel(self, hive_id: str) -> Hive:
        hive = self.store.get_hive(hive_id)
        if hive.status is HiveStatus.CANCELLED:
            return hive
        _refuse_if_over(hive, "cancelled")
        with self.store.transaction():
            for task in self.store.list_tasks(hive_id, states=[
                    TaskState.OPEN, TaskState.CLAIMED, TaskState.BLOCKED]):
                self.store.finish_task(task.id, None, state=TaskState.CANCELLED,
                                       result="the hive was cancelled")
            return self.store.set_hive_status(hive_id, HiveStatus.CANCELLED,
                                              reason="cancelled by a person")

    async def decide_approval(self, approval_id: str, status: ApprovalStatus, *,
                              decided_by: str, reason: str | None = None) -> Approval:
        return self.store.decide_approval(approval_id, status, decided_by=decided_by,
                                          reason=reason)

    async def aclose(self) -> None:
        return None


def _refuse_if_over(hive: Hive, verb: str) -> None:
    if hive.status.terminal:
        raise Conflict(f"hive {hive.id} is {hive.status.value} and can't be {verb}; "
                       "nothing was changed.")
