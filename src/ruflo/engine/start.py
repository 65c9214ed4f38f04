"""How every hive starts, whoever starts it (`ruflo orchestrate`, the server's create route, MCP's
create_hive, compare): what it is started with (`HiveSpec`), storing it, and its first board.
Depends on the model, the Store and Gateway protocols and engine/plan.py.

The first board follows one rule (`seed_board`):
1. Tasks given with the hive (a workload file, REST `tasks`, compare's workload) are the board.
2. A company hive gets nothing more: its root plans the objective (engine/company.py).
3. Otherwise the objective is planned into tasks by ONE metered coordination call to the planner
   (`Planner`, engine/plan.py), when the starter can reach a gateway: the CLI always, a server
   that drives its hives, `ruflo mcp` with a gateway configured. A refused plan fails the hive
   (event `plan_refused`) and nothing is posted.
4. A starter without a gateway keeps what it did before one rule existed: a server that only
   records posts the objective as one task, which agents may split on the board; `ruflo mcp`
   leaves the board empty, since its client (a coding agent) plans and posts the tasks itself.
Seeding happens once: a board that holds any task is left as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

from ruflo import telemetry
from ruflo.errors import PolicyError
from ruflo.event_kinds import EventKind
from ruflo.model import JSON, LOCAL_USER, Agent, Budget, Hive, HiveStatus, Mode, Task, new_id

if TYPE_CHECKING:
    from ruflo.config import Settings
    from ruflo.gateway.base import Gateway
    from ruflo.store.base import Store

__all__ = ["GatewayPlanner", "HiveSpec", "Planner", "SettingsPlanner", "create_hive",
           "objective_task", "planner_from_settings", "seed_board", "start_hive"]


@dataclass(frozen=True)
class HiveSpec:
    """What a hive is started with. Agents and tasks carry their store ids and `id` as their
    hive (the starters name them each their own way: `3f9a2c1b.build` from a workload, fresh ids
    over REST)."""

    objective: str
    """What the hive should achieve; planned into the first board when no tasks are given."""
    mode: Mode
    name: str
    agents: Sequence[Agent]
    """The members (an org chart for company mode); outside agents may join later by claiming."""
    tasks: Sequence[Task] = ()
    """The first tasks; none means the objective is seeded (see the module's rule)."""
    budget: Budget = field(default_factory=Budget)
    workspace: str | None = None
    """The folder the agents and verify commands work in."""
    config: JSON = field(default_factory=dict)
    """Run settings stored with the hive: seed, time_unit, lease_seconds, model, verify, ..."""
    owner: str = LOCAL_USER
    id: str = field(default_factory=new_id)

    def hive(self) -> Hive:
        return Hive(id=self.id, name=self.name, mode=self.mode, objective=self.objective,
                    budget=self.budget, workspace=self.workspace, config=dict(self.config),
                    owner=self.owner)


class Planner(Protocol):
    """Plans an objective into tasks with one metered coordination call (engine/plan.py)."""

    @property
    def model(self) -> str:
        """The model asked (named in the CLI's progress line)."""
        ...

    async def plan(self, hive: Hive, *, agents: int) -> tuple[list[Task], str]:
        """The tasks (ids ready for the store) and the planner's raw answer; PolicyError when
        the answer is not a usable plan."""
        ...


@dataclass(frozen=True)
class GatewayPlanner:
    """The planner on a gateway the starter holds open (the CLI's, the server's)."""

    gateway: Gateway
    model: str

    async def plan(self, hive: Hive, *, agents: int) -> tuple[list[Task], str]:
        from ruflo.engine.plan import plan_objective

        return await plan_objective(self.gateway, hive, model=self.model, agents=agents)


@dataclass(frozen=True)
class SettingsPlanner:
    """The planner for a starter that holds no gateway open (`ruflo mcp`): a client from the
    settings for the one call, metered into `store`."""

    settings: Settings
    store: Store
    model: str

    async def plan(self, hive: Hive, *, agents: int) -> tuple[list[Task], str]:
        from ruflo.gateway.client import GatewayClient

        async with GatewayClient.from_settings(self.settings, store=self.store) as gateway:
            return await GatewayPlanner(gateway, self.model).plan(hive, agents=agents)


def planner_from_settings(settings: Settings, store: Store) -> SettingsPlanner | None:
    """A planner when the settings name a gateway and its key, else None."""
    key = settings.openai_api_key
    if not settings.gateway_url or key is None or not key.get_secret_value():
        return None
    return SettingsPlanner(settings, store, settings.model)


def create_hive(store: Store, spec: HiveSpec) -> Hive:
    """Store the hive with its agents and given tasks (one transaction; nothing is planned)."""
    hive = spec.hive()
    traceparent = telemetry.hive_traceparent(hive.id, hive.name, hive.mode.value)
    if traceparent is not None:  # the hive's trace: every process working it joins it
        hive = replace(hive, config={**hive.config,
                                                 telemetry.TRACEPARENT: traceparent})
    return store.create_hive(hive, agents=list(spec.agents), tasks=list(spec.tasks))


async def seed_board(store: Store, hive_id: str, planner: Planner | None, *,
                     say: Callable[[str], None] | None = None) -> list[Task]:
    """The hive's first board by the module's rule; returns what was posted (nothing when the
    board already holds tasks, or for a company). A planner's refused answer fails the hive and
    raises PolicyError saying why."""
    hive = store.get_hive(hive_id)
    if hive.mode is Mode.COMPANY or any(store.count_tasks(hive_id).values()):
        return []
    if planner is None:
        return store.post_tasks(hive_id, [objective_task(hive)])
    if say is not None:
        say(f"planning the objective with {planner.model} (one coordination call)…")
    try:
        with telemetry.joined(hive.config.get(telemetry.TRACEPARENT)), \
                telemetry.span("plan objective", {"ruflo.hive.id": hive_id}):
            tasks, answer = await planner.plan(hive, agents=len(store.list_agents(hive_id)))
    except PolicyError as error:
        store.set_hive_status(hive_id, HiveStatus.FAILED,
                              reason="the objective could not be planned")
        store.append_event(hive_id, EventKind.PLAN_REFUSED, data={"error": str(error)})
        raise
    with store.transaction():
        posted = store.post_tasks(hive_id, tasks)
        store.append_event(hive_id, EventKind.OBJECTIVE_PLANNED,
                           data={"tasks": len(tasks), "answer": answer[:4000]})
    if say is not None:
        say(f"planned {len(tasks)} tasks")
    return posted


async def start_hive(store: Store, spec: HiveSpec, planner: Planner | None, *,
                     say: Callable[[str], None] | None = None) -> Hive:
    """Store the hive, then seed its first board."""
    hive = create_hive(store, spec)
    await seed_board(store, hive.id, planner, say=say)
    return store.get_hive(hive.id)


def objective_task(hive: Hive) -> Task:
    """A hive's objective as its first task (agents may split it on the board)."""
    text = hive.objective.strip()
    title = text.splitlines()[0] if text else hive.name or "objective"
    verify = hive.config.get("verify")
    return Task(id=new_id(), hive_id=hive.id, title=title if len(title) <= 200
                else title[:199] + "…", description=hive.objective,
                verify=verify if isinstance(verify, str) and verify.strip() else None)
