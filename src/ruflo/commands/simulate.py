"""`ruflo simulate`: run a workload (a YAML file or a built-in shape) through a policy on a virtual
clock and print makespan against the lower bound, utilisation, thrash and unclaimed-task age.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(add_completion=False)


@app.command()
def simulate(
    workload: Annotated[
        str, typer.Argument(help="A workload YAML file, or a built-in shape: wide, deep, mixed.")
    ],
    mode: Annotated[str, typer.Option(help="swarm, company, round_robin or solo.")] = "swarm",
    agents: Annotated[
        int | None,
        typer.Option(min=1, help="Number of agents (default: the file's agents, else 8)."),
    ] = None,
    tasks: Annotated[int, typer.Option(min=1, help="Tasks to generate for a built-in shape.")] = 1000,
    seed: Annotated[int, typer.Option(help="Same seed, same run.")] = 0,
    kill_fraction: Annotated[
        float | None, typer.Option(help="Kill this fraction of the agents mid-run (0 < F < 1).")
    ] = None,
    kill_at: Annotated[
        float | None, typer.Option(help="Virtual time of the kill (default: half the LB).")
    ] = None,
    failure_rate: Annotated[float, typer.Option(help="Chance an attempt fails.")] = 0.02,
    files: Annotated[int, typer.Option(
        min=0, help="A shape's tasks each touch 2 files drawn from a pool of this many (0: "
                    "none). A workload file's tasks touch the files: they list.")] = 0,
    conflict_probability: Annotated[float, typer.Option(
        help="Chance that two concurrent tasks sharing a file conflict; each conflict costs an "
             "integration task (docs/compare.md).")] = 0.3,
    json_output: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    timeline: Annotated[
        Path | None, typer.Option(help="Write who worked on what, when, to this JSON file.")
    ] = None,
) -> None:
    """Run a workload through a policy on a virtual clock."""
    import json
    import sys

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
    from rich.table import Table

    from ruflo.engine.shapes import SHAPES, mixed_agents, shape_agents, shape_tasks
    from ruflo.engine.simulate import KillPlan, SimParams, lower_bound, simulate
    from ruflo.errors import PolicyError
    from ruflo.model import Mode
    from ruflo.workload import load_workload

    try:
        run_mode = Mode(mode)
    except ValueError:
        raise PolicyError(
            f"unknown mode {mode!r}; choose one of {', '.join(m.value for m in Mode)}"
        ) from None
    from ruflo.engine.conflicts import ConflictRule, draw_files

    touched: dict[str, tuple[str, ...]] = {}
    if workload in SHAPES and not Path(workload).exists():
        board = shape_tasks(workload, tasks, seed)
        crew = shape_agents(workload, agents or 8)
        title = f"{workload} ({tasks} tasks)"
    else:
        loaded = load_workload(workload)
        board = list(loaded.tasks)  # type: ignore[arg-type]
        touched = dict(loaded.files)
        if agents is None and loaded.agents:
            crew = list(loaded.agents)
        else:
            crew = mixed_agents(agents or 8, loaded.skills)
        title = loaded.name
    kill = None
    if kill_fraction is not None:
        at = kill_at if kill_at is not None else lower_bound(board, len(crew))[2] / 2
        kill = KillPlan(kill_fraction, at)
    elif kill_at is not None:
        raise PolicyError("--kill-at needs --kill-fraction; nothing was run")
    params = SimParams(failure_rate=failure_rate)
    if files and not touched:
        touched = draw_files([t.id for t in board], files, 2, seed)
    rule = ConflictRule(touched, conflict_probability)

    err = Console(stderr=True)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=json_output and not err.is_terminal,
    ) as progress:
        bar = progress.add_task(f"simulating {title} ({run_mode.value})", total=len(board))
        result = simulate(
            board,
            crew,
            run_mode,
            seed=seed,
            params=params,
            kill=kill,
            conflicts=rule,
            record=True if timeline is not None else None,
            on_progress=lambda done, total: progress.update(bar, completed=done, total=total),
        )
    if timeline is not None:
        entries = result.to_dict(with_timeline=True)["timeline"] or []
        timeline.write_text(json.dumps(entries), encoding="utf-8")
    if json_output:
        data = result.to_dict()
        data.pop("done_by", None)
        data.pop("thresholds", None)
        data.pop("integrations", None)
        data["workload"] = title
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        if not result.all_done:
            raise SystemExit(1)
        return

    out = Console()
    table = Table(title=f"{title} · {run_mode.value} · {result.agents} agents · seed {seed}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [
        ("tasks done / failed / cancelled", f"{result.done} / {result.failed} / {result.cancelled}"),
        ("makespan", f"{result.makespan:.2f}"),
        ("lower bound (critical path, work/agents)",
         f"{result.lower_bound:.2f} ({result.critical_path:.2f}, {result.total_work / result.agents:.2f})"),
        ("makespan / LB", f"{result.ratio:.3f}"),
        ("utilisation", f"{result.utilisation:.1%}"),
        ("task switches / released claims", f"{result.task_switches} / {result.released_claims}"),
        ("failed attempts", str(result.failed_attempts)),
        ("unclaimed-task age mean / max", f"{result.unclaimed_age_mean:.2f} / {result.unclaimed_age_max:.2f}"),
        ("duplicate work", f"{result.duplicate_work:.2f}"),
        ("tokens work / coordination", f"{result.work_tokens:,} / {result.coordination_tokens:,}"),
        ("decisions", f"{result.decisions:,} ({result.decisions_per_second:,.0f}/s)"),
    ]
    if run_mode is Mode.COMPANY:
        rows.append(("delegations / escalations", f"{result.delegations} / {result.escalations}"))
    if touched:
        rows.append(("merge conflicts (= integration tasks)", str(result.merge_conflicts)))
    if kill is not None:
        rows.append(("killed agents / their tasks recovered", f"{result.killed} / {result.recovered}"))
    rows.append(("wall time", f"{result.wall_seconds:.2f} s"))
    for name, value in rows:
        table.add_row(name, value)
    out.print(table)
    if result.stalled:
        err.print("[red]the run stalled: work was left that no live agent could do[/red]")
    if not result.all_done:
        raise SystemExit(1)
