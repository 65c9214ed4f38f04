"""Runs every workload in every mode for every seed — live through the engine and the gateway, each
run in a fresh copy of its fixture, or in the simulator — and measures each run from its events
and ledger. Depends on the engine, the store and gateway protocols, workloads and metrics.
"""

from __future__ import annotations

import asyncio
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ruflo.compare.by_agent import agent_figures
from ruflo.compare.metrics import RunMetrics, run_metrics, simulated_record
from ruflo.compare.metrics import timeline as timeline_of
from ruflo.compare.workloads import BUILTIN, builtin_path
from ruflo.engine.isolation import prepare_workspace
from ruflo.engine.start import HiveSpec, start_hive
from ruflo.errors import ConfigError, PolicyError, RufloError
from ruflo.event_kinds import EventKind
from ruflo.model import CANCELLED_BY, Agent, Event, Hive, HiveStatus, Mode, Task, new_id

if TYPE_CHECKING:
    from ruflo.engine.board_engine import BoardEngine, LiveParams
    from ruflo.engine.company import CompanyEngine
    from ruflo.engine.conflicts import ConflictRule
    from ruflo.gateway.base import Gateway
    from ruflo.store.base import Store
    from ruflo.workload import Lineup, Workload

BASELINE = "baseline"
KILLED_VARIANT = "killed"

LIVE_ENGINE = ("live: ruflo.engine.company.engine_for — ruflo.engine.company (company), "
               "ruflo.engine.board_engine (swarm, solo, round_robin)")
"""What drives live runs, as the report's settings name it."""

APPROVAL_KINDS = ("budget_override", "hire", "strategy")
APPROVAL_DECISIONS = ("reject", "approve", "ask")

ROOT_NAME = "ceo"
LEAD_NAME = "lead"
COMPANY_DEPTH = 2
"""Delegations a ticket may go down from the objective: root → lead → engineer."""
COMPANY_ORG = ("a company run uses the org chart of its agents (the --agents FILE line-up's, "
               "else the workload's) when they have reports_to; "
               f"otherwise a generated one: a root ({ROOT_NAME!r}) over one lead ({LEAD_NAME!r}) "
               "over the same engineers the swarm gets (the --agents FILE line-up, the "
               "workload's agents, or --agents N "
               "specialists named by skill), so both modes have the same hands on the work and "
               "the managers' calls are the coordination cost. The root gets the objective as "
               "one ticket (with the workload's tasks as the suggested breakdown) and plans it.")
"""How company runs are organised, as the report's settings say it."""


def approval_policy(decision: str) -> dict[str, str] | None:
    """The hive config `approvals` of company runs: every approval kind decided the same way
    without a person (reject, approve), or None (ask: a person decides with `ruflo approval`)."""
    if decision not in APPROVAL_DECISIONS:
        raise PolicyError(f"--approvals must be one of {', '.join(APPROVAL_DECISIONS)} (got "
                          f"{decision!r}); nothing was run")
    return None if decision == "ask" else dict.fromkeys(APPROVAL_KINDS, decision)


@dataclass(frozen=True, slots=True)
class WorkloadRef:
    """A workload as named on the command line: built-in, a YAML file, or a simulated shape."""

    name: str
    path: Path | None
    """The YAML file; None for a shape."""
    shape: str | None = None


def resolve(names: Sequence[str]) -> list[WorkloadRef]:
    """Built-in names (ticket, bug, feature, registry), shapes (wide, deep, mixed) or paths to
    YAML files."""
    from ruflo.engine.shapes import SHAPES

    refs = []
    for name in names:
        path = Path(name)
        if path.is_file():
            refs.append(WorkloadRef(path.stem, path))
        elif name in BUILTIN:
            refs.append(WorkloadRef(name, builtin_path(name)))
        elif name in SHAPES:
            refs.append(WorkloadRef(name, None, shape=name))
        else:
            raise ConfigError(f"no workload {name!r}: give a YAML file, a built-in workload "
                              f"({', '.join(BUILTIN)}) or a simulated shape ({', '.join(SHAPES)}); "
                              "nothing was run")
    return refs


