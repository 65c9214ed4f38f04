"""A comparison asked for over A2A: the built-in workloads (or simulated shapes) through several
coordination modes in the simulator, the report stored with the others (the reports page shows
it) and answered as the A2A task's artifact. Live comparisons stay with `ruflo compare`: they
run commands and take minutes per run.
Depends on the compare package, pydantic and the server's schemas.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, StringConstraints

from ruflo.compare import report as reporting
from ruflo.compare.runs import Plan, WorkloadRef, check, resolve, run_plan_simulated
from ruflo.compare.workloads import BUILTIN
from ruflo.engine.shapes import SHAPES
from ruflo.errors import PolicyError
from ruflo.model import Mode
from ruflo.server.schemas import Body

MAX_RUNS = 60
"""Runs one request may ask for (workloads × modes × seeds × variants): a simulated run takes
a fraction of a second at the default sizes, so a request stays within seconds."""

WorkloadName = Annotated[str, StringConstraints(min_length=1, max_length=40)]


class CompareSpec(Body):
    """The `compare` object of a message's data part."""

    workloads: list[WorkloadName] = Field(min_length=1, max_length=10)
    """Built-in workloads (ticket, bug, feature, registry) or simulated shapes (wide, deep,
    mixed); never a file on the server."""
    modes: list[Mode] = Field(default_factory=lambda: [Mode.SWARM, Mode.COMPANY], min_length=1,
                              max_length=len(Mode))
    seeds: int = Field(default=1, ge=1, le=10)
    agents: int | None = Field(default=None, ge=1, le=500)
    tasks: int = Field(default=1000, ge=1, le=5000)
    kill_fraction: float | None = Field(default=None, gt=0, lt=1)


def compare_plan(spec: CompareSpec) -> Plan:
    """The plan a request asks for, refused (PolicyError) when it names anything but the
    built-in workloads and shapes, or asks for too many runs."""
    unknown = [name for name in spec.workloads if name not in BUILTIN and name not in SHAPES]
    if unknown:
        raise PolicyError(f"no built-in workload {unknown[0]!r}: over A2A a comparison runs the "
                          f"built-in workloads ({', '.join(BUILTIN)}) or simulated shapes "
                          f"({', '.join(SHAPES)})")
    refs: tuple[WorkloadRef, ...] = tuple(resolve(list(dict.fromkeys(spec.workloads))))
    plan = Plan(workloads=refs, modes=tuple(dict.fromkeys(spec.modes)),
                seeds=tuple(range(spec.seeds)), agents=spec.agents, simulate=True,
                kill_fraction=spec.kill_fraction, tasks=spec.tasks)
    check(plan)
    if plan.total > MAX_RUNS:
        raise PolicyError(f"that is {plan.total} runs; over A2A a comparison may have at most "
                          f"{MAX_RUNS} (workloads × modes × seeds × variants)")
    return plan


def run_comparison(plan: Plan, reports: Path) -> dict[str, Any]:
    """Run the plan in the simulator and store its report in `reports` (blocking: call it from
    a worker thread). Returns the report."""
    from ruflo import __version__

    records = run_plan_simulated(plan, lambda record: None)
    folder, report_id = reporting.report_dir(reports)
    recorded: dict[str, Any] = {
        "workloads": [{"name": r.name, "path": None, "shape": r.shape} for r in plan.workloads],
        "modes": [m.value for m in plan.modes], "seeds": list(plan.seeds),
        "agents": plan.agents, "simulate": True, "kill_fraction": plan.kill_fraction,
        "tasks_per_shape": plan.tasks if any(r.shape for r in plan.workloads) else None,
        "auto_approval": None, "ruflo_version": __version__, "asked_over": "a2a",
        "engine": "simulator (ruflo.engine.simulate, default SimParams)"}
    report = reporting.build(recorded, [r.to_json() for r in records], report_id=report_id)
    reporting.write(report, folder)
    return report


def report_digest(report: dict[str, Any]) -> dict[str, Any]:
    """What the artifact carries: the verdicts and aggregates, not every run's timeline (the
    whole report is on the reports page)."""
    return {"id": report["id"], "page": f"/reports/{report['id']}", "format": report["format"],
            "settings": report["settings"], "summary": report["summary"],
            "aggregates": report["aggregates"], "kill_effects": report["kill_effects"],
            "unavailable": report["unavailable"],
            "runs": [{"id": r["id"], "status": r["status"]} for r in report["runs"]]}


def report_text(report: dict[str, Any]) -> str:
    lines = [f"comparison {report['id']} ({len(report['runs'])} simulated runs; the whole report "
             f"is at /reports/{report['id']})"]
    lines += [f"- {row['workload']} · {row['label']}: {row['winner']} ({row['margin']}; "
              f"runner-up {row['runner_up']})" for row in report["summary"]]
    lines += [f"- {item['mode']}: {item['status']}" for item in report["unavailable"]]
    return "\n".join(lines)
