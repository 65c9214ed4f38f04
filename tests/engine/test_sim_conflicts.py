"""The simulator's merge-conflict rule (engine/conflicts.py): a task conflicts, with probability
p each, with every task sharing a file that merged while its attempt ran; each conflict costs an
integration task (swarm: on the board; company: the owner's manager decides it)."""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

import pytest

from ruflo.cli import run
from ruflo.compare.metrics import run_metrics, simulated_record
from ruflo.engine.conflicts import INTEGRATE, ConflictRule, draw_files
from ruflo.engine.shapes import shape_agents, shape_tasks
from ruflo.engine.simulate import SimParams, SimResult, simulate
from ruflo.errors import PolicyError
from ruflo.model import Agent
from ruflo.policies import TaskSpec

EXACT = SimParams(noise=0.0, failure_rate=0.0)
"""Durations equal to effort, no failures: who runs with whom is known in advance."""


def crew(n: int) -> list[Agent]:
    return [Agent(id=f"a{i}", hive_id="sim", name=f"a{i}", skills=("code",)) for i in range(n)]


def four_tasks() -> list[TaskSpec]:
    return [TaskSpec(name, ("code",), 1, 1.0) for name in ("a", "b", "c", "d")]


def concurrent_sharing_pairs(result: SimResult, files: dict[str, tuple[str, ...]]) -> int:
    """The rule with p = 1, counted from the timeline: pairs of tasks that share a file and
    whose successful attempts overlapped in time."""
    assert result.timeline is not None
    done = {e.task: e for e in result.timeline
            if e.outcome == "done" and INTEGRATE not in e.task}
    return sum(1 for x, y in combinations(sorted(done), 2)
               if set(files.get(x, ())) & set(files.get(y, ()))
               and max(done[x].start, done[y].start) < min(done[x].end, done[y].end))


def test_with_certainty_every_concurrent_pair_that_shares_a_file_conflicts() -> None:
    files = {"a": ("f.py",), "b": ("f.py",), "c": ("f.py", "g.py"), "d": ("h.py",)}
    result = simulate(four_tasks(), crew(4), "swarm", params=EXACT, record=True,
                      conflicts=ConflictRule(files, probability=1.0))
    # All four run from 0 to 1: a, b and c share f.py (three pairs); d shares nothing.
    assert result.merge_conflicts == 3 == concurrent_sharing_pairs(result, files)
    assert result.integrations is not None
    assert {frozenset((c.task, c.partner)) for c in result.integrations} == \
        {frozenset(p) for p in (("a", "b"), ("a", "c"), ("b", "c"))}
    assert all(c.files == ("f.py",) for c in result.integrations)
    assert result.tasks == result.done == 4 + 3, "each conflict is one more task, done"
    assert {e.task for e in result.timeline or () if INTEGRATE in e.task} == \
        {c.integration_task for c in result.integrations}
    # Integration work is charged like any work: 0.5 effort units each.
    assert result.work_tokens == round((4 * 1.0 + 3 * 0.5) * EXACT.tokens_per_effort)


def test_tasks_that_never_overlap_or_share_nothing_do_not_conflict() -> None:
    disjoint = {"a": ("a.py",), "b": ("b.py",), "c": ("c.py",), "d": ("d.py",)}
    assert simulate(four_tasks(), crew(4), "swarm", params=EXACT,
                    conflicts=ConflictRule(disjoint, 1.0)).merge_conflicts == 0
    # One agent does them one after another: each starts after the last merged.
    shared = dict.fromkeys("abcd", ("f.py",))
    assert simulate(four_tasks(), crew(1), "swarm", params=EXACT,
                    conflicts=ConflictRule(shared, 1.0)).merge_conflicts == 0


def test_probability_zero_draws_no_conflict_and_changes_nothing_else() -> None:
    tasks = shape_tasks("mixed", 400, seed=3)
    agents = shape_agents("mixed", 20)
    files = draw_files([t.id for t in tasks], pool=10, seed=3)
    plain = simulate(tasks, agents, "swarm", seed=3, record=True)
    never = simulate(tasks, agents, "swarm", seed=3, record=True,
                     conflicts=ConflictRule(files, probability=0.0))
    assert never.merge_conflicts == 0
    assert never.integrations == []
    assert (never.makespan, never.work_tokens, never.timeline) == \
        (plain.makespan, plain.work_tokens, plain.timeline)


