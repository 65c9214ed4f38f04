"""`ruflo compare` live on the three built-in workloads with the ScriptedGateway over real HTTP and
the real SQLite store: every number in the report is checked against the events and ledger of
the hive it names, and the verify command is run again on each final workspace."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from ruflo.cli import run
from ruflo.compare.runs import Plan, check, resolve
from ruflo.errors import PolicyError
from ruflo.model import CostKind, Event, HiveStatus, Mode, Task, TaskState
from ruflo.store import open_store
from ruflo.store.sql import SqlStore
from ruflo.workload import load_workload

pytestmark = pytest.mark.slow


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("OPENAI_BASE_URL", "LITELLM_BASE_URL", "OPENAI_API_KEY", "DATABASE_URL",
                "RUFLO_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("RUFLO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("RUFLO_LEASE_SECONDS", "1")
    return tmp_path / "data"


def latest_report(data_dir: Path) -> tuple[Path, dict[str, Any]]:
    folders = sorted((data_dir / "reports").iterdir())
    assert len(folders) == 1
    return folders[0], json.loads((folders[0] / "report.json").read_text())


def test_three_workloads_in_three_modes_report_only_what_the_store_recorded(
        data_dir: Path) -> None:
    code = run(["compare", "ticket", "bug", "feature", "--modes", "swarm,company,solo",
                "--seeds", "2", "--agents", "3", "--scripted", "--json"])
    assert code == 0
    folder, report = latest_report(data_dir)
    assert report["settings"]["modes"] == ["swarm", "company", "solo"]
    assert report["settings"]["seeds"] == [0, 1]
    assert report["settings"]["gateway"]["kind"] == "scripted"
    assert report["settings"]["auto_approval"] == POLICY
    assert report["unavailable"] == []
    runs = report["runs"]
    assert len(runs) == 3 * 3 * 2
    assert {r["status"] for r in runs} == {"ok"}

    store = open_store(f"sqlite:///{data_dir / 'ruflo.db'}")
    try:
        for entry in runs:
            check_run(store, entry)
    finally:
        store.close()

    workspace = Path(next(r["workspace"] for r in runs if r["workload"] == "ticket"))
    assert "--shout" in (workspace / "greet.py").read_text()
    fixture = WORKLOADS / "ticket/repo/greet.py"
    assert "--shout" not in fixture.read_text(), "the fixture itself is never touched"

    # Aggregates and summary agree with the runs.
    makespans: dict[tuple[str, str], list[float]] = {(r["workload"], r["mode"]): [] for r in runs}
    coordination: dict[tuple[str, str], list[int]] = {k: [] for k in makespans}
    for r in runs:
        makespans[(r["workload"], r["mode"])].append(r["metrics"]["makespan"])
        coordination[(r["workload"], r["mode"])].append(r["metrics"]["coordination_tokens"])
    for row in report["aggregates"]:
        values: list[Any] | None = {"makespan": makespans, "coordination_tokens": coordination
                                    }.get(row["metric"], {}).get((row["workload"], row["mode"]))
        if values is not None:
            assert row["mean"] == pytest.approx(sum(values) / len(values))
            assert row["n"] == 2
    winners = {(s["workload"], s["metric"]): s for s in report["summary"]}
    assert winners[("bug", "success")]["winner"] == "tie"
    html = (folder / "report.html").read_text()
    for div in ("metric-makespan", "metric-tokens", "cost-split", "timeline-0"):
        assert f'id="{div}"' in html
    assert "ScriptedGateway" in html
    assert "Company runs" in html


WORKLOADS = Path(__file__).parents[2] / "src/ruflo/compare/workloads"
POLICY = {"budget_override": "reject", "hire": "reject", "strategy": "reject"}
TICKETS = {"ticket": ["Add the --shout flag", "Document the --shout flag"],
           "bug": ["Fix median for even-length lists", "Note the median fix in the changelog"],
           "feature": ["Write the textkit.slug module", "Write the tests for slugify",
                       "Document slugify in the README"]}


def check_run(store: SqlStore, entry: dict[str, Any]) -> None:
    """Every figure of one run, recomputed from the hive's own events, ledger and board."""
    hive = store.get_hive(entry["hive_id"])
    assert hive.mode.value == entry["mode"]
    assert hive.status is HiveStatus.DONE, (entry["id"], hive.pause_reason)
    events = store.events(hive.id)
    ledger = store.ledger(hive_id=hive.id)
    tasks = store.list_tasks(hive.id)
    m = entry["metrics"]
    company = entry["mode"] == "company"

    # Spend: straight from the ledger, coordination apart from work by the ledger's kind.
    assert m["llm_calls"] == len(ledger) > 0
    assert m["tokens"] == sum(e.prompt_tokens + e.completion_tokens for e in ledger)
    planning = [e for e in ledger if e.kind is CostKind.COORDINATION]
    assert m["coordination_tokens"] == sum(e.prompt_tokens + e.completion_tokens
                                           for e in planning)
    assert m["work_tokens"] + m["coordination_tokens"] == m["tokens"]
    assert m["cost"] == pytest.approx(sum(e.cost or 0 for e in ledger))
    assert m["coordination_cost"] == (pytest.approx(sum(e.cost or 0 for e in planning))
                                      if planning else None)
    assert m["tokens_per_success"] == m["tokens"]
    turns = sum(e.data.get("turns", 0) for e in events if e.kind == "task_done")
    plans = [e for e in events if e.kind == "ticket_planned"]
    assert m["llm_calls"] == turns + len(plans)
    assert len(planning) == len(plans)
    if company:
        assert m["coordination_tokens"] > 0
        assert m["coordination_tokens"] == sum(e.data["tokens"] for e in plans)
    else:
        assert m["coordination_tokens"] == 0
        assert not plans

    # Success: the verify verdict recorded, and the workspace really passes it again.
    verdict = [e for e in events if e.kind == "compare_verified"]
    assert len(verdict) == 1
    assert verdict[0].data["passed"] is True
    assert m["success"] is True
    workload = load_workload(WORKLOADS / entry["workload"] / "workload.yaml")
    again = subprocess.run(workload.verify or "false", shell=True, cwd=entry["workspace"],
                           capture_output=True, text=True,
                           env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"})
    assert again.returncode == 0, again.stdout + again.stderr

    # Board and time: from the events.
    assert m["tasks"] == len(tasks) == m["done"]
    assert all(t.state is TaskState.DONE for t in tasks)
    claims = [e for e in events if e.kind == "task_claimed"]
    assert m["attempts"] == len(claims)
    splits = [e for e in events if e.kind == "ticket_blocked"]
    handed = [e for e in events if e.kind == "task_released"
              and e.data.get("reason") == "delegated"]
    assert m["duplicate_attempts"] == len(claims) - len(splits) - len(handed) - len(tasks) == 0
    done = [e.task_id for e in events if e.kind == "task_done"]
    assert m["done_twice"] == 0
    assert len(done) == len(set(done)) == len(tasks)
    released = [e for e in events if e.kind == "lease_expired" or (
        e.kind == "task_released" and e.data.get("reason") != "delegated"
        and not str(e.data.get("reason", "")).startswith("attempt failed"))]
    assert m["released_claims"] == len(released)
    start = next(e.ts for e in events if e.kind == "engine_started")
    last = max(e.ts for e in events if e.kind in ("task_done", "task_failed", "task_cancelled"))
    assert m["makespan"] == pytest.approx((last - start).total_seconds())
    assert m["unclaimed_age_max"] >= m["unclaimed_age_mean"] >= 0
    # Every bar of the timeline is a claim of the hive.
    assert len(entry["timeline"]) == len(claims)
    assert {(b["agent"], b["task"]) for b in entry["timeline"]} == \
        {(e.agent_id, e.task_id) for e in claims}
    outcomes = Counter(b["outcome"] for b in entry["timeline"])
    assert outcomes == Counter({"done": len(tasks), "split": len(splits),
                                "delegated": len(handed)})
    if entry["mode"] == "solo":
        assert len({e.agent_id for e in claims}) == 1

    [started] = [e for e in events if e.kind == "compare_run_started"]
    assert started.data["run"] == entry["id"]
    if company:
        check_company(store, entry, events, tasks)
    else:
        assert started.data["auto_approval"] is None
        assert sorted(t.title for t in tasks) == sorted(TICKETS[entry["workload"]])


def check_company(store: SqlStore, entry: dict[str, Any], events: list[Event],
                  tasks: list[Task]) -> None:
    """The org chart, the delegation chain and the auto-approval policy, from the events."""
    hive_id = entry["hive_id"]
    agents = {a.id: a for a in store.list_agents(hive_id)}
    by_name = {a.name: a for a in agents.values()}
    root, lead = by_name["ceo"], by_name["lead"]
    assert root.reports_to is None
    assert lead.reports_to == root.id
    engineers = [a for a in agents.values() if a.id not in (root.id, lead.id)]
    assert len(engineers) == 3
    assert all(a.reports_to == lead.id for a in engineers)
    assert [o["name"] for o in entry["detail"]["org"]][:2] == ["ceo", "lead"]

    [objective] = [t for t in tasks if t.parent_id is None]
    assert objective.verify == load_workload(
        WORKLOADS / entry["workload"] / "workload.yaml").verify
    children = [t for t in tasks if t.parent_id == objective.id]
    assert [t.title for t in children] == TICKETS[entry["workload"]]
    done_by = {e.task_id: e.agent_id for e in events if e.kind == "task_done"}
    assert done_by[objective.id] == root.id, "the root integrates and closes the objective"

    # The chain: ceo → lead → an engineer whose skills fit, for every ticket.
    chain: dict[str, list[tuple[str, str]]] = {}
    for event in events:
        if event.kind == "ticket_delegated":
            assert event.agent_id is not None
            assert event.task_id is not None
            chain.setdefault(event.task_id, []).append((agents[event.agent_id].name,
                                                        event.data["owner_name"]))
            assert event.data["chosen_by"] == "llm"
    for child in children:
        [(ceo, to_lead), (lead_name, engineer)] = chain[child.id]
        assert (ceo, to_lead, lead_name) == ("ceo", "lead", "lead")
        assert set(child.skills) <= set(by_name[engineer].skills)
        assert done_by[child.id] == by_name[engineer].id
    figures = entry["detail"]["company"]
    assert figures["delegations"] == sum(len(c) for c in chain.values()) == 2 * len(children)
    assert figures["plans"] == 1 + len(children)
    assert figures["corrected_delegations"] == figures["escalations"] == 0
    assert figures["approvals"] == []

    # The policy: in the hive's config, the engine's start and the runner's own event.
    hive = store.get_hive(hive_id)
    assert hive.config["approvals"] == hive.config["auto_approval"] == POLICY
    [engine] = [e for e in events if e.kind == "engine_started"]
    assert engine.data["mode"] == "company"
    assert engine.data["approvals"] == POLICY
    assert entry["detail"]["auto_approval"] == POLICY


def test_a_company_with_its_own_org_whose_root_escalates_is_settled_by_the_policy(
        data_dir: Path, tmp_path: Path) -> None:
    """A user's workload with its org chart and script: the root escalates the objective, the
    strategy approval is decided by the recorded policy (no person, no hang), the run fails."""
    folder = tmp_path / "escalating"
    folder.mkdir()
    (folder / "workload.yaml").write_text(
        "name: escalating\nobjective: Rewrite the billing system\nverify: test -f billing.py\n"
        "tasks:\n  - {id: billing, title: Write billing.py, skills: [python]}\n"
        "agents:\n  - {name: boss, role: ceo}\n"
        "  - {name: dev, skills: [python], reports_to: boss}\n")
    (folder / "gateway.yaml").write_text(
        "rules:\n  - match: {system: '^You are boss,', last_user: '^Ticket: Rewrite the "
        "billing', tool: plan}\n    reply:\n      tool_calls: [{name: plan, arguments: "
        "{action: escalate, reason: 'needs a budget the board has not given'}}]\n")
    code = run(["compare", str(folder / "workload.yaml"), "--modes", "company", "--seeds", "1",
                "--approvals", "reject", "--scripted", "--json"])
    assert code == 0, "the run finished (it failed its objective)"
    _, report = latest_report(data_dir)
    [entry] = report["runs"]
    assert entry["status"] == "ok"
    assert entry["metrics"]["success"] is False
    assert [o["name"] for o in entry["detail"]["org"]] == ["boss", "dev"]
    [approval] = entry["detail"]["company"]["approvals"]
    assert approval["kind"] == "strategy"
    assert approval["status"] == "rejected"
    assert approval["decided_by"].startswith("auto-policy")
    store = open_store(f"sqlite:///{data_dir / 'ruflo.db'}")
    try:
        hive = store.get_hive(entry["hive_id"])
        assert hive.status is HiveStatus.FAILED
        [stored] = store.list_approvals(hive_id=hive.id)
        assert (stored.id, stored.decided_by) == (approval["id"], approval["decided_by"])
        assert [t.state for t in store.list_tasks(hive.id)] == [TaskState.CANCELLED]
        planning = store.spend(hive_id=hive.id, kind=CostKind.COORDINATION)
        assert planning.calls == 1
        assert entry["metrics"]["coordination_tokens"] == planning.tokens > 0
        assert entry["metrics"]["work_tokens"] == 0
    finally:
        store.close()


def test_what_cannot_run_live_is_reported_unavailable_and_the_rest_runs(data_dir: Path) -> None:
    code = run(["compare", "bug", "wide", "--modes", "solo,company", "--seeds", "1",
                "--scripted", "--json"])
    assert code == 0
    _, report = latest_report(data_dir)
    status = {(r["workload"], r["mode"]): r for r in report["runs"]}
    for mode in ("solo", "company"):
        assert status[("bug", mode)]["status"] == "ok"
        assert status[("bug", mode)]["metrics"]["success"] is True
        wide = status[("wide", mode)]
        assert wide["status"] == "unavailable: shapes are simulated only (use --simulate)"
        assert wide["metrics"] is None
        assert wide["hive_id"] is None
    assert {u["mode"] for u in report["unavailable"]} == {"solo", "company"}


def test_an_unknown_approval_policy_is_refused_before_anything_runs(data_dir: Path) -> None:
    with pytest.raises(PolicyError, match="--approvals must be one of reject, approve, ask"):
        check(Plan(workloads=tuple(resolve(["bug"])), modes=(Mode.COMPANY,), seeds=(0,),
                   approvals="yes"))
    assert run(["compare", "bug", "--modes", "company", "--approvals", "yes", "--scripted"]) == 2
    assert not (data_dir / "reports").exists()


def test_killing_agents_mid_run_is_measured_and_the_work_recovered(data_dir: Path) -> None:
    code = run(["compare", "ticket", "--modes", "swarm", "--seeds", "1", "--agents", "4",
                "--kill-fraction", "0.5", "--scripted", "--json"])
    assert code == 0
    _, report = latest_report(data_dir)
    killed = next(r for r in report["runs"] if r["variant"] == "killed")
    store = open_store(f"sqlite:///{data_dir / 'ruflo.db'}")
    try:
        events = store.events(killed["hive_id"])
    finally:
        store.close()
    kills = [e for e in events if e.kind == "compare_agent_killed"]
    m = killed["metrics"]
    assert m["killed_agents"] == len(kills) == 2
    assert m["orphaned_tasks"] == 1
    expired = [e for e in events if e.kind == "lease_expired"]
    assert [e.agent_id for e in expired] == [kills[0].agent_id]
    assert m["recovered_tasks"] == 1
    assert m["success"] is True
    assert m["released_claims"] >= 1
    assert report["kill_effects"][0]["success_drop"] == 0


def test_a_comparison_without_a_sandbox_is_refused_before_anything_runs(
        data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "no-bwrap"))
    assert run(["compare", "bug", "--modes", "solo", "--seeds", "1", "--scripted"]) == 2
    err = capsys.readouterr().err
    assert "commands are refused: bubblewrap (bwrap) is not installed" in err
    assert "RUFLO_SANDBOX=off" in err
    assert not (data_dir / "reports").exists()