@dataclass(slots=True)
class RunRecord:
    """One run: which workload, mode, seed and variant; how it ended; what it measured."""

    workload: str
    mode: str
    seed: int
    variant: str
    status: str = "ok"
    """ok, or "unavailable: why", "error: what", "timed out"."""
    hive_id: str | None = None
    workspace: str | None = None
    metrics: RunMetrics | None = None
    timeline: list[dict[str, Any]] = field(default_factory=list)
    time_unit: str = "s"
    detail: dict[str, Any] = field(default_factory=dict)
    agents: list[dict[str, Any]] = field(default_factory=list)
    """Who did what: one row per agent (compare.by_agent.agent_figures)."""

    @property
    def id(self) -> str:
        return f"{self.workload}/{self.mode}/{self.seed}/{self.variant}"

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "workload": self.workload, "mode": self.mode, "seed": self.seed,
                "variant": self.variant, "status": self.status, "hive_id": self.hive_id,
                "workspace": self.workspace, "time_unit": self.time_unit,
                "metrics": self.metrics.to_json() if self.metrics is not None else None,
                "detail": self.detail, "agents": self.agents, "timeline": self.timeline}


@dataclass(frozen=True, slots=True)
class Plan:
    """What to run."""

    workloads: tuple[WorkloadRef, ...]
    modes: tuple[Mode, ...]
    seeds: tuple[int, ...]
    agents: int | None = None
    """Agents per run when a workload names none (default: 4 live, 100 simulated); a live
    company gets these as engineers under its generated root and lead (COMPANY_ORG)."""
    simulate: bool = False
    kill_fraction: float | None = None
    tasks: int = 1000
    """Tasks of a generated shape."""
    files: int = 0
    """Simulated shapes: each task touches FILES_PER_TASK files drawn from a pool of this many
    (0: none, no conflicts); a workload file's tasks touch the `files:` they list."""
    conflict_probability: float = 0.3
    """Simulated runs: chance that two concurrent tasks sharing a file conflict
    (engine/conflicts.py)."""
    lineup: Lineup | None = None
    """`--agents FILE`: the agents every run uses instead of the workload's (live: with their
    adapters; simulated: their names and skills)."""
    approvals: str = "reject"
    """How company runs decide approvals (budget override, hire, strategy) without a person:
    reject (default: an unattended run neither waits for a person nor spends past a cap),
    approve, or ask (a person decides with `ruflo approval`; the run waits)."""

    @property
    def auto_approval(self) -> dict[str, str] | None:
        """The policy company runs get (None when no company run is planned, or ask)."""
        if Mode.COMPANY not in self.modes:
            return None
        return approval_policy(self.approvals)

    @property
    def variants(self) -> tuple[str, ...]:
        return (BASELINE, KILLED_VARIANT) if self.kill_fraction else (BASELINE,)

    @property
    def total(self) -> int:
        return len(self.workloads) * len(self.modes) * len(self.seeds) * len(self.variants)


FILES_PER_TASK = 2


def conflict_rule(plan: Plan, tasks: Sequence[Any], files: dict[str, tuple[str, ...]],
                  seed: int) -> ConflictRule:
    """The simulator's conflict rule for one run: the workload's files, or for a shape
    FILES_PER_TASK drawn from a pool of `plan.files`."""
    from ruflo.engine.conflicts import ConflictRule, draw_files

    if not files and plan.files:
        files = draw_files([t.id for t in tasks], plan.files, FILES_PER_TASK, seed)
    return ConflictRule(files, plan.conflict_probability)


def kill_count(fraction: float, agents: int) -> int:
    """Agents to kill: the fraction rounded, at least one, never all."""
    return max(1, min(agents - 1, round(fraction * agents)))


