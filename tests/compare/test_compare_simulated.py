"""Simulated comparisons: the metrics computed from a simulation mapped to events and ledger agree
with what the simulator measured itself; 100 agents on the three shapes complete and render; the
metrics functions on hand-made event logs; bad command lines are refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ruflo.cli import run
from ruflo.compare.metrics import run_metrics, simulated_record
from ruflo.compare.runs import KILLED_VARIANT, Plan, WorkloadRef, run_simulated
from ruflo.engine.shapes import shape_agents, shape_tasks
from ruflo.engine.simulate import KillPlan, simulate
from ruflo.model import CostKind, Event, LedgerEntry, Mode, Task, TaskState


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RUFLO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("RUFLO_CONFIG", raising=False)
    return tmp_path / "data"


@pytest.mark.parametrize("mode", [Mode.SWARM, Mode.SOLO, Mode.ROUND_ROBIN, Mode.COMPANY])
@pytest.mark.parametrize("shape", ["wide", "deep", "mixed"])
def test_metrics_from_the_mapped_simulation_match_the_simulator(shape: str, mode: Mode) -> None:
    tasks = shape_tasks(shape, 300, 1)
    agents = shape_agents(shape, 20)
    victims = tuple(a.id for a in agents[3:8])
    result = simulate(tasks, agents, mode, seed=1, record=True,
                      kill=KillPlan(0.25, 10.0, agents=victims))
    events, ledger, board = simulated_record(result, tasks, killed=victims, kill_at=10.0)
    m = run_metrics(events, ledger, board)

    assert m.done == result.done
    assert m.success is result.all_done
    assert m.makespan == pytest.approx(result.makespan, abs=1e-6)
    assert m.task_switches == result.task_switches
    assert m.released_claims == result.released_claims
    assert m.failed_attempts == result.failed_attempts
    assert m.coordination_tokens == result.coordination_tokens
    assert abs(m.work_tokens - result.work_tokens) <= len(result.timeline or [])
    assert m.unclaimed_age_mean == pytest.approx(result.unclaimed_age_mean, abs=1e-6)
    assert m.unclaimed_age_max == pytest.approx(result.unclaimed_age_max, abs=1e-6)
    assert m.killed_agents == len(victims)
    assert m.orphaned_tasks == result.orphaned
    assert m.recovered_tasks == result.recovered
    assert m.done_twice == 0


def test_a_killed_variant_is_run_and_measured() -> None:
    plan = Plan(workloads=(WorkloadRef("mixed", None, shape="mixed"),), modes=(Mode.SWARM,),
                seeds=(0,), agents=30, simulate=True, kill_fraction=0.3, tasks=200)
    record = run_simulated(plan, plan.workloads[0], Mode.SWARM, 0, KILLED_VARIANT)
    assert record.metrics is not None
    assert record.metrics.killed_agents == 9 == len(record.detail["killed"])
    assert record.metrics.success, "every task completes after the kill"


def test_a_hundred_agents_on_the_three_shapes_compare_and_render(data_dir: Path) -> None:
    out = data_dir / "reports" / "sim"
    code = run(["compare", "wide", "deep", "mixed", "--simulate", "--modes",
                "swarm,company,solo", "--seeds", "2", "--agents", "100", "--tasks", "400",
                "--kill-fraction", "0.3", "--out", str(out), "--json"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["agents"] == 100
    assert report["settings"]["kill_fraction"] == 0.3
    assert len(report["runs"]) == 3 * 3 * 2 * 2
    assert {r["status"] for r in report["runs"]} == {"ok"}
    assert all(r["detail"]["agents"] == 100 for r in report["runs"])
    solo = [r for r in report["runs"] if r["mode"] == "solo" and r["variant"] == "baseline"]
    assert all(len({b["agent"] for b in r["timeline"]}) == 1 for r in solo)
    winners = {(s["workload"], s["metric"]): s for s in report["summary"]}
    # 100 agents against one: solo can't win makespan on the parallel shape.
    assert winners[("wide", "makespan")]["winner"] != "solo"
    assert winners[("wide", "makespan")]["seeds"] == 2
    assert {(e["workload"], e["mode"]) for e in report["kill_effects"]} == {
        (w, m) for w in ("wide", "deep", "mixed") for m in ("swarm", "company", "solo")}
    html = (out / "report.html").read_text()
    assert html.count("<script") >= 1
    assert "plotly" in html.lower()
    for div in ("metric-makespan", "metric-success", "cost-split", "kill-effect",
                "timeline-0", "timeline-2"):
        assert f'id="{div}"' in html


def test_built_in_workloads_simulate_too(data_dir: Path) -> None:
    out = data_dir / "r"
    assert run(["compare", "ticket", "bug", "feature", "--simulate", "--modes", "swarm,solo",
                "--seeds", "1", "--agents", "4", "--out", str(out), "--json"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert [r["metrics"]["tasks"] for r in report["runs"]] == [2, 2, 2, 2, 3, 3]


def _event(seq: int, at: float, kind: str, task: str | None = None, agent: str | None = None,
           **data: object) -> Event:
    return Event(seq=seq, hive_id="h", kind=kind,
                 ts=datetime(2030, 1, 1, tzinfo=UTC) + timedelta(seconds=at),
                 agent_id=agent, task_id=task, data=dict(data))


def test_metrics_of_a_hand_made_run() -> None:
    events = [
        _event(1, 0, "task_posted", "a", depends_on=[]),
        _event(2, 0, "task_posted", "b", depends_on=["a"]),
        _event(3, 1, "engine_started"),
        _event(4, 3, "task_claimed", "a", "x"),
        _event(5, 4, "task_released", "a", "x", reason="abstained: not mine"),
        _event(6, 6, "task_claimed", "a", "y"),
        _event(7, 9, "task_done", "a", "y"),
        _event(8, 10, "task_claimed", "b", "x"),
        _event(9, 11, "compare_agent_killed", None, "x"),
        _event(10, 13, "lease_expired", "b", "x"),
        _event(11, 14, "task_claimed", "b", "y"),
        _event(12, 21, "task_done", "b", "y"),
        _event(13, 22, "compare_verified", passed=True),
    ]
    ts = datetime(2030, 1, 1, tzinfo=UTC)
    ledger = [
        LedgerEntry(1, ts + timedelta(seconds=3.5), "m", 100, 20, 0.01, "gateway",
                    agent_id="x", task_id="a"),
        LedgerEntry(2, ts + timedelta(seconds=7), "m", 200, 30, 0.02, "gateway",
                    agent_id="y", task_id="a"),
        LedgerEntry(3, ts + timedelta(seconds=10.5), "m", 50, 5, None, "unknown",
                    agent_id="x", task_id="b"),
        LedgerEntry(4, ts + timedelta(seconds=2), "m", 40, 10, 0.005, "gateway",
                    kind=CostKind.COORDINATION),
    ]
    tasks = [Task(id="a", hive_id="h", title="a", state=TaskState.DONE),
             Task(id="b", hive_id="h", title="b", depends_on=("a",), state=TaskState.DONE)]
    m = run_metrics(events, ledger, tasks)
    assert m.success
    assert m.success_basis == "verify command"
    assert m.makespan == 20  # from engine_started at 1 to the last done at 21
    assert (m.tokens, m.work_tokens, m.coordination_tokens) == (455, 405, 50)
    assert m.cost == pytest.approx(0.035)
    assert m.unknown_cost_calls == 1
    assert m.coordination_cost == pytest.approx(0.005)
    assert (m.attempts, m.duplicate_attempts) == (4, 2)
    assert m.duplicate_tokens == 120 + 55  # x's abstained try on a, x's dead try on b
    assert m.released_claims == 2
    assert m.failed_attempts == 0
    assert m.task_switches == 1  # x left a unfinished, then claimed b
    # a: ready at 0, claimed at 3; again ready at 4, claimed at 6; b: ready at 9 → 10,
    # again at 13 → 14.
    assert m.unclaimed_age_mean == pytest.approx((3 + 2 + 1 + 1) / 4)
    assert m.unclaimed_age_max == 3
    assert (m.killed_agents, m.orphaned_tasks, m.recovered_tasks) == (1, 1, 1)


def test_an_empty_run_measures_nothing_and_does_not_succeed() -> None:
    m = run_metrics([], [], [])
    assert not m.success
    assert m.makespan is None
    assert m.tokens == 0
    assert m.unclaimed_age_mean is None
    assert m.cost is None


@pytest.mark.parametrize(("args", "message"), [
    (["nosuch"], "no workload 'nosuch'"),
    (["wide", "--simulate", "--modes", "swarm,chaos"], "chaos"),
    (["wide", "--simulate", "--kill-fraction", "1.5"], "--kill-fraction must be between"),
])
def test_bad_command_lines_are_refused_and_nothing_is_written(
        args: list[str], message: str, data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["compare", *args]) == 2
    assert message in capsys.readouterr().err
    assert not (data_dir / "reports").exists()


def test_a_broken_workload_file_is_refused(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntasks:\n  - id: a\n    depends_on: [zz]\n")
    assert run(["compare", str(bad), "--simulate"]) == 2
    assert "unknown task 'zz'" in capsys.readouterr().err
