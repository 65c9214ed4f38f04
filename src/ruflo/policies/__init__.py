"""Policies decide who acts next: swarm, company, and the solo and round-robin baselines.

Pure (no I/O, no store, no asyncio). Swarm, round robin and solo: the simulator, the live engine
and the distributed worker run the same policy object (`choose` and its reactions). Company: the
simulator runs `CompanyPolicy` whole; the live company engine asks the same object's rules for
every decision (`decide_ticket`, `escalation`, `working_owner`...) over its stored board, and
resolves a delegation with an LLM planner where the simulator uses a timed stand-in. See `Policy`
for the run loop an engine follows, and `ruflo.engine.dispatch` for how a decision is carried out.
"""

from __future__ import annotations

from collections.abc import Sequence

from ruflo.errors import PolicyError
from ruflo.model import Mode
from ruflo.policies.base import (
    AgentLike,
    AssignedWork,
    AwaitApproval,
    BasePolicy,
    Decision,
    Decompose,
    Delegate,
    Escalate,
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
    TicketView,
    acting_root,
    choose_delegate,
    delegation_score,
    nearest_live_manager,
    part_load,
    working_owner,
)
from ruflo.policies.swarm import SwarmParams, SwarmPolicy

__all__ = [
    "AgentLike",
    "AssignedWork",
    "AwaitApproval",
    "BasePolicy",
    "Board",
    "BoardTask",
    "CompanyParams",
    "CompanyPolicy",
    "Decision",
    "Decompose",
    "Delegate",
    "Escalate",
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
    "TicketView",
    "acting_root",
    "choose_delegate",
    "delegation_score",
    "find_cycle",
    "make_policy",
    "nearest_live_manager",
    "part_load",
    "working_owner",
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