# -- simulated runs ------------------------------------------------------------------------------
def run_simulated(plan: Plan, ref: WorkloadRef, mode: Mode, seed: int,
                  variant: str) -> RunRecord:
    """One simulated run: the simulator's timeline mapped to events and ledger, then measured."""
    from ruflo.engine.shapes import mixed_agents, shape_agents, shape_tasks
    from ruflo.engine.simulate import KillPlan, lower_bound, simulate

    agents_n = plan.agents or 100
    tasks: Sequence[Any]
    files: dict[str, tuple[str, ...]] = {}
    if ref.shape is not None:
        tasks = shape_tasks(ref.shape, plan.tasks, seed)
        crew = shape_agents(ref.shape, agents_n)
    else:
        assert ref.path is not None
        workload = _load(ref)
        tasks, files = workload.tasks, workload.files
        crew = list(workload.agents) if workload.agents and plan.agents is None else \
            mixed_agents(agents_n, workload.skills)
    if plan.lineup is not None:
        crew = list(plan.lineup.agents)
    record = RunRecord(ref.name, mode.value, seed, variant, time_unit="effort units")
    kill = None
    victims: list[str] = []
    at = None
    if variant == KILLED_VARIANT and plan.kill_fraction:
        if len(crew) < 2:
            record.status = "unavailable: killing agents needs at least two"
            return record
        at = lower_bound(tasks, len(crew))[2] / 2
        victims = random.Random(f"kill:{seed}").sample(
            [a.id for a in crew], kill_count(plan.kill_fraction, len(crew)))
        kill = KillPlan(plan.kill_fraction, at, agents=tuple(victims))
    result = simulate(tasks, crew, mode, seed=seed, kill=kill, record=True,
                      conflicts=conflict_rule(plan, tasks, files, seed))
    events, ledger, board = simulated_record(result, tasks, killed=victims, kill_at=at,
                                             hive_id=f"sim-{ref.name}-{mode.value}-{seed}")
    record.metrics = run_metrics(events, ledger, board)
    record.timeline = timeline_of(events)
    specs = {t.id: t for t in tasks}  # the simulator's board keeps no skills: the specs do
    learned = result.thresholds or {}  # a swarm's, kept for up to the simulator's detail limit
    record.agents = agent_figures(events, ledger, [
        replace(t, skills=tuple(getattr(specs.get(t.id), "skills", ()))) for t in board],
        [replace(a, thresholds={k: round(v, 4) for k, v in learned[a.id].items()})
         if a.id in learned else a for a in crew],
        thresholds=mode is Mode.SWARM and bool(learned))
    record.detail = {"agents": len(crew), "lower_bound": result.lower_bound,
                     "makespan_over_lb": result.ratio, "utilisation": result.utilisation,
                     "stalled": result.stalled, "killed_at": at, "killed": victims,
                     "conflict_probability": plan.conflict_probability,
                     "files": plan.files if ref.shape is not None else "the workload's"}
    return record


def _load(ref: WorkloadRef) -> Workload:
    from ruflo.workload import load_workload

    assert ref.path is not None
    return load_workload(ref.path)


# -- live runs -----------------------------------------------------------------------------------
@dataclass(slots=True)
class LiveSetup:
    """What every live run shares: the store, the gateway, the engine's settings."""

    store: Store
    gateway: Gateway
    params: LiveParams
    root: Path
    """Folder under which each run gets its own workspace."""
    model: str
    env: dict[str, str]
    run_timeout: float = 900.0
    unavailable: dict[str, str] = field(default_factory=dict)
    """Mode → why the live engine cannot run it (learned from the first try)."""


def command_env() -> dict[str, str]:
    """The scrubbed command environment, with this Python first on PATH so a workload's
    `python -m unittest` runs where ruflo runs."""
    import os

    from ruflo.agents.commands import command_env as base

    env = base()
    here = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([here, env.get("PATH", "")]).rstrip(os.pathsep)
    return env


