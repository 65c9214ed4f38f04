"""`ruflo compare --agents FILE` live with the ScriptedGateway over real HTTP, the real store and
real git: a line-up mixing the built-in agent and an outside agent (a process agent: a small
script that makes a model call through the relay and edits its worktree) runs the built-in
`ticket` workload in swarm and company mode; the report's per-agent table shows both agents with
the tasks each took, matching the hive's own events and ledger. And the same with the real
Claude Code, and the real Codex, as the outside agent (slow; needs the CLIs scripts/install puts
in place)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent_clis import fix_rules, require_agent_cli
from ruflo.cli import run
from ruflo.compare.by_agent import agent_figures
from ruflo.model import Mode
from ruflo.store import open_store

pytestmark = pytest.mark.slow

WORKLOADS = Path(__file__).parents[2] / "src/ruflo/compare/workloads"
README_OLD = "- `name`: who to greet."
README_NEW = "- `--shout`: upper-case the greeting."
ONE_LINE = "- `name`: who to greet; `--shout` upper-cases the greeting."

WRITER = r'''
"""An outside agent: asks the model once (through ruflo's relay), then documents --shout."""
import json, os, sys, urllib.request
from pathlib import Path

prompt = sys.stdin.read()
task = next(line for line in prompt.splitlines() if line.startswith("Task: "))
request = urllib.request.Request(
    os.environ["OPENAI_BASE_URL"] + "/chat/completions", method="POST",
    data=json.dumps({"model": "m", "messages": [{"role": "user", "content": task}]}).encode(),
    headers={"authorization": "Bearer " + os.environ["OPENAI_API_KEY"],
             "content-type": "application/json"})
urllib.request.urlopen(request, timeout=30).read()
if task != "Task: Document the --shout flag":
    sys.exit("this agent only writes docs")
readme = Path(sys.argv[1]) / "README.md"
old = "- `name`: who to greet.\n"
readme.write_text(readme.read_text().replace(old, old + "- `--shout`: upper-case the greeting.\n"))
print("documented --shout")
'''


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("OPENAI_BASE_URL", "LITELLM_BASE_URL", "OPENAI_API_KEY", "DATABASE_URL",
                "RUFLO_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("RUFLO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("RUFLO_LEASE_SECONDS", "5")
    return tmp_path / "data"


def compare(data_dir: Path, workload: str, lineup: dict[str, Any], tmp_path: Path,
            modes: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    path = tmp_path / "crew.yaml"
    path.write_text(yaml.safe_dump(lineup))
    code = run(["compare", workload, "--modes", modes, "--seeds", "1", "--agents", str(path),
                "--scripted", "--json", "--run-timeout", "240"])
    said = json.loads(capsys.readouterr().out)
    assert code == 0, said
    report: dict[str, Any] = json.loads(Path(said["report"]).read_text())
    assert report["settings"]["lineup"]["file"] == str(path)
    assert {r["id"]: r["agents"] for r in report["runs"]} == \
        {r["id"]: r["agents"] for r in said["runs"]}, "--json carries the same table"
    html = Path(said["html"]).read_text()
    assert "Who did what" in html
    for entry in report["runs"]:
        assert entry["status"] == "ok", entry["status"]
        assert entry["metrics"]["success"] is True, entry["id"]
        assert f"<h3>{entry['id']}</h3>" in html
    return report


def check_table(data_dir: Path, entry: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The run's per-agent table is the hive's own: recomputed from the store it is the same,
    and its spend adds up to the run's ledger."""
    store = open_store(f"sqlite:///{data_dir / 'ruflo.db'}")
    try:
        hive = entry["hive_id"]
        agents = store.list_agents(hive)
        again = agent_figures(store.events(hive), store.ledger(hive_id=hive),
                              store.list_tasks(hive), agents,
                              thresholds=entry["mode"] == Mode.SWARM.value)
        assert again == entry["agents"]
        ledger = store.ledger(hive_id=hive)
        assert sum(r["tokens"] for r in again) == sum(e.total_tokens for e in ledger)
        assert sum(r["calls"] for r in again) == len(ledger)
        if entry["mode"] == Mode.SWARM.value:
            stored = {a.name: a.thresholds for a in agents}
            assert {r["name"]: r["thresholds"] for r in again} == stored
    finally:
        store.close()
    return {r["name"]: r for r in entry["agents"]}


def test_a_line_up_of_the_built_in_agent_and_a_process_agent_is_compared(
        data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    agent_dir = tmp_path / "agent"
    agent_dir.mkdir()
    (agent_dir / "writer.py").write_text(WRITER)
    monkeypatch.setenv("RUFLO_SANDBOX_READ", str(agent_dir))  # the script, inside the sandbox
    # Named as the ticket's company script names its engineers (python-1, docs-1).
    lineup = {"name": "mixed", "agents": [
        {"name": "python-1", "skills": ["python"]},
        {"name": "docs-1", "skills": ["docs"], "adapter": "process",
         "config": {"command": [sys.executable, str(agent_dir / "writer.py"), "{workspace}"],
                    "timeout": 60}}]}
    report = compare(data_dir, "ticket", lineup, tmp_path, "swarm,company", capsys)

    for entry in report["runs"]:
        rows = check_table(data_dir, entry)
        builtin, writer = rows["python-1"], rows["docs-1"]
        assert (builtin["adapter"], writer["adapter"]) == ("llm", "process")
        assert builtin["taken"] == builtin["done_by_kind"] == {"python": 1}
        assert writer["taken"] == writer["done_by_kind"] == {"docs": 1}
        assert (writer["attempts"], writer["done"], writer["failed"]) == (1, 1, 0)
        assert writer["calls"] == 1, "its call went through the meter"
        assert writer["tokens"] > 0
        assert builtin["calls"] == 4  # read, edit, test, complete (the ticket's script)
        assert builtin["mean_time"] > 0
        assert writer["mean_time"] > 0
        assert README_NEW in (Path(entry["workspace"]) / "README.md").read_text()
        if entry["mode"] == "swarm":
            assert set(rows) == {"python-1", "docs-1"}
            assert set(builtin["thresholds"]) == set(writer["thresholds"]) == {"python", "docs"}
            # Learning: each got keener on its own kind of work than on the other's.
            assert builtin["thresholds"]["python"] < builtin["thresholds"]["docs"]
            assert writer["thresholds"]["docs"] < writer["thresholds"]["python"]
        else:
            assert set(rows) == {"ceo", "lead", "python-1", "docs-1"}
            assert rows["ceo"]["coordination"] >= 1
            assert rows["lead"]["coordination"] == 2
            assert rows["ceo"]["adapter"] == rows["lead"]["adapter"] == "llm"
            assert builtin["thresholds"] is None


@pytest.mark.integration
@pytest.mark.parametrize("cli", ["claude-code", "codex"])
def test_a_line_up_with_a_real_agent_cli_is_compared(
        cli: str, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    program = require_agent_cli(cli)
    # The ticket workload as built in, its script taught how the CLI documents the flag (in
    # its own protocol: Anthropic Messages for Claude Code, Responses for Codex).
    workload = tmp_path / "ticket"
    shutil.copytree(WORKLOADS / "ticket", workload)
    script = yaml.safe_load((workload / "gateway.yaml").read_text())
    # One line for one line: Codex's patch (tests/agent_clis.py) replaces a line with a line.
    script["rules"] = fix_rules(cli, "README.md", README_OLD, ONE_LINE,
                                marker="Document the --shout flag") + script["rules"]
    (workload / "gateway.yaml").write_text(yaml.safe_dump(script))
    lineup = {"agents": [
        {"name": "python-1", "skills": ["python"]},
        {"name": "docs-1", "skills": ["docs"], "adapter": cli,
         "config": {"program": program, "timeout": 120}}]}
    report = compare(data_dir, str(workload / "workload.yaml"), lineup, tmp_path, "swarm",
                     capsys)
    [entry] = report["runs"]
    rows = check_table(data_dir, entry)
    assert rows["docs-1"]["adapter"] == cli
    assert rows["python-1"]["taken"] == {"python": 1}
    assert rows["docs-1"]["taken"] == rows["docs-1"]["done_by_kind"] == {"docs": 1}
    assert rows["docs-1"]["calls"] >= 3
    assert rows["docs-1"]["tokens"] > 0
    assert ONE_LINE in (Path(entry["workspace"]) / "README.md").read_text()
