"""Workload files: YAML describing an objective, its tasks and the agents (optionally an org chart),
validated with pydantic at the edge and turned into ruflo.model Task and Agent tuples.
Depends on the model, errors, and ruflo.policies (org chart and cycle checks). Format: docs/workloads.md.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ruflo.errors import PolicyError
from ruflo.model import AdapterKind, Agent, Budget, Task

__all__ = ["MAX_FILE_BYTES", "MAX_YAML_DEPTH", "MAX_YAML_NODES", "Lineup", "Org", "Workload",
           "load_lineup", "load_org", "load_workload", "parse_lineup", "parse_org",
           "parse_workload"]

MAX_FILE_BYTES = 16 * 1024 * 1024
"""A workload or org file larger than this is refused unread (thousands of tasks fit in 1 MiB)."""
MAX_YAML_DEPTH = 64
"""Deepest nesting of lists and mappings, aliases followed, a file may have."""
MAX_YAML_NODES = 1_000_000
"""Most values a file may stand for once its aliases (`*name`) are expanded: a few hundred
bytes of anchors and aliases can stand for billions ("billion laughs"), which storing an agent's
config as JSON would write out in full."""

_SafeLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _read_yaml(text: str, where: str, *, kind: str) -> Any:
    """Parse YAML safely and within bounds: the event stream is walked first (no Python objects
    are built, no recursion) counting nesting depth and the values it stands for with every
    alias expanded; a file over MAX_YAML_DEPTH or MAX_YAML_NODES is refused before anything is
    built from it, let alone stored."""
    try:
        _check_size(text, where if where == kind else f"{kind} {where}", "nothing was stored")
        return yaml.load(text, Loader=_SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or "not valid YAML"
        if "nesting depth" in problem:  # libyaml's own bound, met while looking ahead
            problem = f"nested too deep (more than {MAX_YAML_DEPTH} levels of lists and mappings)"
        raise PolicyError(f"{where}: not valid YAML{at}: {problem}; nothing was stored") from None


def _check_size(text: str, where: str, stored: str) -> None:
    # Per open list/mapping: [anchor, values so far, height below]. Anchored values keep
    # (values, height) so that an alias counts as everything it stands for.
    anchored: dict[str, tuple[int, int]] = {}
    open_: list[list[Any]] = [[None, 0, 0]]
    total = 0
    aliases = False
    for event in yaml.parse(text, Loader=_SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            open_.append([event.anchor, 1, 0])
            if len(open_) - 1 > MAX_YAML_DEPTH:
                raise PolicyError(f"{where}: nested too deep (more than {MAX_YAML_DEPTH} "
                                  f"levels of lists and mappings); {stored}")
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            anchor, values, height = open_.pop()
            height += 1
        elif isinstance(event, yaml.ScalarEvent):
            anchor, values, height = event.anchor, 1, 0
        elif isinstance(event, yaml.AliasEvent):
            anchor, aliases = None, True
            values, height = anchored.get(event.anchor or "", (1, 0))
            if len(open_) - 1 + height > MAX_YAML_DEPTH:
                raise PolicyError(f"{where}: nested too deep through the alias "
                                  f"*{event.anchor} (more than {MAX_YAML_DEPTH} levels); "
                                  f"{stored}")
        else:
            continue
        if anchor is not None:
            anchored[anchor] = (values, height)
        parent = open_[-1]
        parent[1] += values
        parent[2] = max(parent[2], height)
        total = max(total, parent[1])
        if total > MAX_YAML_NODES:
            how = (" once its aliases (*name) are expanded: anchors used as a \"billion "
                   "laughs\"" if aliases else "")
            raise PolicyError(f"{where}: too many values (more than {MAX_YAML_NODES:,}){how}; "
                              f"{stored}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def _listify(value: Any) -> Any:
    """`skills: python` is read as `skills: [python]`."""
    if isinstance(value, str):
        return [value]
    return value


class BudgetModel(_Strict):
    max_tokens: int | None = Field(default=None, ge=0)
    max_cost: float | None = Field(default=None, ge=0)


class TaskModel(_Strict):
    id: str = Field(min_length=1, max_length=200)
    title: str | None = None
    description: str = ""
    skills: list[str] = Field(default_factory=list)
    effort: float = Field(default=1.0, gt=0, le=1e9)
    priority: int = Field(default=1, ge=0, le=1000)
    depends_on: list[str] = Field(default_factory=list)
    verify: str | None = None
    files: list[str] = Field(default_factory=list, max_length=10_000)

    _lists = field_validator("skills", "depends_on", "files", mode="before")(_listify)


class AgentModel(_Strict):
    name: str = Field(min_length=1, max_length=200)
    skills: list[str] = Field(default_factory=list)
    model: str | None = None
    role: str = "worker"
    title: str = ""
    capabilities: str = ""
    reports_to: str | None = None
    budget: BudgetModel | None = None
    adapter: AdapterKind = AdapterKind.LLM
    config: dict[str, Any] = Field(default_factory=dict)
    actions: Any = None
    """This agent's action policy (overrides the hive's per action; agents/permissions.py)."""

    _lists = field_validator("skills", mode="before")(_listify)


class GenerateModel(_Strict):
    shape: Literal["wide", "deep", "mixed"]
    tasks: int = Field(ge=1, le=5_000_000)
    seed: int = 0


class WorkloadModel(_Strict):
    name: str = Field(min_length=1)
    objective: str = ""
    verify: str | None = None
    fixture: str | None = None
    tasks: list[TaskModel] = Field(default_factory=list)
    agents: list[AgentModel] = Field(default_factory=list)
    generate: GenerateModel | None = None
    """Instead of `tasks`: a generated shape (simulation only)."""
    actions: Any = None
    """The hive's action policy (agents/permissions.py)."""


