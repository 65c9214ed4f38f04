"""One exhaustive dispatch over a policy's `Decision`, shared by every engine: the simulator, the
live engine (swarm, round robin, solo) and the live company engine each carry a decision out
through `carry_out`, so a new verb is a type error in each until it is handled.
Depends on ruflo.policies only.
"""

from __future__ import annotations

from typing import Protocol, TypeVar, assert_never

from ruflo.policies.base import (
    AwaitApproval,
    Decision,
    Decompose,
    Delegate,
    Escalate,
    Idle,
    Take,
)

__all__ = ["DecisionHandler", "carry_out"]

C_contra = TypeVar("C_contra", contravariant=True)
R_co = TypeVar("R_co", covariant=True)
C = TypeVar("C")
R = TypeVar("R")


class DecisionHandler(Protocol[C_contra, R_co]):
    """What an engine does for each verb; `context` is what it decides for (agent, time...)."""

    def take(self, context: C_contra, decision: Take) -> R_co: ...
    def decompose(self, context: C_contra, decision: Decompose) -> R_co: ...
    def delegate(self, context: C_contra, decision: Delegate) -> R_co: ...
    def escalate(self, context: C_contra, decision: Escalate) -> R_co: ...
    def await_approval(self, context: C_contra, decision: AwaitApproval) -> R_co: ...
    def idle(self, context: C_contra, decision: Idle) -> R_co: ...


def carry_out(handler: DecisionHandler[C, R], context: C, decision: Decision) -> R:
    """Hand the decision to the handler's method for its verb."""
    match decision:
        case Take():
            return handler.take(context, decision)
        case Idle():
            return handler.idle(context, decision)
        case Delegate():
            return handler.delegate(context, decision)
        case Decompose():
            return handler.decompose(context, decision)
        case Escalate():
            return handler.escalate(context, decision)
        case AwaitApproval():
            return handler.await_approval(context, decision)
        case _:
            assert_never(decision)
