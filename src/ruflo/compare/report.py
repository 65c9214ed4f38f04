"""The comparison report: `report.json` (every run, every metric, the exact settings) and
`report.html` (plotly charts, plotly.js inline so the file works offline, and a generated summary
of which mode won what). Depends on the runner's records; plotly loads when the HTML is written.
"""

from __future__ import annotations

import html
import json
import math
import statistics
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FORMAT = "ruflo.compare/1"

METRICS: tuple[tuple[str, str, bool], ...] = (
    # (name, label, higher is better)
    ("success", "verified success rate", True),
    ("makespan", "makespan", False),
    ("tokens", "tokens", False),
    ("cost", "cost (USD)", False),
    ("coordination_tokens", "coordination tokens", False),
    ("llm_calls", "LLM calls", False),
    ("tokens_per_success", "tokens per success", False),
    ("duplicate_tokens", "duplicate-work tokens", False),
    ("duplicate_attempts", "duplicate attempts", False),
    ("task_switches", "task switches", False),
    ("released_claims", "released claims", False),
    ("unclaimed_age_mean", "unclaimed-task age (mean)", False),
    ("merge_conflicts", "merge conflicts", False),
    ("undone_merges", "merges undone by a failing check", False),
    ("integration_tasks", "integration tasks", False),
    ("integration_tokens", "integration tokens", False),
    ("integration_cost", "integration cost (USD)", False),
    ("rework", "rework (extra attempts + undone merges)", False),
)
CHARTED = ("success", "makespan", "tokens", "cost", "llm_calls", "duplicate_tokens",
           "task_switches", "released_claims", "unclaimed_age_mean", "merge_conflicts",
           "integration_tokens", "rework")
INTEGRATION = ("merges", "merge_conflicts", "undone_merges", "integration_tasks",
               "integration_tokens", "integration_cost", "rework")
"""The integration figures of each run (metrics.integration_figures), as the report's
"Integration" table shows them."""


