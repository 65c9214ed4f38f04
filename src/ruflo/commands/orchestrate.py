"""`ruflo orchestrate "<objective>"`: run a real hive through the gateway, live, and end with a
summary. Exit code 0 only when the objective's tasks succeeded.

Without `--workload`, the objective is first planned into tasks by ONE metered coordination call
(the planner must answer a JSON task list; anything else is refused and nothing is posted). We
chose a plan up front over a single task that agents decompose: the board shows the whole piece
of work from the start, the swarm can spread it at once, and the one planning call is metered as
coordination, apart from the work. Agents may still split a task they find too big. The rule is
engine/start.py's, the same for hives started over REST and MCP.

Imports only typer and the standard library at module level.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from ruflo.config import Settings
    from ruflo.engine.board_engine import RunSummary
    from ruflo.engine.driving import Driving
    from ruflo.model import Agent, Hive
    from ruflo.store.sql import SqlStore
    from ruflo.workload import Workload

app = typer.Typer(add_completion=False)

EXIT_DONE = 0
EXIT_FAILED = 1
EXIT_PAUSED = 3
EXIT_CANCELLED = 4
EXIT_INTERRUPTED = 130


@app.command()
def orchestrate(
    objective: Annotated[str | None, typer.Argument(
        help="What the hive should achieve (default: the workload file's objective).")] = None,
    mode: Annotated[str, typer.Option(help="swarm, company, round_robin or solo.")] = "swarm",
    org: Annotated[Path | None, typer.Option(
        help="Org chart YAML for --mode company (agents with role, capabilities, reports_to, "
             "budget; see docs/workloads.md).")] = None,
    agents: Annotated[int, typer.Option(
        min=1, max=1000, help="Agents to run when the workload names none.")] = 4,
    agent_cli: Annotated[str | None, typer.Option(
        "--agent-cli", help="Run the --agents N agents with this agent CLI: claude-code, "
                            "codex, gemini-cli, opencode or aider (docs/agents/).")] = None,
    workspace: Annotated[Path | None, typer.Option(
        help="Folder the agents work in (default: <RUFLO_WORKSPACE>/<hive id>).")] = None,
    isolation: Annotated[str | None, typer.Option(
        help="git: each attempt in its own worktree, merged by ruflo (the default when the "
             "workspace is a git repository); none: the agents share the folder.")] = None,
    workload: Annotated[Path | None, typer.Option(
        help="Workload YAML with tasks (and agents); without it the objective is planned "
             "into tasks by the LLM.")] = None,
    budget_tokens: Annotated[int | None, typer.Option(
        min=0, help="Stop (pause) the hive after this many tokens.")] = None,
    budget_cost: Annotated[float | None, typer.Option(
        min=0, help="Stop (pause) the hive after this much money, in USD.")] = None,
    model: Annotated[str | None, typer.Option(
        help="Model for agents that name none (default: RUFLO_MODEL).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the policy's random choices.")] = 0,
    time_unit: Annotated[float, typer.Option(
        min=0.001, help="Seconds per policy time unit (how fast stimulus grows).")] = 10.0,
    name: Annotated[str | None, typer.Option(help="A name for the hive.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    workers_only: Annotated[bool, typer.Option(
        "--workers-only", help="Host no agents here: post the work to a Postgres hive and watch "
                               "`ruflo worker` processes elsewhere do it.")] = False,
) -> None:
    """Run a hive of agents on an objective through the gateway, with a live view."""
    from ruflo.agents.sandbox import current_sandbox, sandbox_trace
    from ruflo.commands.serve import hive_notifications
    from ruflo.config import boot_trace, load_settings
    from ruflo.errors import ConfigError, PolicyError
    from ruflo.model import Mode
    from ruflo.store import open_store
    from ruflo.workload import load_workload

    settings = load_settings()
    for line in [*boot_trace(settings), *sandbox_trace(settings)]:
        typer.echo(line, err=True)
    try:
        run_mode = Mode(mode)
    except ValueError:
        raise PolicyError(f"unknown mode {mode!r}; choose swarm, round_robin or solo; "
                          "nothing was run") from None
    loaded = load_workload(workload) if workload is not None else None
    cli_adapter = agent_cli_adapter(agent_cli, loaded, org)
    chart = None
    if run_mode is Mode.COMPANY:
        from ruflo.workload import load_org

        if org is None and not (loaded is not None and loaded.has_org):
            raise ConfigError("company mode needs an org chart: give --org ORG.yaml (or a "
                              "--workload whose agents have reports_to); nothing was run")
        if workers_only:
            raise ConfigError("company mode runs its whole org in this process; "
                              "--workers-only is for swarm hives; nothing was run")
        chart = load_org(org) if org is not None else None
    elif org is not None:
        raise ConfigError("--org is for --mode company; nothing was run")
    goal = (objective or (loaded.objective if loaded else "")).strip()
    if not goal:
        raise ConfigError("give an objective (`ruflo orchestrate \"...\"`) or a --workload "
                          "file; nothing was run")
    if workers_only:
        from ruflo.engine.worker import require_shared_store

        require_shared_store(settings.store_url)
    if not (workers_only and loaded is not None and loaded.tasks):
        require_gateway(settings)  # planning the objective, or hosting agents, needs it
    if not workers_only:
        # Agents hosted here run commands (tools, verify): a sandbox that can't be had is
        # refused now, before a hive is stored, rather than at the first command.
        current_sandbox().require()
    store = open_store(settings)
    try:
        with hive_notifications(settings, store, echo=lambda line: typer.echo(line, err=True)):
            hive = create_hive(settings, store, goal, run_mode, loaded, agents=agents,
                               workspace=workspace, budget_tokens=budget_tokens,
                               budget_cost=budget_cost, model=model, seed=seed,
                               time_unit=time_unit, name=name, org=chart,
                               isolation=isolation, adapter=cli_adapter)
            typer.echo(f"hive {hive.id}: {run_mode.value}, {len(store.list_agents(hive.id))} "
                       f"agents, workspace {hive.workspace}", err=True)
            summary = run_in_foreground(settings, store, hive.id, show=not as_json,
                                        workers_only=workers_only)
        raise typer.Exit(report(summary, as_json))
    finally:
        store.close()


def require_gateway(settings: Settings) -> None:
    from ruflo.errors import ConfigError

    if not settings.gateway_url:
        raise ConfigError("no gateway: set OPENAI_BASE_URL (or LITELLM_BASE_URL) to the "
                          "gateway's address; nothing was run")
    if settings.openai_api_key is None or not settings.openai_api_key.get_secret_value():
        raise ConfigError("no gateway key: set OPENAI_API_KEY to the gateway's virtual key; "
                          "nothing was run")


def create_hive(settings: Settings, store: SqlStore, objective: str, mode: Any,
                workload: Workload | None, *, agents: int, workspace: Path | None,
                budget_tokens: int | None, budget_cost: float | None, model: str | None,
                seed: int, time_unit: float, name: str | None, org: Any = None,
                isolation: str | None = None, adapter: Any = None) -> Hive:
    """Store the hive with its agents and (from a workload) its first tasks; the objective is
    planned when the hive is first driven (`drive`, engine/start.py's rule)."""
    import shutil

    from ruflo.agents.gitwork import init_repo
    from ruflo.engine import start
    from ruflo.engine.isolation import isolation_config
    from ruflo.engine.plan import tasks_for_hive
    from ruflo.engine.start import HiveSpec
    from ruflo.model import Budget, new_id

    hive_id = new_id()
    folder = (workspace or settings.workspace_dir / hive_id).expanduser().resolve()
    ours = not folder.exists() or not any(folder.iterdir())
    folder.mkdir(parents=True, exist_ok=True)
    if workload is not None and workload.fixture is not None:
        shutil.copytree(workload.fixture, folder, dirs_exist_ok=True)
    if ours and isolation != "none":
        init_repo(folder)  # a folder ruflo creates: a repository, so the hive shows isolation
    isolated, notice = isolation_config(folder, isolation)
    typer.echo(notice, err=True)
    config: dict[str, Any] = {"seed": seed, "time_unit": time_unit,
                              "lease_seconds": settings.lease_seconds,
                              "model": model or settings.model, **isolated}
    if workload is not None:
        config["workload"] = str(workload.source) if workload.source else workload.name
        if workload.verify:
            config["verify"] = workload.verify
    budget = Budget(max_tokens=budget_tokens, max_cost=budget_cost)
    if org is not None:
        config["max_depth"] = org.max_depth
        config["max_hires"] = org.max_hires
        if org.approvals:
            config["approvals"] = org.approvals
        if budget.unlimited:
            budget = org.budget
        name = name or org.name
    crew = hive_agents(hive_id, org.agents if org is not None else
                       workload.agents if workload else (), agents, adapter)
    spec = HiveSpec(id=hive_id, name=name or (workload.name if workload else first_line(objective)),
                    mode=mode, objective=objective, budget=budget, workspace=str(folder),
                    config=config, agents=crew,
                    tasks=tasks_for_hive(hive_id, workload.tasks) if workload else ())
    return start.create_hive(store, spec)


def agent_cli_adapter(name: str | None, loaded: Workload | None, org: Path | None) -> Any:
    """The adapter `--agent-cli NAME` asks for (None without it); refused in one line when the
    name is unknown or the agents are declared elsewhere (their file says their adapter)."""
    from ruflo.errors import ConfigError
    from ruflo.model import AGENT_CLIS, AdapterKind

    if name is None:
        return None
    if name not in {kind.value for kind in AGENT_CLIS}:
        names = ", ".join(sorted(kind.value for kind in AGENT_CLIS))
        raise ConfigError(f"--agent-cli {name!r} is not an agent CLI ruflo knows; choose one of "
                          f"{names}; nothing was run")
    if org is not None or (loaded is not None and loaded.agents):
        raise ConfigError("--agent-cli is for the agents ruflo makes (--agents N); the workload "
                          "or org file declares its agents: give each one `adapter: "
                          f"{name}` there; nothing was run")
    return AdapterKind(name)


def hive_agents(hive_id: str, declared: tuple[Agent, ...], count: int,
                adapter: Any = None) -> list[Agent]:
    """The workload's agents, or `count` generalists (running `adapter`, if given); ids made
    unique across hives."""
    from dataclasses import replace

    from ruflo.engine.plan import board_id
    from ruflo.model import AdapterKind, Agent

    if not declared:
        return [Agent(id=board_id(hive_id, f"agent-{n}"), hive_id=hive_id, name=f"agent-{n}",
                      adapter=adapter or AdapterKind.LLM)
                for n in range(1, count + 1)]
    ids = {a.name: board_id(hive_id, a.name) for a in declared}
    return [replace(a, id=ids[a.name], hive_id=hive_id,
                    reports_to=ids.get(a.reports_to or "", a.reports_to))
            for a in declared]


def first_line(text: str, limit: int = 80) -> str:
    line = text.strip().splitlines()[0] if text.strip() else "hive"
    return line if len(line) <= limit else line[:limit - 1] + "…"


def run_in_foreground(settings: Settings, store: SqlStore, hive_id: str, *,
                      show: bool, workers_only: bool = False,
                      driving: Driving | None = None) -> RunSummary:
    """Drive a running hive here until it ends or pauses. Ctrl-C pauses it (claims released,
    nothing lost) so `ruflo hive resume` can go on. The hive's driver lease is taken first
    (unless `driving` holds it already): another live driver means nothing is done here."""
    from ruflo.engine.board_engine import summarise
    from ruflo.engine.control import pause_hive
    from ruflo.engine.driving import drive_here

    if driving is None and not workers_only:
        driving = drive_here(store, hive_id, by="this command")
    try:
        asyncio.run(drive(settings, store, hive_id, show=show, workers_only=workers_only,
                          driving=driving))
    except KeyboardInterrupt:
        pause_hive(store, hive_id, reason="interrupted from the terminal")
        typer.echo(f"interrupted: hive {hive_id} is paused, nothing was lost; "
                   f"`ruflo hive resume {hive_id}` goes on", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    finally:
        if driving is not None:
            driving.release_all()
    return summarise(store, hive_id)


async def drive(settings: Settings, store: SqlStore, hive_id: str, *, show: bool,
                workers_only: bool = False, driving: Driving | None = None) -> None:
    """Seed the first board if it is empty (engine/start.py: the objective is planned), then run
    the engine (with the live view), or, with `workers_only`, watch workers elsewhere run it."""
    from ruflo.agents.commands import command_env
    from ruflo.engine.board_engine import LiveParams
    from ruflo.engine.company import engine_for
    from ruflo.engine.driving import keep_driving
    from ruflo.engine.start import GatewayPlanner, seed_board
    from ruflo.engine.view import HiveView
    from ruflo.errors import Conflict
    from ruflo.gateway.client import GatewayClient

    hive = store.get_hive(hive_id)
    config = hive.config
    params = LiveParams(lease_seconds=float(config.get("lease_seconds", settings.lease_seconds)),
                        time_unit=float(config.get("time_unit", 10.0)),
                        seed=int(config.get("seed", 0))).probing(settings.gateway_probe_seconds)
    model = str(config.get("model") or settings.model)

    async def watch_workers() -> None:
        from ruflo.engine.worker import watch_hive

        view = HiveView(store, hive_id) if show else None
        follow = asyncio.create_task(view.follow()) if view is not None else None
        try:
            await watch_hive(store, hive_id, settings.store_url,
                             on_change=view.changed if view is not None else None,
                             say=lambda line: typer.echo(line, err=True),
                             lease_seconds=params.lease_seconds)
        finally:
            if follow is not None:
                follow.cancel()
                await asyncio.gather(follow, return_exceptions=True)

    if workers_only and any(store.count_tasks(hive_id).values()):
        await watch_workers()
        return
    # The lease is renewed from here on: planning alone may outlast it.
    lost: list[str] = []
    engines: list[Any] = []

    def taken_over(_: str, driver: Any) -> None:
        lost.append(f"another process ({driver.who}) took over driving the hive while this one "
                    "was silent past its driver lease; this one stopped" if driver
                    else "the hive was deleted")
        for engine in engines:
            engine.abandon()

    keep = (asyncio.create_task(keep_driving(driving, taken_over))
            if driving is not None else None)
    try:
        async with GatewayClient.from_settings(settings, store=store) as gateway:
            await seed_board(store, hive_id, GatewayPlanner(gateway, model),
                             say=lambda line: typer.echo(line, err=True))
            if workers_only:
                await watch_workers()
                return
            view = HiveView(store, hive_id) if show else None
            engine = engine_for(store, hive_id, gateway=gateway, params=params, model=model,
                                env=command_env(),
                                on_change=view.changed if view is not None else None)
            engines.append(engine)
            follow = asyncio.create_task(view.follow()) if view is not None else None
            try:
                if not lost:
                    await engine.run()
            finally:
                if follow is not None:
                    follow.cancel()
                    await asyncio.gather(follow, return_exceptions=True)
    finally:
        if keep is not None:
            keep.cancel()
            await asyncio.gather(keep, return_exceptions=True)
    if lost:
        raise Conflict(f"hive {hive_id}: {lost[0]}")


def report(summary: RunSummary, as_json: bool) -> int:
    """Print the end of a run and return the exit code."""
    from ruflo.model import HiveStatus

    hive = summary.hive
    status = hive.status
    code = {HiveStatus.DONE: EXIT_DONE, HiveStatus.FAILED: EXIT_FAILED,
            HiveStatus.PAUSED: EXIT_PAUSED, HiveStatus.CANCELLED: EXIT_CANCELLED,
            HiveStatus.RUNNING: EXIT_PAUSED}[status]
    if code == EXIT_DONE and not summary.objective_succeeded:
        code = EXIT_FAILED
    if as_json:
        typer.echo(json.dumps({**summary.to_json(), "exit_code": code}))
        return code
    counts = summary.counts
    total = sum(counts.values())
    spend = (f"{summary.calls} calls, {summary.tokens} tokens, ${summary.cost:.4f} "
             f"(planning and coordination: {summary.coordination_tokens} tokens)")
    board = ", ".join(f"{n} {state}" for state, n in counts.items() if n)
    lines = [f"hive {hive.id} {status.value}: {counts.get('done', 0)}/{total} tasks done "
             f"({board or 'no tasks'}); {spend}"]
    if status is HiveStatus.PAUSED or status is HiveStatus.RUNNING:
        lines.append(f"paused: {hive.pause_reason or 'no reason recorded'}. Nothing was lost; "
                     f"fix the cause, then `ruflo hive resume {hive.id}`")
    elif status is HiveStatus.FAILED:
        lines.append(f"failed: {hive.pause_reason or 'not every task succeeded'}; see "
                     f"`ruflo hive show {hive.id}`")
    elif status is HiveStatus.CANCELLED:
        lines.append(f"cancelled: {hive.pause_reason or 'by a person'}")
    for line in lines:
        typer.echo(line, file=sys.stdout if code == EXIT_DONE else sys.stderr)
    return code
