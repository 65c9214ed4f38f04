"""Policies decide who acts next: swarm, company, and the solo and round-robin baselines.

Pure (no I/O, no store, no asyncio): the simulator, the live engine and the distributed worker
all run this same code. See `Policy` for the run loop an engine follows.
"""

from __future__ import annotations

from collections.abc import Sequence

from ruflo.errors import PolicyError
from ruflo.model import Mode
from ruflo.policies.base import (
    AgentLike,
    AssignedWork,
    BasePolicy,
    Decision,
    Decompose,
    Delegate,
    Idle,
    Policy,
    RandomLike,
    Take,
    TaskSpec,
)
from ruflo.policies.baselines import RoundRobinPolicy, SoloPolicy
from ruflo.policies.board import Board, BoardTask, TaskLike, find_cycle
from ruflo.policies.company import (
    CompanyParams,
    CompanyPolicy,
    OrgChart,
    choose_delegate,
    delegation_score,
)
from ruflo.policies.swarm import SwarmParams, SwarmPolicy

__all__ = [
    "AgentLike",
    "AssignedWork",
    "BasePolicy",
    "Board",
    "BoardTask",
    "CompanyParams",
    "CompanyPolicy",
    "Decision",
    "Decompose",
    "Delegate",
    "Idle",
    "OrgChart",
    "Policy",
    "RandomLike",
    "RoundRobinPolicy",
    "SoloPolicy",
    "SwarmParams",
    "SwarmPolicy",
    "Take",
    "TaskLike",
    "TaskSpec",
    "choose_delegate",
    "delegation_score",
    "find_cycle",
    "make_policy",
]


def make_policy(
    mode: Mode | str,
    agents: Sequence[AgentLike],
    *,
    seed: int = 0,
    swarm: SwarmParams | None = None,
    company: CompanyParams | None = None,
) -> BasePolicy:
    """The policy for a mode. Company mode needs an org chart: `agents` must form one (see
    OrgChart); use `OrgChart.generated` to make a default org first."""
    try:
        mode = Mode(mode)
    except ValueError:
        choices = ", ".join(m.value for m in Mode)
        raise PolicyError(f"unknown mode {mode!r}; choose one of {choices}") from None
    if mode is Mode.SWARM:
        return SwarmPolicy(swarm, seed=seed)
    if mode is Mode.COMPANY:
        return CompanyPolicy(OrgChart(agents), company)
    if mode is Mode.SOLO:
        return SoloPolicy()
    if mode is Mode.ROUND_ROBIN:
        return RoundRobinPolicy()
    raise AssertionError(mode)
