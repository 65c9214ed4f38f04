"""The stored comparison reports as the reports page shows them: where they are on disk (a
`ruflo compare` folder `<stamp>/report.json`, or a bare `<name>.json`) and what a person reads in
one (compare's "ruflo.compare/1" format, or any JSON as tables). Stdlib only; no I/O beyond the
reports folder.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

COMPARE_FORMAT = "ruflo.compare/1"
STAMP = re.compile(r"(\d{8}-\d{6})(?:-(\d{1,6}))?")
"""A report folder as `ruflo compare` names it: the UTC second it began, -n when several began
in the same second."""
REPORT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,150}")
"""Any other name the page accepts (a bare `<name>.json`, a folder from `compare --out`): no
slash and no leading dot, so no name can leave the reports folder."""
REPORT_MAX_BYTES = 20_000_000
UNAVAILABLE = "unavailable: "


@dataclass(frozen=True, slots=True)
class StoredReport:
    """One report in the reports folder."""

    name: str
    """The folder's stamp (or a bare file's stem): the page's URL names it."""
    json_path: Path | None
    """None when the folder has no report.json yet: the comparison is running, or stopped
    before its end."""
    html_path: Path | None
    """The report's charts (report.html, or `<name>.html` beside a bare file)."""
    bytes: int
    when: datetime
    """When the comparison began (from the stamp), else when the file was last written."""
    order: int = 0
    """The stamp's -n: which of the reports begun in the same second came later."""


