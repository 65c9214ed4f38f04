"""Who did what in a run: the per-agent figures on a hand-made run; the --agents FILE line-up
parsed, refused when bad (nothing run, nothing written), and used by simulated runs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ruflo.cli import run
from ruflo.compare.by_agent import agent_figures, kinds_text, task_kind, thresholds_text
from ruflo.compare.report import render_html
from ruflo.model import AdapterKind, Agent, CostKind, Event, LedgerEntry, Task, TaskState
from ruflo.server.reports import compare_view
from ruflo.workload import parse_lineup

T0 = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RUFLO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("RUFLO_CONFIG", raising=False)
    return tmp_path / "data"


def _event(seq: int, at: float, kind: str, task: str | None = None, agent: str | None = None,
           **data: object) -> Event:
    return Event(seq=seq, hive_id="h", kind=kind, ts=T0 + timedelta(seconds=at),
                 agent_id=agent, task_id=task, data=dict(data))


def _spend(n: int, at: float, agent: str | None, task: str | None, tokens: int,
           cost: float | None, kind: CostKind = CostKind.WORK) -> LedgerEntry:
    return LedgerEntry(n, T0 + timedelta(seconds=at), "m", tokens - 10, 10, cost, "gateway",
                       kind=kind, agent_id=agent, task_id=task)


def test_per_agent_figures_of_a_hand_made_run() -> None:
    agents = [
        Agent(id="h.py", hive_id="h", name="py", skills=("python",),
              thresholds={"python": 0.4, "docs": 9.5}),
        Agent(id="h.cli", hive_id="h", name="cli", skills=("docs",), adapter=AdapterKind.PROCESS,
              thresholds={"docs": 0.8}),
        Agent(id="h.idle", hive_id="h", name="idle", adapter=AdapterKind.CLAUDE_CODE),
    ]
    tasks = [Task(id="a", hive_id="h", title="a", skills=("python",), state=TaskState.DONE),
             Task(id="b", hive_id="h", title="b", skills=("docs",), state=TaskState.DONE),
             Task(id="c", hive_id="h", title="c", state=TaskState.FAILED),
             Task(id="d", hive_id="h", title="d", skills=("python", "docs"),
                  state=TaskState.BLOCKED)]
    events = [
        _event(1, 0, "engine_started"),
        _event(2, 1, "task_claimed", "a", "h.py"),
        _event(3, 3, "task_released", "a", "h.py", reason="attempt failed: verify"),
        _event(4, 4, "task_claimed", "a", "h.py"),
        _event(5, 8, "task_done", "a", "h.py"),
        _event(6, 2, "task_claimed", "b", "h.cli"),
        _event(7, 7, "task_done", "b", "h.cli"),
        _event(8, 9, "task_claimed", "c", "h.cli"),
        _event(9, 10, "task_released", "c", "h.cli", reason="abstained: not mine"),
        _event(10, 11, "task_claimed", "c", "h.cli"),
        _event(11, 12, "task_failed", "c", "h.cli"),
        _event(12, 13, "task_claimed", "d", "h.py"),
        _event(13, 14, "task_updated", "d", None, fields={"state": "blocked"}),
        _event(14, 15, "task_claimed", "c", "h.ghost"),  # an agent not in the list
    ]
    ledger = [_spend(1, 2, "h.py", "a", 100, 0.01), _spend(2, 5, "h.py", "a", 60, None),
              _spend(3, 3, "h.cli", "b", 40, 0.002),
              _spend(4, 13.5, "h.py", "d", 30, 0.003, CostKind.COORDINATION)]

    rows = {r["name"]: r for r in agent_figures(events, ledger, tasks, agents, thresholds=True)}
    assert list(rows) == ["py", "cli", "idle", "h.ghost"]
    py, cli, idle, ghost = rows["py"], rows["cli"], rows["idle"], rows["h.ghost"]
    assert (py["adapter"], cli["adapter"], idle["adapter"]) == ("llm", "process", "claude-code")
    assert py["taken"] == {"python": 1}  # a, twice; d was split (coordination), not work
    assert py["done_by_kind"] == {"python": 1}
    assert (py["attempts"], py["done"], py["failed"], py["released"], py["open"]) == \
        (2, 1, 1, 0, 0)
    assert py["coordination"] == 1
    assert (py["calls"], py["tokens"]) == (3, 190)
    assert py["cost"] == pytest.approx(0.013)
    assert py["mean_time"] == pytest.approx((2 + 4) / 2)
    assert py["thresholds"] == {"python": 0.4, "docs": 9.5}

    assert cli["taken"] == {"docs": 1, "any": 1}
    assert cli["done_by_kind"] == {"docs": 1}
    assert (cli["attempts"], cli["done"], cli["failed"], cli["released"]) == (3, 1, 1, 1)
    assert (cli["calls"], cli["tokens"], cli["cost"]) == (1, 40, 0.002)
    assert cli["mean_time"] == pytest.approx((5 + 1 + 1) / 3)

    assert (idle["attempts"], idle["calls"], idle["tokens"], idle["cost"], idle["mean_time"]) \
        == (0, 0, 0, None, None)
    assert idle["taken"] == {}
    assert idle["thresholds"] == {}
    assert (ghost["adapter"], ghost["open"], ghost["mean_time"]) == (None, 1, None)

    # Not a swarm: no thresholds reported.
    assert all(r["thresholds"] is None for r in agent_figures(events, ledger, tasks, agents))
    assert task_kind(("python", "docs")) == "python+docs"
    assert kinds_text(cli["taken"]) == "docs 1, any 1"
    assert kinds_text({}) == "–"
    assert thresholds_text(py["thresholds"]) == "docs 9.5, python 0.4"


def test_a_line_up_file_is_read_as_workload_agents() -> None:
    lineup = parse_lineup(
        "name: mine\nagents:\n"
        "  - {name: builtin, skills: python, model: m1}\n"
        "  - {name: cli, skills: [docs], adapter: process, config: {command: [x, '{prompt}']}}\n")
    assert lineup.name == "mine"
    assert not lineup.has_org
    builtin, cli = lineup.agents
    assert (builtin.id, builtin.skills, builtin.model, builtin.adapter) == \
        ("builtin", ("python",), "m1", AdapterKind.LLM)
    assert (cli.adapter, cli.adapter_config) == (AdapterKind.PROCESS,
                                                 {"command": ["x", "{prompt}"]})
    org = parse_lineup("agents:\n  - {name: boss, role: ceo}\n  - {name: dev, reports_to: boss}\n")
    assert org.has_org


LINEUP_PROBLEMS = [
    ("- {name: a}\n", "expected a mapping with agents"),
    ("agents: []\n", "at least 1 item"),
    ("agents:\n  - {name: a, skils: x}\n", "did you mean 'skills'"),
    ("agents:\n  - {name: a}\n  - {name: a}\n", "duplicate name 'a'"),
    ("agents:\n  - {name: a, reports_to: nobody}\n", "reports to 'nobody'"),
    ("agents:\n  - {name: a, adapter: telepathy}\n", "adapter"),
    ("agents:\n  - {name: a, config: {max_tokens: -3}}\n", "max_tokens"),
    ("agents:\n  - {name: a, adapter: process}\n", "has no command"),
    ("agents:\n  - {name: a, adapter: claude-code, config: {program: /no/such/claude}}\n",
     "'/no/such/claude' is not installed"),
    ("agents: [\n", "not valid YAML"),
]


@pytest.mark.parametrize(("text", "message"), LINEUP_PROBLEMS)
def test_a_bad_line_up_file_is_refused_and_nothing_runs(
        text: str, message: str, tmp_path: Path, data_dir: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    lineup = tmp_path / "crew.yaml"
    lineup.write_text(text)
    # Live (no --simulate): the adapters are checked too, before the sandbox or the gateway.
    assert run(["compare", "ticket", "--modes", "swarm", "--seeds", "1",
                "--agents", str(lineup)]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert str(lineup) in err
    assert "nothing was run" in err or "nothing was stored" in err
    assert not (data_dir / "reports").exists()
    assert not (data_dir / "ruflo.db").exists()


@pytest.mark.parametrize(("value", "message"), [
    ("0", "--agents must be at least 1"),
    ("no-such-file.yaml", "neither a number of agents nor an agents file"),
])
def test_agents_must_be_a_count_or_a_file(value: str, message: str, data_dir: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["compare", "ticket", "--simulate", "--agents", value]) == 2
    assert message in capsys.readouterr().err
    assert not (data_dir / "reports").exists()


def test_simulated_runs_use_the_line_up_names_and_skills(tmp_path: Path, data_dir: Path,
                                                         capsys: pytest.CaptureFixture[str]) \
        -> None:
    lineup = tmp_path / "crew.yaml"
    # The process agent's command is never run in the simulator: adapters are not checked.
    lineup.write_text("agents:\n  - {name: coder, skills: [python]}\n"
                      "  - {name: writer, skills: [docs], adapter: process}\n")
    assert run(["compare", "ticket", "--simulate", "--modes", "swarm,solo", "--seeds", "1",
                "--agents", str(lineup), "--json"]) == 0
    said = json.loads(capsys.readouterr().out)
    report = json.loads(Path(said["report"]).read_text())
    assert report["settings"]["lineup"]["agents"][1] == {
        "name": "writer", "adapter": "process", "model": None, "skills": ["docs"],
        "reports_to": None}
    for entry in report["runs"]:
        rows = {r["name"]: r for r in entry["agents"]}
        assert set(rows) == {"coder", "writer"}
        bars = entry["timeline"]
        for name, row in rows.items():
            assert row["attempts"] == sum(1 for b in bars if b["agent"] == name)
            assert row["done"] == sum(1 for b in bars if b["agent"] == name
                                      and b["outcome"] == "done")
        assert sum(r["done"] for r in rows.values()) == 2
        assert sum(r["tokens"] for r in rows.values()) == entry["metrics"]["work_tokens"]
    swarm = next(r for r in report["runs"] if r["mode"] == "swarm")
    by_name = {r["name"]: r for r in swarm["agents"]}
    assert by_name["coder"]["taken"] == {"python": 1}
    assert by_name["writer"]["taken"] == {"docs": 1}
    # The simulator's swarm learned thresholds too: each agent is eager for its own skill.
    coder, writer = by_name["coder"]["thresholds"], by_name["writer"]["thresholds"]
    assert coder["python"] < coder["docs"]
    assert writer["docs"] < writer["python"]
    solo = next(r for r in report["runs"] if r["mode"] == "solo")
    assert all(r["thresholds"] is None for r in solo["agents"])
    html = Path(said["html"]).read_text()
    assert "Who did what" in html
    assert html == render_html(report)
    # The reports page names the line-up as the run's agents.
    facts = dict(compare_view(report).settings)
    assert facts["Agents per run"] == f"the line-up {lineup}: coder (llm), writer (process)"


def test_the_text_summary_shows_who_did_what_per_run(tmp_path: Path, data_dir: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    lineup = tmp_path / "crew.yaml"
    lineup.write_text("agents:\n  - {name: coder, skills: [python]}\n"
                      "  - {name: writer, skills: [docs]}\n")
    assert run(["compare", "ticket", "--simulate", "--modes", "swarm", "--seeds", "1",
                "--agents", str(lineup)]) == 0
    out = capsys.readouterr().out
    assert "who did what: ticket/swarm/0/baseline" in out
    assert "coder" in out
    assert "writer" in out
    # Runs of many agents leave their table to the report files.
    assert run(["compare", "wide", "--simulate", "--modes", "swarm", "--seeds", "1",
                "--agents", "20", "--tasks", "40"]) == 0
    out = capsys.readouterr().out
    assert "who did what:" not in out
    assert "runs of more than 12 agents: who did what is in report.json" in out


def test_hostile_agent_names_stay_text(tmp_path: Path, data_dir: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    lineup = tmp_path / "crew.yaml"
    lineup.write_text("agents:\n  - {name: '<img src=x onerror=alert(1)>', skills: [python]}\n"
                      "  - {name: '[red]boom[/red]', skills: ['<b>docs</b>']}\n")
    assert run(["compare", "ticket", "--simulate", "--modes", "swarm", "--seeds", "1",
                "--agents", str(lineup), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "[red]boom[/red]" in out, "rich markup in a name is shown, not applied"
    html = (tmp_path / "out" / "report.html").read_text()
    assert "<img src=x" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<b>docs</b>" not in html