def aggregate(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per workload, mode and variant, each metric over the seeds: n, mean, std, min, max.
    Tokens per success is total tokens over successes (None with no success)."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for run in runs:
        if run["metrics"] is not None and run["status"] == "ok":
            groups.setdefault((run["workload"], run["mode"], run["variant"]), []).append(run)
    rows = []
    for (workload, mode, variant), members in groups.items():
        for name, _, _ in METRICS:
            if name == "tokens_per_success":
                wins = sum(1 for r in members if r["metrics"]["success"])
                total = sum(r["metrics"]["tokens"] for r in members)
                values = [total / wins] if wins else []
            else:
                values = [float(r["metrics"][name]) for r in members
                          if r["metrics"].get(name) is not None]
            rows.append({"workload": workload, "mode": mode, "variant": variant, "metric": name,
                         "n": len(members), "values": len(values),
                         "mean": statistics.fmean(values) if values else None,
                         "std": statistics.pstdev(values) if len(values) > 1 else 0.0
                         if values else None,
                         "min": min(values) if values else None,
                         "max": max(values) if values else None})
    return rows


def summarise(aggregates: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Which mode won each metric on each workload (baseline runs), by how much, over how many
    seeds, and whether the runner-up's spread overlaps the winner's."""
    table: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in aggregates:
        if row["variant"] == "baseline" and row["mean"] is not None:
            table.setdefault((row["workload"], row["metric"]), []).append(row)
    higher = {name: up for name, _, up in METRICS}
    labels = {name: label for name, label, _ in METRICS}
    summary = []
    for (workload, metric), rows in table.items():
        if len(rows) < 2:
            continue
        up = higher[metric]
        ranked = sorted(rows, key=lambda r: r["mean"], reverse=up)
        best, second = ranked[0], ranked[1]
        if best["mean"] == second["mean"]:
            verdict, margin = "tie", "no difference"
        else:
            verdict = best["mode"]
            if metric == "success":
                margin = f"{(best['mean'] - second['mean']) * 100:+.0f} points"
            elif second["mean"]:
                change = (second["mean"] - best["mean"]) / abs(second["mean"])
                margin = f"{abs(change):.{0 if abs(change) >= 0.1 else 1}%} " \
                         f"{'higher' if up else 'lower'}"
            else:
                margin = f"{best['mean'] - second['mean']:+.3g}"
        overlap = best["min"] <= second["max"] if up else best["max"] >= second["min"]
        summary.append({"workload": workload, "metric": metric, "label": labels[metric],
                        "winner": verdict, "runner_up": second["mode"],
                        "winner_value": best["mean"], "runner_up_value": second["mean"],
                        "margin": margin, "seeds": min(best["n"], second["n"]),
                        "spreads_overlap": bool(overlap) and verdict != "tie"})
    return summary


def kill_effects(aggregates: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Baseline against killed runs, per workload and mode: the drop in success and the change
    in makespan when agents are killed mid-run."""
    by = {(r["workload"], r["mode"], r["variant"], r["metric"]): r for r in aggregates}
    rows = []
    for (workload, mode, variant, metric), row in by.items():
        if variant != "killed" or metric != "success":
            continue
        base = by.get((workload, mode, "baseline", "success"))
        span = by.get((workload, mode, "baseline", "makespan"))
        span_killed = by.get((workload, mode, "killed", "makespan"))
        if base is None or base["mean"] is None or row["mean"] is None:
            continue
        slower = None
        if span and span_killed and span["mean"] and span_killed["mean"] is not None:
            slower = span_killed["mean"] / span["mean"] - 1
        rows.append({"workload": workload, "mode": mode,
                     "success_baseline": base["mean"], "success_killed": row["mean"],
                     "success_drop": base["mean"] - row["mean"], "makespan_change": slower,
                     "seeds": row["n"]})
    return rows


def build(settings: dict[str, Any], runs: Sequence[dict[str, Any]], *,
          report_id: str) -> dict[str, Any]:
    aggregates = aggregate(runs)
    unavailable = sorted({(r["mode"], r["status"]) for r in runs
                          if r["status"].startswith("unavailable")})
    return {"format": FORMAT, "id": report_id, "created_at": datetime.now(UTC).isoformat(),
            "settings": settings, "runs": list(runs), "aggregates": aggregates,
            "summary": summarise(aggregates), "kill_effects": kill_effects(aggregates),
            "unavailable": [{"mode": m, "status": s} for m, s in unavailable]}


def report_dir(base: Path) -> tuple[Path, str]:
    """A new folder <base>/<UTC timestamp>[-n] for one report."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    name, n = stamp, 1
    while (base / name).exists():
        n += 1
        name = f"{stamp}-{n}"
    path = base / name
    path.mkdir(parents=True)
    return path, name


def write(report: dict[str, Any], folder: Path, *, timeline_runs: Sequence[str] = ()) -> \
        tuple[Path, Path]:
    """Write report.json and report.html into the folder; returns both paths."""
    json_path = folder / "report.json"
    json_path.write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")
    html_path = folder / "report.html"
    html_path.write_text(render_html(report, timeline_runs), encoding="utf-8")
    return json_path, html_path


# -- HTML ----------------------------------------------------------------------------------------
def fmt_number(value: Any) -> str:
    """A figure as the report writes it (plain text): `–` for none, 4 significant digits."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _fmt(value: Any) -> str:
    return html.escape(fmt_number(value))


AGENT_ROWS = 30
"""Per-agent rows the HTML shows per run (the busiest first); report.json has them all."""


def _agents_html(report: dict[str, Any]) -> str:
    """Who did what in each run: per agent, its adapter, the kinds of task it took and finished,
    how its attempts ended, its spend from the ledger, its mean attempt time and (swarm) the
    thresholds it learned (compare.by_agent)."""
    from ruflo.compare.by_agent import kinds_text, thresholds_text

    parts = []
    for run in report["runs"]:
        rows = run.get("agents") or []
        if not rows:
            continue
        shown = sorted(rows, key=lambda r: -r["attempts"])[:AGENT_ROWS] \
            if len(rows) > AGENT_ROWS else rows
        more = (f"<p>and {len(rows) - len(shown)} more agents (report.json: "
                "runs[].agents)</p>") if len(rows) > len(shown) else ""
        parts.append(f"<h3>{html.escape(run['id'])}</h3>" + _table(
            ["agent", "adapter", "model", "took (tasks per kind)", "done (per kind)", "attempts",
             "done", "failed", "released", "coordination claims", "LLM calls", "tokens",
             "cost (USD)", f"mean time ({run['time_unit']})", "thresholds at the end"],
            [(r["name"], r["adapter"], r["model"], kinds_text(r["taken"]),
              kinds_text(r["done_by_kind"]), r["attempts"], r["done"], r["failed"],
              r["released"], r["coordination"], r["calls"], r["tokens"], r["cost"],
              r["mean_time"], thresholds_text(r["thresholds"])) for r in shown],
            "agents") + more)
    if not parts:
        return ""
    lineup = report["settings"].get("lineup")
    said = (f"The agents came from the line-up {lineup['file']}." if lineup else
            "The agents are the workload's, or the ones the runner made (settings).")
    return ("<h2>Who did what</h2><p>" + html.escape(said) + " Thresholds are a swarm's "
            "response thresholds per skill as learned by the end of the run (low: eager).</p>"
            + "".join(parts))


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _company_table(report: dict[str, Any]) -> str:
    """How each company run was organised (counted from its events by the runner) and what its
    coordination cost next to its work, with the auto-approval policy it ran under."""
    rows = []
    for run in report["runs"]:
        figures = run.get("detail", {}).get("company")
        if run["mode"] != "company" or figures is None or run["metrics"] is None:
            continue
        approvals = "; ".join(f"{a['kind']}: {a['status']} by {a['decided_by'] or 'nobody yet'}"
                              for a in figures["approvals"]) or "none"
        rows.append((run["id"], run["metrics"]["coordination_tokens"],
                     run["metrics"]["work_tokens"], figures["plans"], figures["delegations"],
                     figures["corrected_delegations"], figures["escalations"],
                     figures["reassignments"], figures["plans_refused"],
                     figures["plan_fallbacks"], approvals))
    if not rows:
        return ""
    policy = report["settings"].get("auto_approval")
    said = (", ".join(f"{kind}: {decision}" for kind, decision in policy.items())
            if isinstance(policy, dict) else "none: a person decides with `ruflo approval`")
    return ("<h2>Company runs</h2>"
            f"<p>Auto-approval policy: {html.escape(said)}. "
            f"{html.escape(str(report['settings'].get('company_org') or ''))}</p>"
            + _table(["run", "coordination tokens", "work tokens", "planning calls",
                      "delegations", "corrected by the capability check", "escalations",
                      "reassignments", "plans refused", "fallbacks", "approvals"], rows,
                     "company"))


def chosen_timelines(report: dict[str, Any], wanted: Sequence[str]) -> list[dict[str, Any]]:
    """The runs whose timeline to draw: the ones asked for, else the first seed of the first
    workload in each mode."""
    runs = [r for r in report["runs"] if r["status"] == "ok" and r["timeline"]]
    if wanted:
        return [r for r in runs if r["id"] in wanted]
    if not runs:
        return []
    first, seed = runs[0]["workload"], runs[0]["seed"]
    return [r for r in runs if r["workload"] == first and r["seed"] == seed
            and r["variant"] == "baseline"]


def spread_note(row: dict[str, Any]) -> str:
    if row["winner"] == "tie":
        return "–"
    return "overlap" if row["spreads_overlap"] else "apart"


def render_html(report: dict[str, Any], timeline_runs: Sequence[str] = ()) -> str:
    import plotly.graph_objects as go

    settings = report["settings"]
    runs = [r for r in report["runs"] if r["status"] == "ok" and r["metrics"] is not None]
    modes = list(dict.fromkeys(r["mode"] for r in report["runs"]))
    labels = {name: label for name, label, _ in METRICS}
    unit = {r["time_unit"] for r in runs}
    time_unit = ", ".join(sorted(unit)) or "s"
    figures: list[tuple[str, Any]] = []

    for metric in CHARTED:
        fig = go.Figure()
        for mode in modes:
            mine = [r for r in runs if r["mode"] == mode and r["variant"] == "baseline"
                    and r["metrics"].get(metric) is not None]
            fig.add_trace(go.Box(
                x=[r["workload"] for r in mine],
                y=[float(r["metrics"][metric]) for r in mine],
                name=mode, boxpoints="all", jitter=0.3, pointpos=0,
                text=[r["id"] for r in mine], hoverinfo="y+text"))
        title = labels[metric] + (f" ({time_unit})" if metric in ("makespan",
                                                                  "unclaimed_age_mean") else "")
        fig.update_layout(title=title, boxmode="group", height=380,
                          margin={"l": 50, "r": 20, "t": 50, "b": 40})
        figures.append((f"metric-{metric}", fig))

    split = go.Figure()
    groups = list(dict.fromkeys((r["workload"], r["mode"]) for r in runs
                                if r["variant"] == "baseline"))
    for part, key in (("work", "work_tokens"), ("coordination", "coordination_tokens")):
        split.add_trace(go.Bar(
            x=[f"{w} · {m}" for w, m in groups],
            y=[statistics.fmean([r["metrics"][key] for r in runs
                                 if (r["workload"], r["mode"]) == g
                                 and r["variant"] == "baseline"]) for g in groups],
            name=part))
    split.update_layout(title="tokens per run: work and coordination (mean over seeds)",
                        barmode="stack", height=380)
    figures.append(("cost-split", split))

    effects = report.get("kill_effects") or []
    if effects:
        kill = go.Figure()
        kill.add_trace(go.Bar(x=[f"{e['workload']} · {e['mode']}" for e in effects],
                              y=[e["success_drop"] * 100 for e in effects],
                              name="success drop (points)"))
        kill.update_layout(title=f"effect of killing {settings.get('kill_fraction')} of the "
                                 "agents mid-run: drop in verified success", height=360)
        figures.append(("kill-effect", kill))

    for n, run in enumerate(chosen_timelines(report, timeline_runs)):
        bars = run["timeline"]
        end_of_run = max([b["end"] or b["start"] for b in bars], default=0.0)
        colours = {"done": "#2a9d8f", "failed": "#e76f51", "released": "#e9c46a",
                   "expired": "#6c757d", "cancelled": "#adb5bd", "split": "#8ecae6",
                   "delegated": "#a8dadc", "open": "#264653"}
        fig = go.Figure()
        for outcome, colour in colours.items():
            mine = [b for b in bars if b["outcome"] == outcome]
            if not mine:
                continue
            fig.add_trace(go.Bar(
                y=[b["agent"] for b in mine],
                x=[max((b["end"] if b["end"] is not None else end_of_run) - b["start"], 1e-3)
                   for b in mine],
                base=[b["start"] for b in mine], orientation="h", name=outcome,
                marker_color=colour, text=[b["task"] for b in mine],
                hovertemplate="%{y}: %{text}<br>%{base:.3g} → +%{x:.3g}<extra></extra>"))
        agents = len({b["agent"] for b in bars})
        fig.update_layout(title=f"timeline of {run['id']}: who worked on what "
                                f"({run['time_unit']})",
                          barmode="overlay", height=min(1400, 160 + 18 * agents),
                          yaxis={"type": "category", "autorange": "reversed"})
        figures.append((f"timeline-{n}", fig))

    parts = []
    for index, (div_id, fig) in enumerate(figures):
        parts.append(fig.to_html(full_html=False, include_plotlyjs=(index == 0),
                                 div_id=div_id, config={"displaylogo": False}))

    summary = report["summary"]
    summary_rows = [(s["workload"], s["label"], s["winner"], s["margin"], s["runner_up"],
                     s["winner_value"], s["runner_up_value"], s["seeds"],
                     spread_note(s)) for s in summary]
    summary_html = _table(["workload", "metric", "won by", "by", "runner-up", "winner (mean)",
                           "runner-up (mean)", "seeds", "spread over seeds"], summary_rows,
                          "summary") if summary_rows else \
        "<p>Fewer than two modes ran on any workload: nothing to compare.</p>"
    runs_rows = [(r["id"], r["status"], r["hive_id"],
                  *(r["metrics"][k] if r["metrics"] else None
                    for k in ("success", "makespan", "tokens", "coordination_tokens", "cost",
                              "llm_calls", "duplicate_tokens", "task_switches",
                              "released_claims", "unclaimed_age_mean", "killed_agents",
                              "recovered_tasks")))
                 for r in report["runs"]]
    runs_html = _table(["run", "status", "hive", "success", "makespan", "tokens",
                        "coordination tokens", "cost", "LLM calls", "duplicate tokens",
                        "task switches", "released claims", "unclaimed age", "killed",
                        "recovered"], runs_rows, "runs")
    company_html = _company_table(report)
    integration_rows = [(r["id"], *(r["metrics"].get(k) for k in INTEGRATION)) for r in runs]
    integration_html = _table(["run", "merges", "merge conflicts", "merges undone",
                               "integration tasks", "integration tokens", "integration cost",
                               "rework"], integration_rows, "integration")
    unavailable = "".join(f"<li><b>{html.escape(u['mode'])}</b>: {html.escape(u['status'])}</li>"
                          for u in report["unavailable"])
    gateway = settings.get("gateway") or {}
    notice = ""
    if gateway.get("kind") == "scripted":
        notice = ("<p class=notice>The answers in the live runs came from the ScriptedGateway: a "
                  "script, not a real model. The numbers measure the orchestration, not a "
                  "model's skill.</p>")
    settings_html = html.escape(json.dumps(settings, indent=1, default=str))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>ruflo compare · {html.escape(report['id'])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #1d1d1f; }}
table {{ border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }}
th, td {{ border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: left; }}
th {{ background: #f2f2f2; }}
.notice {{ background: #fff3cd; padding: 0.5rem 1rem; border-left: 4px solid #e0a800; }}
pre {{ background: #f6f6f6; padding: 1rem; overflow: auto; }}
</style></head><body>
<h1>ruflo compare</h1>
<p>Report {html.escape(report['id'])} · {len(report['runs'])} runs ·
modes {html.escape(', '.join(modes))} · seeds {html.escape(str(settings.get('seeds')))} ·
{'simulated' if settings.get('simulate') else 'live'}</p>
{notice}
{f'<h2>Not run</h2><ul>{unavailable}</ul>' if unavailable else ''}
<h2>Who won what</h2>
{summary_html}
<h2>Charts</h2>
{''.join(parts)}
<h2>Every run</h2>
{runs_html}
<h2>Integration</h2>
<p>Each live run works in git worktrees cut from its fixture's first commit; a conflicting merge,
or one after which a check fails, becomes an integration task (swarm: on the board; company: the
owner's manager). Simulated runs apply the simulator's conflict rule (docs/compare.md).</p>
{integration_html}
{company_html}
{_agents_html(report)}
<h2>Settings</h2>
<pre>{settings_html}</pre>
</body></html>
"""