async def run_live(setup: LiveSetup, plan: Plan, ref: WorkloadRef, mode: Mode, seed: int,
                   variant: str) -> RunRecord:
    """One live run: a fresh copy of the fixture made a git repository (every attempt in its
    own worktree, merged by ruflo: `prepare_workspace`), a new hive in the store, its engine
    (`engine_for`: the company engine for company mode, the live engine otherwise) until the
    hive ends, then the workload's verify command on the final tree (the integration branch;
    an event; the run's folder is brought up to it, `final_tree`), and the metrics from the
    hive's events and ledger.

    Swarm, solo and round robin get the workload's tasks on the board; a company gets the
    objective as one ticket owned by its root, which plans it (see COMPANY_ORG)."""
    record = RunRecord(ref.name, mode.value, seed, variant)
    if ref.shape is not None:
        record.status = "unavailable: shapes are simulated only (use --simulate)"
        return record
    if mode.value in setup.unavailable:
        record.status = f"unavailable: {setup.unavailable[mode.value]}"
        return record
    workload = _load(ref)
    store = setup.store
    hive_id = new_id()
    workspace = setup.root / f"{ref.name}-{mode.value}-{seed}-{variant}-{hive_id[:8]}"
    # A run's folder: the fixture (or nothing) as a new repository's first commit, git isolation.
    isolation = dict(prepare_workspace(workspace, "git", fixture=workload.fixture).config)
    crew = live_agents(workload, plan.agents or 4, hive_id, mode, plan.lineup)
    config: dict[str, Any] = {"seed": seed, "compare": record.id, "verify": workload.verify,
                              "auto_approval": None, **isolation}
    if mode is Mode.COMPANY:
        policy = approval_policy(plan.approvals)
        config.update(auto_approval=policy, max_depth=COMPANY_DEPTH)
        if policy is not None:
            config["approvals"] = policy  # what the company engine reads
        tasks = [objective_ticket(workload, hive_id, root_of(crew))]
    else:
        from ruflo.engine.plan import tasks_for_hive

        tasks = tasks_for_hive(hive_id, workload.tasks)
    # The workload's tasks (or the company's one ticket) are the first board: nothing to plan.
    await start_hive(store, HiveSpec(
        id=hive_id, name=f"compare {ref.name} · {mode.value} · seed {seed}"
                         + (" · killed" if variant == KILLED_VARIANT else ""),
        mode=mode, objective=workload.objective, workspace=str(workspace), config=config,
        agents=crew, tasks=tasks), None)
    store.append_event(hive_id, EventKind.COMPARE_RUN_STARTED, data={
        "run": record.id, "mode": mode.value, "auto_approval": config["auto_approval"],
        "org": None if mode is not Mode.COMPANY else org_source(workload, plan.lineup),
        "lineup": str(plan.lineup.source) if plan.lineup is not None else None})
    record.hive_id, record.workspace = hive_id, str(workspace)

    from ruflo.engine.company import engine_for

    engine = engine_for(store, hive_id, gateway=setup.gateway,
                        params=replace(setup.params, seed=seed), model=setup.model,
                        env=setup.env)
    killer = None
    if variant == KILLED_VARIANT and plan.kill_fraction:
        killer = asyncio.create_task(_kill_mid_run(engine, store, hive_id, crew,
                                                   plan.kill_fraction, seed))
    try:
        async with asyncio.timeout(setup.run_timeout):
            await engine.run()
    except TimeoutError:
        record.status = f"timed out after {setup.run_timeout:g} s"
        store.set_hive_status(hive_id, HiveStatus.CANCELLED, reason="compare: run timed out")
    except RufloError as error:
        started = store.events(hive_id, kinds=[EventKind.ENGINE_STARTED])
        current = store.get_hive(hive_id)
        if not current.status.terminal:
            store.set_hive_status(hive_id, HiveStatus.CANCELLED, reason=f"compare: {error}")
        if not started and isinstance(error, ConfigError):
            setup.unavailable[mode.value] = str(error)
            record.status = f"unavailable: {error}"
            return record
        record.status = f"error: {error}"
    finally:
        if killer is not None:
            killer.cancel()
            await asyncio.gather(killer, return_exceptions=True)
    final = store.get_hive(hive_id)
    result = final_tree(final)
    await verify_workspace(store, hive_id, workload, Path(result["verified_in"]), setup.env)
    events = store.events(hive_id)
    ledger = store.ledger(hive_id=hive_id)
    board = store.list_tasks(hive_id)
    record.metrics = run_metrics(events, ledger, board)
    record.timeline = timeline_of(events)
    record.agents = agent_figures(events, ledger, board, store.list_agents(hive_id),
                                  thresholds=mode is Mode.SWARM)
    record.detail = {"agents": len(crew), "hive_status": final.status.value,
                     "hive_reason": final.pause_reason, "isolation": result}
    if mode is Mode.COMPANY:
        record.detail["org"] = [{"agent": a.id, "name": a.name, "role": a.role,
                                 "reports_to": a.reports_to, "skills": list(a.skills)}
                                for a in crew]
        record.detail["company"] = company_figures(events)
        record.detail["auto_approval"] = config["auto_approval"]
    return record


