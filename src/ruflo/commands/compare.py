"""`ruflo compare`: run workloads in several modes over several seeds, live through the gateway or
in the simulator, and write report.json and report.html under <data_dir>/reports/<timestamp>/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(add_completion=False)


@app.command()
def compare(
    workloads: Annotated[list[str], typer.Argument(
        help="Built-in workloads (ticket, bug, feature, registry), workload YAML files, or "
             "simulated shapes (wide, deep, mixed).")],
    modes: Annotated[str, typer.Option(help="Comma-separated: swarm, company, solo, "
                                            "round_robin.")] = "swarm,company,solo",
    seeds: Annotated[int, typer.Option(min=1, help="Runs per workload and mode (seeds 0..N-1).")] = 3,
    simulate: Annotated[bool, typer.Option("--simulate", help="Run in the simulator, not "
                                                              "live.")] = False,
    agents: Annotated[str | None, typer.Option(
        metavar="N|FILE",
        help="N: agents per run when a workload names none (default 4 live, 100 simulated). "
             "FILE: a YAML agent line-up (name, skills, model, adapter, config, as in workload "
             "files) every run uses instead of the workload's agents.")] = None,
    out: Annotated[Path | None, typer.Option(help="Report folder (default: "
                                                  "<data_dir>/reports/<timestamp>).")] = None,
    kill_fraction: Annotated[float | None, typer.Option(
        help="Also run every case with this fraction of the agents killed mid-run, and report "
             "the difference.")] = None,
    tasks: Annotated[int, typer.Option(min=1, help="Tasks of a simulated shape.")] = 1000,
    files: Annotated[int, typer.Option(
        min=0, help="Simulated shapes: each task touches 2 files drawn from a pool of this "
                    "many (0: none, no conflicts). Workload files use their tasks' files:.")] = 0,
    conflict_probability: Annotated[float, typer.Option(
        help="Simulated runs: chance that two concurrent tasks sharing a file conflict (each "
             "conflict costs an integration task).")] = 0.3,
    scripted: Annotated[bool, typer.Option(
        "--scripted", help="Answer from the workloads' ScriptedGateway scripts (not a real "
                           "model) instead of the configured gateway.")] = False,
    time_unit: Annotated[float | None, typer.Option(
        help="Live: wall seconds per policy time unit (default 10; 0.05 with --scripted).")] = None,
    run_timeout: Annotated[float, typer.Option(help="Live: seconds before a run is stopped.")] = 900.0,
    approvals: Annotated[str, typer.Option(
        help="Company runs: decide approvals (budget override, hire, strategy) without a "
             "person: reject, approve, or ask (a person decides with `ruflo approval`; the run "
             "waits). Recorded in the report.")] = "reject",
    timeline: Annotated[list[str] | None, typer.Option(
        help="Run id (workload/mode/seed/variant) whose timeline to draw; repeatable.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the report's summary as "
                                                             "JSON.")] = False,
) -> None:
    """Run the same work through several modes and report which one won what."""
    import asyncio
    import json
    import sys

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from ruflo.compare import report as reporting
    from ruflo.compare.runs import Plan, RunRecord, check, resolve, run_plan_simulated
    from ruflo.config import load_settings
    from ruflo.errors import PolicyError
    from ruflo.model import Mode

    try:
        mode_list = tuple(Mode(m.strip()) for m in modes.split(",") if m.strip())
    except ValueError as error:
        raise PolicyError(f"{error}; choose from {', '.join(m.value for m in Mode)}; "
                          "nothing was run") from None
    count, lineup = agents_option(agents)
    plan = Plan(workloads=tuple(resolve(workloads)), modes=tuple(dict.fromkeys(mode_list)),
                seeds=tuple(range(seeds)), agents=count, lineup=lineup, simulate=simulate,
                kill_fraction=kill_fraction, tasks=tasks, approvals=approvals, files=files,
                conflict_probability=conflict_probability)
    check(plan)
    settings = load_settings()
    if not plan.simulate:
        from ruflo.agents.sandbox import sandbox_for, use_sandbox

        # Live runs run commands: refused ones stop the comparison before it starts (rather
        # than pausing every run's agents until it times out).
        sandbox = sandbox_for(settings)
        sandbox.require()
        use_sandbox(sandbox)
    base = out if out is not None else settings.data_dir / "reports"
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        folder, report_id = out, out.name
    else:
        folder, report_id = reporting.report_dir(base)

    err = Console(stderr=True)
    recorded: dict[str, Any] = {
        "workloads": [{"name": r.name, "path": str(r.path) if r.path else None,
                       "shape": r.shape} for r in plan.workloads],
        "modes": [m.value for m in plan.modes], "seeds": list(plan.seeds),
        "agents": plan.agents, "simulate": plan.simulate, "kill_fraction": plan.kill_fraction,
        "lineup": None if lineup is None else {
            "file": str(lineup.source), "name": lineup.name,
            "agents": [{"name": a.name, "adapter": a.adapter.value, "model": a.model,
                        "skills": list(a.skills), "reports_to": a.reports_to}
                       for a in lineup.agents]},
        "tasks_per_shape": plan.tasks if any(r.shape for r in plan.workloads) else None,
        "auto_approval": plan.auto_approval,
    }
    if plan.simulate:
        from ruflo.engine.conflicts import ConflictRule

        recorded["conflicts"] = {
            "rule": "a task merges when its attempt finishes; it conflicts, with the "
                    "probability each, with every task sharing a file that merged after the "
                    "attempt began; each conflict costs an integration task",
            "probability": plan.conflict_probability, "integration_effort": ConflictRule().integration_effort,
            "files": plan.files or "the workloads' files:"}
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err, transient=True) as progress:
        bar = progress.add_task("comparing", total=plan.total)

        def on_run(record: RunRecord) -> None:
            progress.update(bar, advance=1, description=f"done {record.id}")
            if record.status != "ok":
                progress.console.print(f"[yellow]{record.id}: {record.status}[/yellow]")

        if plan.simulate:
            records = run_plan_simulated(plan, on_run)
            recorded["engine"] = "simulator (ruflo.engine.simulate, default SimParams)"
        else:
            records = asyncio.run(_live(plan, settings, folder, scripted, time_unit, run_timeout,
                                        recorded, on_run))
    from ruflo import __version__

    recorded["ruflo_version"] = __version__
    report = reporting.build(recorded, [r.to_json() for r in records], report_id=report_id)
    json_path, html_path = reporting.write(report, folder, timeline_runs=timeline or ())
    if json_output:
        sys.stdout.write(json.dumps({"report": str(json_path), "html": str(html_path),
                                     "summary": report["summary"],
                                     "unavailable": report["unavailable"],
                                     "runs": [{k: r[k] for k in ("id", "status", "hive_id",
                                                                  "agents")}
                                              for r in report["runs"]]}, indent=1) + "\n")
    else:
        _print_summary(Console(), report)
        Console().print(f"report: {json_path}\n        {html_path}")
    if not any(r.status == "ok" for r in records):
        raise SystemExit(1)


def agents_option(value: str | None) -> tuple[int | None, Any]:
    """`--agents N` (a count) or `--agents FILE` (a line-up, validated now: nothing runs on a
    bad file)."""
    from ruflo.errors import PolicyError
    from ruflo.workload import load_lineup

    if value is None:
        return None, None
    if value.strip().isdigit():
        if int(value) < 1:
            raise PolicyError(f"--agents must be at least 1 (got {value}); nothing was run")
        return int(value), None
    if not Path(value).is_file():
        raise PolicyError(f"--agents {value!r} is neither a number of agents nor an agents "
                          "file (a YAML line-up); nothing was run")
    return None, load_lineup(Path(value).resolve())


async def _live(plan: Any, settings: Any, folder: Path, scripted: bool, time_unit: float | None,
                run_timeout: float, recorded: dict[str, Any], on_run: Any) -> Any:
    from ruflo.compare.runs import COMPANY_ORG, LIVE_ENGINE, LiveSetup, command_env, run_plan_live
    from ruflo.compare.workloads import gateway_rules
    from ruflo.engine.board_engine import LiveParams
    from ruflo.gateway.client import GatewayClient
    from ruflo.store import open_store

    store = open_store(settings)
    server = None
    try:
        if scripted:
            from ruflo.gateway.scripted import ScriptedGateway

            rules = gateway_rules([r.path for r in plan.workloads if r.path is not None])
            server = ScriptedGateway({"rules": rules, "cost": 0.0002})
            url = server.start()
            gateway = GatewayClient(url, "sk-scripted", store=store, prices=settings.prices,
                                    base_url_source="ruflo compare --scripted")
            recorded["gateway"] = {"kind": "scripted", "url": url,
                                   "note": "answers come from a script, not a real model"}
        else:
            gateway = GatewayClient.from_settings(settings, store)
            recorded["gateway"] = {"kind": "configured", "url": gateway.base_url,
                                   "source": gateway.base_url_source}
        params = LiveParams(lease_seconds=settings.lease_seconds,
                            time_unit=time_unit or (0.05 if scripted else 10.0),
                            poll_seconds=0.5 if scripted else 1.0)
        recorded["engine"] = LIVE_ENGINE
        if "company" in recorded["modes"]:
            recorded["company_org"] = COMPANY_ORG
        recorded["live"] = {"lease_seconds": params.lease_seconds, "time_unit": params.time_unit,
                            "poll_seconds": params.poll_seconds, "model": settings.model,
                            "store": store.url, "run_timeout": run_timeout}
        setup = LiveSetup(store=store, gateway=gateway, params=params,
                          root=folder / "workspaces", model=settings.model, env=command_env(),
                          run_timeout=run_timeout)
        try:
            return await run_plan_live(plan, setup, on_run)
        finally:
            await gateway.aclose()
    finally:
        if server is not None:
            server.stop()
        store.close()


AGENT_ROWS_SHOWN = 12
"""Runs with more agents than this leave their per-agent table to report.json and the HTML."""


def agent_table(run: dict[str, Any]) -> Any:
    """Who did what in one run (compare.by_agent), as a table."""
    from rich.markup import escape
    from rich.table import Table

    from ruflo.compare.by_agent import kinds_text, thresholds_text
    from ruflo.compare.report import fmt_number

    table = Table(title=escape(f"who did what: {run['id']}"))
    widest = max((len(row["name"]) for row in run["agents"]), default=5)
    table.add_column("agent", no_wrap=True, min_width=min(widest, 40))
    for column in ("adapter", "took", "done", "failed", "attempts", "tokens", "cost",
                   "mean time", "thresholds"):
        table.add_column(column, overflow="fold")
    for row in run["agents"]:
        table.add_row(escape(row["name"]), row["adapter"] or "–", escape(kinds_text(row["taken"])),
                      str(row["done"]), str(row["failed"]), str(row["attempts"]),
                      str(row["tokens"]), fmt_number(row["cost"]),
                      fmt_number(row["mean_time"]), thresholds_text(row["thresholds"]))
    return table


def _print_summary(console: Any, report: dict[str, Any]) -> None:
    from rich.table import Table

    from ruflo.compare.report import spread_note

    for item in report["unavailable"]:
        console.print(f"[yellow]{item['mode']}: {item['status']}[/yellow]")
    table = Table(title="who won what (baseline runs, mean over seeds)")
    for column in ("workload", "metric", "won by", "by", "runner-up", "seeds", "spreads"):
        table.add_column(column)
    for row in report["summary"]:
        table.add_row(row["workload"], row["label"], row["winner"], row["margin"],
                      row["runner_up"], str(row["seeds"]),
                      spread_note(row))
    console.print(table)
    shown = 0
    for run in report["runs"]:
        if not run["agents"]:
            continue
        if len(run["agents"]) > AGENT_ROWS_SHOWN:
            shown = -1
            continue
        console.print(agent_table(run))
    if shown < 0:
        console.print(f"runs of more than {AGENT_ROWS_SHOWN} agents: who did what is in "
                      "report.json (runs[].agents) and report.html")
    for effect in report["kill_effects"]:
        change = effect["makespan_change"]
        console.print(f"killing agents: {effect['workload']} · {effect['mode']}: success "
                      f"{effect['success_baseline']:.0%} → {effect['success_killed']:.0%}"
                      + (f", makespan {change:+.0%}" if change is not None else ""))