@pytest.mark.parametrize("mode", ["swarm", "company"])
def test_the_rule_on_a_large_board_matches_the_timeline_and_is_deterministic(mode: str) -> None:
    tasks = shape_tasks("mixed", 2000, seed=1)
    agents = shape_agents("mixed", 40)
    files = draw_files([t.id for t in tasks], pool=200, seed=1)
    result = simulate(tasks, agents, mode, seed=1, record=True,
                      conflicts=ConflictRule(files, probability=1.0))
    assert result.merge_conflicts == concurrent_sharing_pairs(result, files) > 0
    assert result.done == result.tasks == 2000 + result.merge_conflicts
    half = simulate(tasks, agents, mode, seed=1, record=True,
                    conflicts=ConflictRule(files, probability=0.5))
    again = simulate(tasks, agents, mode, seed=1, record=True,
                     conflicts=ConflictRule(files, probability=0.5))
    assert 0 < half.merge_conflicts < result.merge_conflicts
    assert half.integrations == again.integrations

    # The same figures as a live run: integration_posted events and the integration ledger.
    events, ledger, board = simulated_record(half, tasks)
    metrics = run_metrics(events, ledger, board)
    assert metrics.merge_conflicts == metrics.integration_tasks == half.merge_conflicts
    assert half.integrations is not None
    ids = {c.integration_task for c in half.integrations}
    assert metrics.integration_tokens == sum(e.total_tokens for e in ledger if e.task_id in ids)
    assert metrics.integration_tokens > 0
    assert metrics.tasks == metrics.done == half.tasks


def test_a_company_hands_integration_to_the_owners_manager() -> None:
    org = [Agent(id="boss", hive_id="sim", name="boss", role="ceo"),
           Agent(id="lead", hive_id="sim", name="lead", role="manager", reports_to="boss"),
           *(Agent(id=f"e{n}", hive_id="sim", name=f"e{n}", skills=(n,), reports_to="lead")
             for n in "abc")]
    # One engineer fits each task: they work at once, all on f.py.
    tasks = [TaskSpec(name, (name,), 1, 1.0) for name in "abc"]
    seen: list[tuple[str, object]] = []
    result = simulate(tasks, org, "company", params=EXACT, record=True,
                      conflicts=ConflictRule(dict.fromkeys("abc", ("f.py",)), 1.0),
                      on_decision=lambda agent, decision: seen.append((agent, decision)))
    assert result.merge_conflicts > 0
    assert result.integrations is not None
    ids = {c.integration_task for c in result.integrations}
    assert all(c.agent.startswith("e") for c in result.integrations)
    # The lead is the first to decide about each integration ticket.
    first: dict[str, str] = {}
    for agent, decision in seen:
        for task_id in _tickets(decision):
            first.setdefault(task_id, agent)
    assert {first[i] for i in ids} == {"lead"}
    assert result.done == result.tasks == 3 + result.merge_conflicts


def _tickets(decision: object) -> list[str]:
    task_id = getattr(decision, "task_id", None)
    if task_id is not None:
        return [task_id]
    return [t for t, _ in getattr(decision, "assignments", ())]


def test_bad_rules_are_refused() -> None:
    with pytest.raises(PolicyError, match="conflict probability must be in"):
        ConflictRule({}, probability=1.5)
    with pytest.raises(PolicyError, match="integration effort must be > 0"):
        ConflictRule({}, integration_effort=0)
    with pytest.raises(PolicyError, match="files: need a pool"):
        draw_files(["a"], pool=0)


def test_compare_simulate_reports_conflicts_for_a_shape_and_a_workload_with_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUFLO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("RUFLO_CONFIG", raising=False)
    out = tmp_path / "report"
    assert run(["compare", "mixed", "registry", "--simulate", "--modes", "swarm,company",
                "--seeds", "1", "--agents", "12", "--tasks", "300", "--files", "30",
                "--conflict-probability", "1", "--out", str(out), "--json"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["conflicts"]["probability"] == 1.0
    assert report["settings"]["conflicts"]["files"] == 30
    runs = {(r["workload"], r["mode"]): r for r in report["runs"]}
    for mode in ("swarm", "company"):
        m = runs[("mixed", mode)]["metrics"]
        assert m["merge_conflicts"] == m["integration_tasks"] > 0
        assert m["integration_tokens"] > 0
        assert m["tasks"] == 300 + m["integration_tasks"]
    # The registry's three tasks all list formats.py: run at once by the swarm, they conflict.
    assert runs[("registry", "swarm")]["metrics"]["merge_conflicts"] > 0
    assert "<h2>Integration</h2>" in (out / "report.html").read_text()

    assert run(["compare", "mixed", "--simulate", "--conflict-probability", "1.5",
                "--out", str(tmp_path / "no")]) == 2
    assert not (tmp_path / "no" / "report.json").exists()


def test_ruflo_simulate_applies_the_rule_to_a_workloads_files_and_refuses_a_bad_one(
        capsys: pytest.CaptureFixture[str]) -> None:
    registry = Path(__file__).parents[2] / "src/ruflo/compare/workloads/registry/workload.yaml"
    assert run(["simulate", str(registry), "--agents", "3", "--conflict-probability", "1",
                "--failure-rate", "0", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    # Three agents take the three tasks at once, all on formats.py: every pair conflicts.
    assert data["merge_conflicts"] == 3
    assert data["tasks"] == data["done"] == 6
    assert run(["simulate", "mixed", "--files", "5", "--conflict-probability", "-0.1"]) == 2
    assert "conflict probability must be in [0, 1] (got -0.1); nothing was run" in \
        capsys.readouterr().err