def final_tree(hive: Hive) -> dict[str, Any]:
    """Where a finished run's result is, and the run's folder brought up to it: the hive's
    integration branch (`ruflo/<hive>`) is merged into the folder's own branch (ruflo made the
    folder, nobody else edits it), so the folder holds the final tree. The verify runs on the
    integration worktree, as the engine's objective verify does; `applied` is the folder's new
    head, or why the branch could not be merged (then the folder keeps the fixture)."""
    from ruflo.agents.gitwork import GitError
    from ruflo.engine.isolation import hive_repo

    assert hive.workspace is not None
    info: dict[str, Any] = {"isolation": hive.config.get("isolation"),
                            "start_commit": hive.config.get("start_commit"),
                            "verified_in": hive.workspace}
    try:
        repo = hive_repo(hive)
        info["branch"] = repo.branch
        if (repo.integration / ".git").exists():
            info["verified_in"] = str(repo.integration)
        info["applied"] = repo.apply_to_user_branch()
    except (GitError, ConfigError) as error:
        info["applied"] = None
        info["not_applied"] = str(error)
    return info


def company_figures(events: Sequence[Event]) -> dict[str, Any]:
    """How a company run was organised, counted from its events: planning calls, delegations
    (and how many the capability check corrected), escalations, reassignments, refused plans,
    fallbacks to the heuristic, and approvals with who decided them."""
    def count(kind: str) -> int:
        return sum(e.kind == kind for e in events)

    approvals: dict[str, dict[str, Any]] = {}
    for event in events:
        approval_id = event.data.get("approval_id")
        if event.kind == EventKind.APPROVAL_REQUESTED and isinstance(approval_id, str):
            approvals[approval_id] = {"id": approval_id, "kind": event.data.get("kind"),
                                      "subject": event.data.get("subject"), "status": "pending",
                                      "decided_by": None}
        elif event.kind == EventKind.APPROVAL_DECIDED and approval_id in approvals:
            approvals[approval_id].update(status=event.data.get("status"),
                                          decided_by=event.data.get("decided_by"))
        elif event.kind == EventKind.APPROVAL_CANCELLED and approval_id in approvals:
            approvals[approval_id].update(status="cancelled", decided_by=CANCELLED_BY)

    return {
        "plans": count(EventKind.TICKET_PLANNED), "delegations": count(EventKind.TICKET_DELEGATED),
        "corrected_delegations": sum(e.kind == EventKind.TICKET_DELEGATED
                                     and e.data.get("chosen_by") == "capability check"
                                     for e in events),
        "escalations": count(EventKind.TICKET_ESCALATED),
        "reassignments": count(EventKind.TICKET_REASSIGNED),
        "plans_refused": count(EventKind.PLAN_REFUSED),
        "plan_fallbacks": count(EventKind.PLAN_FALLBACK),
        "approvals": list(approvals.values()),
    }


def objective_ticket(workload: Workload, hive_id: str, root: str) -> Task:
    """The company's one ticket: the objective, owned by the root, checked by the workload's
    verify command. Its description carries the workload's tasks as a suggested breakdown, so
    the root plans from what the swarm is given."""
    lines = [workload.objective.strip(), "",
             "The work as the workload breaks it down (plan it into tickets for your reports):"]
    for task in workload.tasks:
        after = [t.title for t in workload.tasks if t.id in task.depends_on]
        lines.append(f"- {task.title}" + (f" [{', '.join(task.skills)}]" if task.skills else "")
                     + (f" (after: {'; '.join(after)})" if after else "")
                     + (f": {task.description.strip()}" if task.description.strip() else "")
                     + (f" Verify: `{task.verify}`" if task.verify else ""))
    objective = workload.objective.strip()
    title = objective.splitlines()[0][:200] if objective else workload.name
    return Task(id=f"{hive_id[:8]}.objective", hive_id=hive_id, title=title,
                description="\n".join(lines).strip(), skills=tuple(workload.skills),
                effort=sum(t.effort for t in workload.tasks) or 1.0,
                verify=workload.verify or None, assignee=root)