def _stamp_time(name: str) -> tuple[datetime, int] | None:
    found = STAMP.fullmatch(name)
    if found is None:
        return None
    try:
        when = datetime.strptime(found[1], "%Y%m%d-%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None
    return when, int(found[2] or 1)


def _modified(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, UTC)


def list_reports(folder: Path) -> list[StoredReport]:
    """The stored reports, newest first: compare's folders (with or without their report.json
    yet) and bare `*.json` files. Names that could leave the folder are never listed."""
    if not folder.is_dir():
        return []
    found: dict[str, StoredReport] = {}
    bare: list[Path] = []
    for entry in folder.iterdir():
        if entry.is_dir() and REPORT_NAME.fullmatch(entry.name):
            data, charts = entry / "report.json", entry / "report.html"
            stamped = _stamp_time(entry.name)
            if data.is_file():
                when, order = stamped or (_modified(data), 0)
                found[entry.name] = StoredReport(entry.name, data,
                                                 charts if charts.is_file() else None,
                                                 data.stat().st_size, when, order)
            elif stamped is not None:
                found[entry.name] = StoredReport(entry.name, None, None, 0, *stamped)
        elif entry.is_file() and entry.suffix == ".json" and REPORT_NAME.fullmatch(entry.stem):
            bare.append(entry)
    for path in bare:
        if path.stem not in found:  # a folder of the same name wins
            charts = path.with_suffix(".html")
            found[path.stem] = StoredReport(path.stem, path, charts if charts.is_file() else None,
                                            path.stat().st_size, _modified(path))
    return sorted(found.values(), key=lambda r: (r.when, r.order, r.name), reverse=True)


def find_report(folder: Path, name: str) -> StoredReport | None:
    """The listed report of that name; a path is never built from the name itself."""
    if not REPORT_NAME.fullmatch(name):
        return None
    return next((r for r in list_reports(folder) if r.name == name), None)


def read_report(path: Path) -> tuple[Any, str | None]:
    """A report's JSON, or why it can't be shown."""
    try:
        if path.stat().st_size > REPORT_MAX_BYTES:
            return None, (f"the report is larger than {REPORT_MAX_BYTES // 1_000_000} MB; "
                          f"open {path} itself")
        return json.loads(path.read_text(encoding="utf-8")), None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return None, f"the report could not be read: {error}"


# -- compare's format --------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class RunRow:
    """One run of a comparison, every figure already written out for a reader."""

    id: str
    workload: str
    mode: str
    seed: str
    variant: str
    status: str
    ok: bool
    success: str
    success_basis: str
    makespan: str
    work_tokens: str
    coordination_tokens: str
    cost: str
    llm_calls: str
    duplicate_work: str
    thrash: str
    unclaimed_age: str
    hive_id: str | None
    """A live run's hive (the hive page links it); None for simulated or unrun runs."""
    hive_note: str


@dataclass(frozen=True, slots=True)
class SummaryRow:
    workload: str
    metric: str
    winner: str
    margin: str
    runner_up: str
    winner_value: str
    runner_up_value: str
    seeds: str
    spread: str


@dataclass(frozen=True, slots=True)
class KillRow:
    workload: str
    mode: str
    success: str
    drop: str
    makespan_change: str
    seeds: str


@dataclass(slots=True)
class CompareView:
    """A compare report as the page shows it."""

    id: str
    created: str
    scripted: bool
    simulated: bool
    demo: bool
    settings: list[tuple[str, str]]
    summary: list[SummaryRow]
    """The metrics some mode won."""
    ties: list[tuple[str, list[str]]]
    """Per workload, the metrics on which the two best modes did the same."""
    runs: list[RunRow]
    unavailable: list[tuple[str, str, int]]
    """Mode, why it could not run, how many runs that left out."""
    kill_effects: list[KillRow] = field(default_factory=list)
    modes: list[str] = field(default_factory=list)
    seeds: int = 0


def is_compare(data: Any) -> bool:
    return isinstance(data, dict) and data.get("format") == COMPARE_FORMAT


def number(value: Any, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        text = f"{value:,}"
    elif isinstance(value, float):
        text = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    else:
        text = str(value)
    return f"{text} {unit}".rstrip()


def dollars(value: Any) -> str:
    if value is None:
        return "–"
    cost = float(value)
    return f"${cost:,.2f}" if cost >= 1 else f"${cost:.4f}"


def metric_value(metric: str, value: Any, unit: str) -> str:
    """A summary figure in the metric's own unit."""
    if value is None:
        return "–"
    if metric == "success":
        return f"{float(value):.0%}"
    if metric == "cost":
        return dollars(value)
    if metric in ("makespan", "unclaimed_age_mean"):
        return number(float(value), unit)
    return number(float(value))


def _units(runs: list[dict[str, Any]]) -> dict[str, str]:
    units: dict[str, str] = {}
    for run in runs:
        units.setdefault(str(run.get("workload")), str(run.get("time_unit") or "s"))
    return units


def _run_row(run: dict[str, Any], simulated: bool) -> RunRow:
    status = str(run.get("status", ""))
    metrics = run.get("metrics") if isinstance(run.get("metrics"), dict) else None
    unit = str(run.get("time_unit") or "s")
    m: dict[str, Any] = metrics or {}

    def pair(first: str, second: str, a: str, b: str) -> str:
        if metrics is None:
            return "–"
        return f"{number(m.get(first))} {a} · {number(m.get(second))} {b}"

    age = number(m.get("unclaimed_age_mean"), unit) if metrics else "–"
    if metrics and m.get("unclaimed_age_max") is not None:
        age += f" (max {number(m.get('unclaimed_age_max'), unit)})"
    cost = "–"
    if metrics:
        unpriced = int(m.get("unknown_cost_calls") or 0)
        cost = "unknown" if m.get("cost") is None and unpriced else dollars(m.get("cost"))
        if unpriced and m.get("cost") is not None:
            cost += f" + {unpriced} unpriced"
    hive_id = run.get("hive_id") if isinstance(run.get("hive_id"), str) else None
    if hive_id is None:
        hive_note = "simulated: no hive" if simulated and status == "ok" else "no hive"
    else:
        hive_note = ""
    return RunRow(
        id=str(run.get("id", "")), workload=str(run.get("workload", "")),
        mode=str(run.get("mode", "")), seed=str(run.get("seed", "")),
        variant=str(run.get("variant", "")),
        status="unavailable" if status.startswith(UNAVAILABLE) else status, ok=status == "ok",
        success=number(m.get("success")) if metrics else "–",
        success_basis=str(m.get("success_basis") or ""),
        makespan=number(m.get("makespan"), unit) if metrics else "–",
        work_tokens=number(m.get("work_tokens")) if metrics else "–",
        coordination_tokens=number(m.get("coordination_tokens")) if metrics else "–",
        cost=cost, llm_calls=number(m.get("llm_calls")) if metrics else "–",
        duplicate_work=pair("duplicate_attempts", "duplicate_tokens", "attempts", "tokens"),
        thrash=pair("task_switches", "released_claims", "switches", "released"),
        unclaimed_age=age, hive_id=hive_id, hive_note=hive_note)


def _settings(data: dict[str, Any], settings: dict[str, Any], runs: list[dict[str, Any]],
              simulated: bool) -> list[tuple[str, str]]:
    """What the comparison ran and how, in the words of the page."""
    shown: list[tuple[str, str]] = []
    made = "ruflo demo" if settings.get("demo") else "ruflo compare"
    if settings.get("ruflo_version"):
        made += f" (ruflo {settings['ruflo_version']})"
    shown.append(("Made by", made))
    shown.append(("Created", _when(data.get("created_at"))))
    workloads = []
    for item in settings.get("workloads") or []:
        if isinstance(item, dict):
            name = str(item.get("name"))
            workloads.append(f"{name} (simulated shape)" if item.get("shape") else name)
        else:
            workloads.append(str(item))
    shown.append(("Workloads", ", ".join(workloads) or "–"))
    shown.append(("Modes", ", ".join(str(m) for m in settings.get("modes") or []) or "–"))
    seeds = settings.get("seeds")
    if isinstance(seeds, list):
        shown.append(("Seeds", f"{len(seeds)} ({', '.join(str(s) for s in seeds)})"))
    else:
        shown.append(("Seeds", number(seeds)))
    agents = settings.get("agents")
    lineup = settings.get("lineup")
    if isinstance(lineup, dict):
        crew = [f"{a.get('name')} ({a.get('adapter')})" for a in lineup.get("agents") or []
                if isinstance(a, dict)]
        shown.append(("Agents per run", f"the line-up {lineup.get('file')}: "
                      + (", ".join(crew) or "–")))
    else:
        shown.append(("Agents per run", number(agents) if agents is not None else
                      "the workload's own, else "
                      + ("100" if simulated else "4") + " dealt over its skills"))
    shown.append(("Runs", f"{len(runs)}, " + ("simulated" if simulated else "live")))
    if settings.get("engine"):
        shown.append(("Engine", str(settings["engine"])))
    shown.append(("Gateway", _gateway(settings, simulated)))
    live = settings.get("live") if isinstance(settings.get("live"), dict) else None
    if live:
        shown.append(("Model", str(live.get("model", "–"))))
        shown.append(("Time", f"{number(live.get('time_unit'))} s per policy time unit, "
                              f"leases of {number(live.get('lease_seconds'))} s, runs stopped "
                              f"after {number(live.get('run_timeout'))} s"))
        shown.append(("Store", str(live.get("store", "–"))))
    if settings.get("kill_fraction"):
        shown.append(("Agents killed mid-run",
                      f"{float(settings['kill_fraction']):.0%} (every case also run so)"))
    if settings.get("tasks_per_shape"):
        shown.append(("Tasks per shape", number(settings["tasks_per_shape"])))
    return shown


def _gateway(settings: dict[str, Any], simulated: bool) -> str:
    gateway = settings.get("gateway") if isinstance(settings.get("gateway"), dict) else None
    if gateway is None:
        return "none: simulated runs make no gateway call" if simulated else "not recorded"
    url = str(gateway.get("url") or "")
    if gateway.get("kind") == "scripted":
        return f"ScriptedGateway at {url}: answers come from a script, not a real model"
    source = f" (from {gateway['source']})" if gateway.get("source") else ""
    return f"{gateway.get('kind', 'gateway')} at {url}{source}"


def _when(value: Any) -> str:
    try:
        return datetime.fromisoformat(str(value)).astimezone(UTC).strftime(
            "%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return str(value or "–")


def compare_view(data: dict[str, Any]) -> CompareView:
    """Compare's report for the page. Raises KeyError/TypeError/ValueError on a file that says
    it is compare's format but isn't shaped like it (the page then says so)."""
    settings: dict[str, Any] = data["settings"]
    runs: list[dict[str, Any]] = data["runs"]
    simulated = bool(settings.get("simulate"))
    units = _units(runs)
    decided = [s for s in data.get("summary") or [] if s["winner"] != "tie"]
    ties: dict[str, list[str]] = {}
    for s in data.get("summary") or []:
        if s["winner"] == "tie":
            ties.setdefault(str(s["workload"]), []).append(str(s.get("label") or s["metric"]))
    summary = [SummaryRow(
        workload=str(s["workload"]), metric=str(s.get("label") or s["metric"]),
        winner=str(s["winner"]), margin=str(s["margin"]), runner_up=str(s["runner_up"]),
        winner_value=metric_value(s["metric"], s.get("winner_value"),
                                  units.get(str(s["workload"]), "s")),
        runner_up_value=metric_value(s["metric"], s.get("runner_up_value"),
                                     units.get(str(s["workload"]), "s")),
        seeds=number(s.get("seeds")),
        spread="overlap" if s.get("spreads_overlap") else "apart") for s in decided]
    left_out: dict[tuple[str, str], int] = {}
    for run in runs:
        status = str(run.get("status", ""))
        if status.startswith(UNAVAILABLE):
            key = (str(run.get("mode")), status.removeprefix(UNAVAILABLE))
            left_out[key] = left_out.get(key, 0) + 1
    for item in data.get("unavailable") or []:
        key = (str(item["mode"]), str(item["status"]).removeprefix(UNAVAILABLE))
        left_out.setdefault(key, 0)
    kills = [KillRow(
        workload=str(k["workload"]), mode=str(k["mode"]),
        success=f"{float(k['success_baseline']):.0%} → {float(k['success_killed']):.0%}",
        drop="none" if not k["success_drop"]
        else f"{-float(k['success_drop']) * 100:+.0f} points",
        makespan_change="–" if k.get("makespan_change") is None
        else f"{float(k['makespan_change']):+.0%}",
        seeds=number(k.get("seeds"))) for k in data.get("kill_effects") or []]
    gateway = settings.get("gateway")
    seeds = settings.get("seeds")
    return CompareView(
        id=str(data.get("id", "")), created=_when(data.get("created_at")),
        scripted=isinstance(gateway, dict) and gateway.get("kind") == "scripted", simulated=simulated,
        demo=bool(settings.get("demo")), settings=_settings(data, settings, runs, simulated),
        summary=summary, ties=list(ties.items()), runs=[_run_row(r, simulated) for r in runs],
        unavailable=[(mode, why, n) for (mode, why), n in sorted(left_out.items())],
        kill_effects=kills, modes=[str(m) for m in settings.get("modes") or []],
        seeds=len(seeds) if isinstance(seeds, list) else int(seeds or 0))


# -- any other JSON -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Table:
    columns: list[str]
    rows: list[list[str]]


def cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)[:200]
    return "" if value is None else str(value)


def as_table(items: Any, limit: int = 500) -> Table | None:
    """A list of flat records as a table (columns in first-seen order), or None."""
    if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
        return None
    columns: list[str] = []
    for item in items[:limit]:
        for key, value in item.items():
            if key not in columns and not isinstance(value, (dict, list)):
                columns.append(str(key))
    return Table(columns, [[cell(item.get(c)) for c in columns] for item in items[:limit]])


def generic_view(data: Any) -> dict[str, Any]:
    """Any JSON as facts (top-level values), sections (objects) and tables (lists of
    records), plus the text itself."""
    shown: dict[str, Any] = {"facts": [], "tables": [], "sections": []}
    if isinstance(data, dict):
        shown["facts"] = [(k, cell(v)) for k, v in data.items()
                          if not isinstance(v, (dict, list))]
        shown["tables"] = [(k, t) for k, v in data.items() if (t := as_table(v)) is not None]
        shown["sections"] = [(k, [(ik, cell(iv)) for ik, iv in v.items()])
                             for k, v in data.items() if isinstance(v, dict)]
    elif (table := as_table(data)) is not None:
        shown["tables"] = [("runs", table)]
    shown["raw"] = json.dumps(data, indent=2, ensure_ascii=False)[:200_000]
    return shown
