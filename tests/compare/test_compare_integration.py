"""`ruflo compare` under git isolation: the built-in `registry` workload (three tasks that edit the
same lines) live on the ScriptedGateway over real HTTP, real git and the real store (SQLite and
Postgres). Every
merge after the first conflicts; the report's integration figures are checked against the hive's
own events and ledger, and the final tree holds every task's entry. `integration_figures` is
also checked on hand-made events."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ruflo.cli import run
from ruflo.compare.metrics import integration_figures
from ruflo.event_kinds import EventKind
from ruflo.model import CostKind, Event, HiveStatus, LedgerEntry
from ruflo.store import open_store
from ruflo.workload import load_workload

WORKLOADS = Path(__file__).parents[2] / "src/ruflo/compare/workloads"
ENTRIES = {"text": ".txt", "csv": ".csv", "json": ".json", "yaml": ".yaml"}


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("OPENAI_BASE_URL", "LITELLM_BASE_URL", "OPENAI_API_KEY", "DATABASE_URL",
                "RUFLO_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("RUFLO_DATA_DIR", str(tmp_path / "data"))
    # Each edit's answer takes a second (so the agents overlap): a lease well above it, so a
    # late renewal on a busy machine cannot hand a claim to another agent mid-attempt.
    monkeypatch.setenv("RUFLO_LEASE_SECONDS", "10")
    return tmp_path / "data"


def git(folder: str | Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.mark.slow
def test_parallel_edits_of_the_same_lines_conflict_and_are_integrated_in_both_modes(
        data_dir: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if store_url.startswith("postgresql"):
        monkeypatch.setenv("DATABASE_URL", store_url)
    else:
        assert store_url == f"sqlite:///{data_dir / 'ruflo.db'}"
    code = run(["compare", "registry", "--modes", "swarm,company", "--seeds", "1",
                "--agents", "3", "--scripted", "--json"])
    assert code == 0
    [folder] = sorted((data_dir / "reports").iterdir())
    report = json.loads((folder / "report.json").read_text())
    runs = {r["mode"]: r for r in report["runs"]}
    assert set(runs) == {"swarm", "company"}
    workload = load_workload(WORKLOADS / "registry/workload.yaml")
    assert workload.files == {"csv": ("formats.py",), "json": ("formats.py",),
                              "yaml": ("formats.py",)}

    store = open_store(store_url)
    try:
        integrators = {}
        for mode, entry in runs.items():
            assert entry["status"] == "ok"
            m = entry["metrics"]
            assert m["merge_conflicts"] > 0, mode
            assert m["integration_tasks"] > 0, mode
            assert m["success"] is True, mode
            hive = store.get_hive(entry["hive_id"])
            assert hive.status is HiveStatus.DONE, (mode, hive.pause_reason)
            events = store.events(hive.id)
            ledger = store.ledger(hive_id=hive.id)

            # Isolation: the run's folder is a repository from the fixture, the start recorded.
            assert hive.config["isolation"] == "git"
            start = hive.config["start_commit"]
            workspace = Path(entry["workspace"])
            assert git(workspace, "rev-list", "--max-parents=0", "HEAD") == start
            assert git(workspace, "show", f"{start}:formats.py") == \
                (WORKLOADS / "registry/repo/formats.py").read_text().strip()
            [ready] = [e for e in events if e.kind == EventKind.ISOLATION_READY]
            assert ready.data["start_commit"] == start
            assert entry["detail"]["isolation"]["start_commit"] == start

            # The figures, recomputed from the hive's own events and ledger.
            posted = [e for e in events if e.kind == EventKind.INTEGRATION_POSTED]
            integration_ids = {e.data["integration_task"] for e in posted}
            assert m["integration_tasks"] == len(integration_ids) == len(posted)
            assert m["merge_conflicts"] == sum(1 for e in posted if e.data["files"])
            assert all(e.data["files"] == ["formats.py"] for e in posted)
            assert m["merges"] == sum(1 for e in events if e.kind == EventKind.TASK_MERGED)
            assert m["undone_merges"] == 0
            spent = [e for e in ledger if e.task_id in integration_ids]
            assert m["integration_tokens"] == sum(e.prompt_tokens + e.completion_tokens
                                                  for e in spent) > 0
            assert m["integration_cost"] == pytest.approx(sum(e.cost or 0 for e in spent))
            tasks = {t.id: t for t in store.list_tasks(hive.id)}
            assert all(tasks[i].title.startswith("Integrate: ") for i in integration_ids)
            done_by = {e.task_id: e.agent_id for e in events if e.kind == EventKind.TASK_DONE}
            names = {a.id: a.name for a in store.list_agents(hive.id)}
            integrators[mode] = {names[done_by[i]] for i in integration_ids}

            # The final tree holds every task's intent: in the integration branch, in the run's
            # folder (brought up to it) and by the workload's own verify run again there.
            branch = entry["detail"]["isolation"]["branch"]
            assert branch == f"ruflo/{hive.id}"
            for tree in (git(workspace, "show", f"{branch}:formats.py"),
                         (workspace / "formats.py").read_text()):
                for name, suffix in ENTRIES.items():
                    assert f'"{name}": "{suffix}",' in tree, (mode, tree)
                assert "<<<<<<<" not in tree
                assert ">>>>>>>" not in tree
            again = subprocess.run(workload.verify or "false", shell=True, cwd=workspace,
                                   capture_output=True, text=True,
                                   env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"})
            assert again.returncode == 0, again.stdout + again.stderr
            [verdict] = [e for e in events if e.kind == EventKind.COMPARE_VERIFIED]
            assert verdict.data["passed"] is True
            assert verdict.data["folder"] == entry["detail"]["isolation"]["verified_in"]
        # Who integrates: the board's engineers in a swarm, the owner's manager in a company.
        assert integrators["company"] == {"lead"}
        assert integrators["swarm"] <= {"python-1", "python-2", "python-3"}
    finally:
        store.close()
    assert "FORMATS" in (WORKLOADS / "registry/repo/formats.py").read_text()
    assert '"csv"' not in (WORKLOADS / "registry/repo/formats.py").read_text(), \
        "the fixture itself is never touched"

    html = (folder / "report.html").read_text()
    assert "<h2>Integration</h2>" in html
    assert 'id="metric-merge_conflicts"' in html
    rows = {(r["mode"], r["metric"]): r for r in report["aggregates"]}
    for mode in ("swarm", "company"):
        assert rows[(mode, "merge_conflicts")]["mean"] == runs[mode]["metrics"]["merge_conflicts"]
        assert rows[(mode, "integration_tokens")]["mean"] == \
            runs[mode]["metrics"]["integration_tokens"]


T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _event(seq: int, kind: str, task: str | None = None, agent: str | None = None,
           **data: Any) -> Event:
    return Event(seq=seq, hive_id="h", kind=kind, ts=T0 + timedelta(seconds=seq),
                 agent_id=agent, task_id=task, data=data)


def _spend(n: int, task: str | None, tokens: int, cost: float | None,
           kind: CostKind = CostKind.WORK) -> LedgerEntry:
    return LedgerEntry(id=n, ts=T0, model="m", prompt_tokens=tokens, completion_tokens=0,
                       cost=cost, cost_source="test", kind=kind, hive_id="h", agent_id="a",
                       task_id=task)


def test_integration_figures_count_conflicts_undone_merges_integration_spend_and_rework() -> None:
    events = [
        _event(1, EventKind.ENGINE_STARTED),
        _event(2, EventKind.TASK_CLAIMED, "a", "x"), _event(3, EventKind.TASK_DONE, "a", "x"),
        _event(4, EventKind.TASK_MERGED, "a", "x"),
        # b: its merge conflicts; an integration task i1 carries it.
        _event(5, EventKind.TASK_CLAIMED, "b", "y"),
        _event(6, EventKind.INTEGRATION_POSTED, "b", "y", integration_task="i1",
               files=["f.py"], reason="merging it conflicts in f.py"),
        _event(7, EventKind.TASK_DONE, "b", "y"),
        # c: failed once (rework), then merged, but a check failed on the result: undone.
        _event(8, EventKind.TASK_CLAIMED, "c", "z"),
        _event(9, EventKind.TASK_RELEASED, "c", "z", reason="attempt failed: x"),
        _event(10, EventKind.TASK_CLAIMED, "c", "z"),
        _event(11, EventKind.MERGE_CHECK_FAILED, "c", command="pytest"),
        _event(12, EventKind.INTEGRATION_POSTED, "c", "z", integration_task="i2", files=[],
               reason="after merging it a merged task's verify command fails"),
        _event(13, EventKind.TASK_DONE, "c", "z"),
        _event(14, EventKind.TASK_CLAIMED, "i1", "x"), _event(15, EventKind.TASK_DONE, "i1", "x"),
        _event(16, EventKind.TASK_MERGED, "i1", "x"),
        # A claim that delegates is coordination, not rework.
        _event(17, EventKind.TASK_CLAIMED, "i2", "boss"),
        _event(18, EventKind.TASK_RELEASED, "i2", "boss", reason="delegated"),
        _event(19, EventKind.TASK_CLAIMED, "i2", "y"), _event(20, EventKind.TASK_DONE, "i2", "y"),
        _event(21, EventKind.TASK_MERGED, "i2", "y"),
    ]
    ledger = [_spend(1, "a", 100, 0.01), _spend(2, "i1", 40, 0.002),
              _spend(3, "i2", 60, None), _spend(4, "i2", 7, 0.001, CostKind.COORDINATION),
              _spend(5, None, 500, 0.05, CostKind.COORDINATION)]
    figures = integration_figures(events, ledger)
    assert figures == {"merges": 3, "merge_conflicts": 1, "undone_merges": 1,
                       "integration_tasks": 2, "integration_tokens": 107,
                       "integration_cost": pytest.approx(0.003), "rework": 2}


def test_a_run_without_integration_reports_zeros() -> None:
    events = [_event(1, EventKind.ENGINE_STARTED), _event(2, EventKind.TASK_CLAIMED, "a", "x"),
              _event(3, EventKind.TASK_DONE, "a", "x")]
    assert integration_figures(events, [_spend(1, "a", 10, 0.1)]) == {
        "merges": 0, "merge_conflicts": 0, "undone_merges": 0, "integration_tasks": 0,
        "integration_tokens": 0, "integration_cost": None, "rework": 0}