def root_of(crew: Sequence[Agent]) -> str:
    return next(a.id for a in crew if a.reports_to is None)


def live_agents(workload: Workload, n: int, hive_id: str, mode: Mode,
                lineup: Lineup | None = None) -> list[Agent]:
    """The line-up's agents (`--agents FILE`), else the workload's, else N specialists dealt
    over its skills and named by them (`python-1`, `docs-1`); in company mode without an org
    chart, those agents as engineers under a generated root and lead (COMPANY_ORG). Ids are
    made unique to the hive."""
    if lineup is not None:
        crew, has_org = list(lineup.agents), lineup.has_org
    else:
        crew, has_org = list(workload.agents) or engineers(n, workload.skills), workload.has_org
    if mode is Mode.COMPANY and not has_org:
        crew = company_org(crew)

    def own(agent_id: str) -> str:
        return f"{hive_id[:8]}.{agent_id}"

    return [replace(a, id=own(a.id), hive_id=hive_id,
                    reports_to=own(a.reports_to) if a.reports_to else None) for a in crew]


def org_source(workload: Workload, lineup: Lineup | None) -> str:
    """Where a company run's org chart comes from, as its `compare_run_started` event says."""
    if lineup is not None:
        return "the --agents file's" if lineup.has_org else \
            "generated (root, lead, the --agents file's agents)"
    return "the workload's" if workload.has_org else "generated (root, lead, engineers)"


def engineers(n: int, skills: Sequence[str]) -> list[Agent]:
    """N specialists dealt over the skills in equal shares (`mixed_agents`), each named after
    its first skill and a count; generalists are `agent-N`."""
    from ruflo.engine.shapes import mixed_agents

    counts: dict[str, int] = {}
    named = []
    for agent in mixed_agents(n, skills):
        kind = agent.skills[0] if agent.skills else "agent"
        counts[kind] = counts.get(kind, 0) + 1
        name = f"{kind}-{counts[kind]}"
        named.append(replace(agent, id=name, name=name))
    return named


def company_org(crew: Sequence[Agent]) -> list[Agent]:
    """The generated org of a company run: a root over one lead over the crew as engineers."""
    taken = {a.id for a in crew} | {a.name for a in crew}

    def free(name: str) -> str:
        n, candidate = 1, name
        while candidate in taken:
            n += 1
            candidate = f"{name}-{n}"
        taken.add(candidate)
        return candidate

    root, lead = free(ROOT_NAME), free(LEAD_NAME)
    skills = list(dict.fromkeys(s for a in crew for s in a.skills))
    return [
        Agent(id=root, hive_id="", name=root, role="ceo", title="head of the company",
              capabilities="plans the objective into tickets and delegates them"),
        Agent(id=lead, hive_id="", name=lead, role="manager", title="engineering lead",
              capabilities="leads the engineers"
                           + (f" ({', '.join(skills)})" if skills else ""),
              reports_to=root),
        *(replace(a, reports_to=lead, role="engineer" if a.role == "worker" else a.role,
                  capabilities=a.capabilities or f"{', '.join(a.skills) or 'general'} engineer")
          for a in crew)]


async def _kill_mid_run(engine: BoardEngine | CompanyEngine, store: Store, hive_id: str, crew: Sequence[Agent],
                        fraction: float, seed: int) -> None:
    """When the first task is claimed, kill a fraction of the agents as crashed processes die:
    the first claimer (so the kill hits work in flight) and others chosen by the seed."""
    while True:
        claims = store.events(hive_id, kinds=[EventKind.TASK_CLAIMED], limit=1)
        if claims:
            break
        await asyncio.sleep(0.02)
    first = claims[0].agent_id
    others = [a.id for a in crew if a.id != first]
    count = kill_count(fraction, len(crew))
    victims = ([first] if first else []) + random.Random(f"kill:{seed}").sample(
        others, max(0, count - (1 if first else 0)))
    for agent_id in victims:
        engine.kill_agent(agent_id)
        store.append_event(hive_id, EventKind.COMPARE_AGENT_KILLED, agent_id=agent_id,
                           data={"fraction": fraction, "reason": "compare --kill-fraction"})