@dataclass(frozen=True, slots=True)
class Workload:
    """A validated workload: the objective, the board to post, and the agents to run it."""

    name: str
    objective: str
    tasks: tuple[Task, ...]
    agents: tuple[Agent, ...] = ()
    """Empty when the file names none: the runner then makes `--agents N` of them."""
    verify: str | None = None
    """Command whose exit code decides whether the whole objective succeeded."""
    fixture: Path | None = None
    """Folder copied fresh into the workspace of every live run."""
    source: Path | None = None
    actions: dict[str, Any] | None = None
    """The hive's action policy, validated (recorded in the hive's config)."""
    files: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Task id → the files it is expected to touch (the simulator's conflict rule; live runs
    find their conflicts through git)."""

    @property
    def skills(self) -> list[str]:
        """Every skill the tasks name, in order of first appearance."""
        return list(dict.fromkeys(s for t in self.tasks for s in t.skills))

    @property
    def has_org(self) -> bool:
        return any(a.reports_to for a in self.agents)


def _read_file(path: Path, what: str, *, unchanged: str = "nothing was stored") -> str:
    """The file's text; PolicyError saying why (and `unchanged`: what was not done) when it is
    missing, a folder, unreadable, or larger than MAX_FILE_BYTES (then it is not read)."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise PolicyError(f"{what} {path} is {size / 2**20:.1f} MiB, more than the "
                              f"{MAX_FILE_BYTES // 2**20} MiB a {what} may be; {unchanged}")
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError(f"{what} {path} does not exist; {unchanged}") from None
    except IsADirectoryError:
        raise PolicyError(f"{what} {path} is a folder; give the YAML file inside it; "
                          f"{unchanged}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise PolicyError(f"{what} {path} could not be read: {error}; {unchanged}") from None


def load_workload(path: str | Path) -> Workload:
    """Read and validate a workload file. Raises PolicyError naming the file, field and problem."""
    path = Path(path)
    text = _read_file(path, "workload file")
    return parse_workload(text, source=path)


def parse_workload(text: str, source: Path | None = None) -> Workload:
    where = str(source) if source is not None else "workload"
    data = _read_yaml(text, where, kind="workload")
    if not isinstance(data, dict):
        raise PolicyError(
            f"{where}: expected a mapping with name, objective, tasks and agents; "
            f"found {type(data).__name__}"
        )
    try:
        model = WorkloadModel.model_validate(data)
    except ValidationError as error:
        raise PolicyError(_explain(where, data, error)) from None
    return _build(model, where, source)


def _explain(where: str, data: dict[str, Any], error: ValidationError) -> str:
    problems = [f"{_locate(data, e['loc'])}: {_reword(e)}" for e in error.errors()]
    head = f"{where}: {len(problems)} problem{'s' if len(problems) > 1 else ''}, nothing was run"
    shown = problems[:5]
    more = f"\n  (and {len(problems) - 5} more)" if len(problems) > 5 else ""
    return head + "".join(f"\n  - {p}" for p in shown) + more


def _locate(data: Any, loc: Sequence[int | str]) -> str:
    """tasks.3.effort → tasks[3] (id 'build').effort"""
    parts: list[str] = []
    node = data
    for step in loc:
        if isinstance(step, int):
            label = f"[{step}]"
            item = node[step] if isinstance(node, list) and step < len(node) else None
            if isinstance(item, dict):
                key = item.get("id") or item.get("name")
                if isinstance(key, str):
                    label += f" ({key!r})"
            parts.append(label)
            node = item
        else:
            parts.append(("." if parts else "") + step)
            node = node.get(step) if isinstance(node, dict) else None
    return "".join(parts) or "(top level)"


def _reword(error: Any) -> str:
    kind = error["type"]
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        field = str(error["loc"][-1])
        known = {
            "tasks": TaskModel.model_fields,
            "agents": AgentModel.model_fields,
        }
        names: list[str] = list(WorkloadModel.model_fields)
        for section, fields in known.items():
            if section in error["loc"][:-1]:
                names = list(fields)
        close = difflib.get_close_matches(field, names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown field{hint}; allowed: {', '.join(names)}"
    return str(error["msg"])


def _build(model: WorkloadModel, where: str, source: Path | None) -> Workload:
    problems: list[str] = []
    if model.generate is not None and model.tasks:
        problems.append("give either tasks or generate, not both")
    if model.generate is None and not model.tasks:
        problems.append("tasks: at least one task is required (or a generate: section)")
    ids: dict[str, int] = {}
    for index, task in enumerate(model.tasks):
        if task.id in ids:
            problems.append(f"tasks[{index}]: duplicate id {task.id!r} (also tasks[{ids[task.id]}])")
        ids.setdefault(task.id, index)
    for index, task in enumerate(model.tasks):
        for dep in task.depends_on:
            if dep == task.id:
                problems.append(f"tasks[{index}] ({task.id!r}).depends_on: a task cannot wait on itself")
            elif dep not in ids:
                close = difflib.get_close_matches(dep, list(ids), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                problems.append(
                    f"tasks[{index}] ({task.id!r}).depends_on: unknown task {dep!r}{hint}"
                )
    if not problems:
        from ruflo.policies import find_cycle

        cycle = find_cycle({t.id: list(t.depends_on) for t in model.tasks})
        if cycle:
            problems.append("tasks: dependency cycle " + " → ".join(cycle))
    names: dict[str, int] = {}
    for index, agent in enumerate(model.agents):
        if agent.name in names:
            problems.append(f"agents[{index}]: duplicate name {agent.name!r}")
        names.setdefault(agent.name, index)
        problems += max_tokens_problem(agent, index)
    fixture: Path | None = None
    if model.fixture is not None:
        base = source.parent if source is not None else Path.cwd()
        fixture = (base / model.fixture).resolve()
        if not fixture.is_dir():
            problems.append(f"fixture: folder {model.fixture!r} not found (looked in {fixture})")
    if problems:
        head = f"{where}: {len(problems)} problem{'s' if len(problems) > 1 else ''}, nothing was run"
        raise PolicyError(head + "".join(f"\n  - {p}" for p in problems[:5]))

    agents = tuple(declared_agent(a, where) for a in model.agents)
    if any(a.reports_to for a in agents):
        from ruflo.policies import OrgChart

        try:
            OrgChart(agents)
        except PolicyError as error:
            raise PolicyError(f"{where}: agents: {error}") from None
    if model.generate is not None:
        from ruflo.engine.shapes import shape_tasks

        specs = shape_tasks(model.generate.shape, model.generate.tasks, model.generate.seed)
        tasks = tuple(
            Task(id=s.id, hive_id="", title=s.id, skills=s.skills, priority=s.priority,
                 effort=s.effort, depends_on=s.depends_on)
            for s in specs
        )
    else:
        tasks = tuple(
            Task(
                id=t.id,
                hive_id="",
                title=t.title or t.id,
                description=t.description,
                skills=tuple(t.skills),
                priority=t.priority,
                effort=t.effort,
                depends_on=tuple(t.depends_on),
                verify=t.verify,
            )
            for t in model.tasks
        )
    return Workload(
        actions=hive_actions(model.actions, where),
        name=model.name,
        objective=model.objective or model.name,
        tasks=tasks,
        agents=agents,
        verify=model.verify,
        fixture=fixture,
        source=source,
        files={t.id: tuple(t.files) for t in model.tasks if t.files},
    )


class OrgModel(_Strict):
    name: str | None = None
    budget: BudgetModel | None = None
    """The hive's budget (each agent may have its own too)."""
    approvals: dict[Literal["budget_override", "hire", "strategy"],
                    Literal["ask", "approve", "reject"]] = Field(default_factory=dict)
    max_depth: int = Field(default=2, ge=0, le=10)
    max_hires: int = Field(default=2, ge=0, le=50)
    actions: Any = None
    """The hive's action policy (agents/permissions.py)."""
    agents: list[AgentModel] = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class Org:
    """A validated org chart file for company mode (`ruflo orchestrate --org ORG.yaml`)."""

    agents: tuple[Agent, ...]
    """Ids are the agents' names; `reports_to` holds the manager's name."""
    name: str | None = None
    budget: Budget = field(default_factory=Budget)
    approvals: dict[str, str] | None = None
    """The explicit auto-approval policy (kind → approve | reject | ask), recorded in the hive."""
    max_depth: int = 2
    """How many times a ticket may be delegated down from the objective."""
    max_hires: int = 2
    """How many agents managers may ask to add in one hive (each a `hire` approval)."""
    actions: dict[str, Any] | None = None
    """The hive's action policy, validated (recorded in the hive's config)."""
    source: Path | None = None


def load_org(path: str | Path) -> Org:
    """Read and validate an org chart file. Raises PolicyError naming the file and problem."""
    path = Path(path)
    text = _read_file(path, "org file")
    return parse_org(text, source=path)


def parse_org(text: str, source: Path | None = None) -> Org:
    """An org chart: `agents` (required, one tree by `reports_to`), and optionally `name`,
    `budget` (the hive's), `approvals` (auto-approval policy), `max_depth` and `max_hires`."""
    where = str(source) if source is not None else "org"
    data = _read_yaml(text, where, kind="org")
    if not isinstance(data, dict):
        raise PolicyError(f"{where}: expected a mapping with agents (and optionally name, "
                          f"budget, approvals, max_depth, max_hires); found "
                          f"{type(data).__name__}")
    try:
        model = OrgModel.model_validate(data)
    except ValidationError as error:
        raise PolicyError(_explain(where, data, error)) from None
    names = [a.name for a in model.agents]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise PolicyError(f"{where}: agents: duplicate name {duplicates[0]!r}, nothing was run")
    agents = tuple(declared_agent(a, where) for a in model.agents)
    from ruflo.policies import OrgChart

    try:
        OrgChart(agents)
    except PolicyError as error:
        raise PolicyError(f"{where}: agents: {error}; nothing was run") from None
    budget = Budget(model.budget.max_tokens, model.budget.max_cost) if model.budget else Budget()
    return Org(agents=agents, name=model.name, budget=budget,
               approvals={str(k): str(v) for k, v in model.approvals.items()} or None,
               max_depth=model.max_depth, max_hires=model.max_hires, source=source,
               actions=hive_actions(model.actions, where))


def hive_actions(raw: object, where: str) -> dict[str, Any] | None:
    """A file's `actions:` block, validated and written the one way the hive's config keeps it."""
    from ruflo.agents.permissions import parse_actions, policy_json

    policy = parse_actions(raw, where)
    return policy_json(policy) if not policy.empty else None


def max_tokens_problem(agent: AgentModel, index: int) -> list[str]:
    cap = agent.config.get("max_tokens")
    if agent.adapter is AdapterKind.LLM and cap is not None and (
            isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
        return [f"agents[{index}].config.max_tokens: a whole number of tokens above 0 (most "
                f"tokens one answer may take), not {cap!r}"]
    return []


def declared_agent(a: AgentModel, where: str) -> Agent:
    """An agent as a file declares it: its id is its name (the hive makes it unique)."""
    return Agent(id=a.name, hive_id="", name=a.name, role=a.role, title=a.title,
                 capabilities=a.capabilities, skills=tuple(a.skills), adapter=a.adapter,
                 adapter_config=agent_config(a, where), model=a.model, reports_to=a.reports_to,
                 budget=Budget(a.budget.max_tokens, a.budget.max_cost) if a.budget else Budget())


class LineupModel(_Strict):
    name: str | None = None
    agents: list[AgentModel] = Field(min_length=1, max_length=1000)


@dataclass(frozen=True, slots=True)
class Lineup:
    """An agent line-up file (`ruflo compare --agents FILE`): the agents every run uses instead
    of the workload's, in the shape workload files give them; an org chart when any has
    `reports_to`."""

    agents: tuple[Agent, ...]
    name: str | None = None
    source: Path | None = None

    @property
    def has_org(self) -> bool:
        return any(a.reports_to for a in self.agents)


def load_lineup(path: str | Path) -> Lineup:
    """Read and validate an agent line-up file. Raises PolicyError naming the file and problem."""
    path = Path(path)
    text = _read_file(path, "agents file", unchanged="nothing was run")
    return parse_lineup(text, source=path)


def parse_lineup(text: str, source: Path | None = None) -> Lineup:
    """`agents:` (required: name, skills, model, adapter, config, ... as in a workload file; an
    org chart when any has `reports_to`) and optionally `name`."""
    where = str(source) if source is not None else "agents file"
    data = _read_yaml(text, where, kind="agents file")
    if not isinstance(data, dict):
        raise PolicyError(f"{where}: expected a mapping with agents (a list of agents as in a "
                          f"workload file) and optionally name; found {type(data).__name__}; "
                          "nothing was run")
    try:
        model = LineupModel.model_validate(data)
    except ValidationError as error:
        raise PolicyError(_explain(where, data, error)) from None
    names = [a.name for a in model.agents]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise PolicyError(f"{where}: agents: duplicate name {duplicates[0]!r}; nothing was run")
    caps = [p for n, a in enumerate(model.agents) for p in max_tokens_problem(a, n)]
    if caps:
        raise PolicyError(f"{where}: {caps[0]}; nothing was run")
    agents = tuple(declared_agent(a, where) for a in model.agents)
    if any(a.reports_to for a in agents):
        from ruflo.policies import OrgChart

        try:
            OrgChart(agents)
        except PolicyError as error:
            raise PolicyError(f"{where}: agents: {error}; nothing was run") from None
    return Lineup(agents=agents, name=model.name, source=source)


def agent_config(agent: AgentModel, where: str) -> dict[str, Any]:
    """An agent's adapter config, with its `actions:` block validated into it."""
    config = dict(agent.config)
    if "actions" in config and agent.actions is not None:
        raise PolicyError(f"{where}: agent {agent.name}: give actions once, not in config too; "
                          "nothing was run")
    actions = hive_actions(agent.actions if agent.actions is not None
                           else config.pop("actions", None), f"{where}: agent {agent.name}")
    if actions:
        config["actions"] = actions
    return config