async def verify_workspace(store: Store, hive_id: str, workload: Workload, workspace: Path,
                           env: dict[str, str]) -> None:
    """Run the workload's verify command on the final tree (`workspace`: the integration
    worktree of a git hive); its verdict is an event."""
    if not workload.verify:
        return
    from ruflo.agents.commands import run_command

    result = await run_command(workload.verify, cwd=workspace, env=env, time_limit=600.0,
                               grace=3.0, output_limit=64_000)
    store.append_event(hive_id, EventKind.COMPARE_VERIFIED, data={
        "command": workload.verify, "folder": str(workspace), "passed": result.ok,
        "exit_code": result.exit_code, "timed_out": result.timed_out,
        "output": result.output[-2000:]})


# -- the whole comparison ------------------------------------------------------------------------
def check(plan: Plan) -> None:
    if not plan.workloads or not plan.modes or not plan.seeds:
        raise ConfigError("compare needs at least one workload, one mode and one seed; "
                          "nothing was run")
    approval_policy(plan.approvals)
    if not 0 <= plan.conflict_probability <= 1 or plan.files < 0:
        raise PolicyError("--conflict-probability must be in [0, 1] and --files >= 0 (got "
                          f"{plan.conflict_probability}, {plan.files}); nothing was run")
    if plan.kill_fraction is not None and not 0 < plan.kill_fraction < 1:
        raise PolicyError(f"--kill-fraction must be between 0 and 1 (got {plan.kill_fraction}); "
                          "nothing was run")
    for ref in plan.workloads:
        if ref.path is not None:
            _load(ref)  # refuse a bad file before anything runs
    if plan.lineup is not None and not plan.simulate:
        check_adapters(plan.lineup)


def check_adapters(lineup: Lineup) -> None:
    """Refuse, before anything runs, a line-up whose agents could not start: a process agent
    without a command, an agent CLI ruflo has no preset for, or whose program is not installed."""
    import os

    from ruflo.agents.presets import find_program, preset_for
    from ruflo.agents.process import parse_command
    from ruflo.model import AdapterKind

    where = f"agents file {lineup.source}" if lineup.source is not None else "agents file"
    for agent in lineup.agents:
        try:
            if agent.adapter is AdapterKind.PROCESS:
                parse_command(agent.adapter_config.get("command"), agent)
            elif agent.adapter.is_agent_cli:
                preset = preset_for(agent.adapter)
                if find_program(preset, agent.adapter_config, os.environ.get("PATH")) is None:
                    raise ConfigError(
                        f"agent {agent.name} uses {agent.adapter.value}, but its program "
                        f"{agent.adapter_config.get('program') or preset.program!r} is not "
                        f"installed (scripts/install installs {preset.package}, or set "
                        "config.program)")
        except ConfigError as error:
            said = str(error).removesuffix("; nothing was run")
            raise ConfigError(f"{where}: {said}; nothing was run") from None


def run_plan_simulated(plan: Plan, on_run: Callable[[RunRecord], None]) -> list[RunRecord]:
    records = []
    for ref in plan.workloads:
        for mode in plan.modes:
            for seed in plan.seeds:
                for variant in plan.variants:
                    record = run_simulated(plan, ref, mode, seed, variant)
                    records.append(record)
                    on_run(record)
    return records


async def run_plan_live(plan: Plan, setup: LiveSetup,
                        on_run: Callable[[RunRecord], None]) -> list[RunRecord]:
    records = []
    for ref in plan.workloads:
        for mode in plan.modes:
            for seed in plan.seeds:
                for variant in plan.variants:
                    record = await run_live(setup, plan, ref, mode, seed, variant)
                    records.append(record)
                    on_run(record)
    return records

