"""`ruflo orchestrate` as a person runs it: a subprocess against a ScriptedGateway, with a temp
data dir; the exit code and the stored hive say how it went."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from cli_harness import Cli, work_rules

from ruflo.model import HiveStatus, TaskState

pytestmark = pytest.mark.integration

WORKLOAD = """\
name: two-files
objective: write two files, the second after the first
verify: test -f a.txt && test -f b.txt
tasks:
  - id: a
    title: a
    skills: [python]
    verify: grep -qx a a.txt
  - id: b
    title: b
    depends_on: [a]
    verify: grep -qx b b.txt
"""


def test_orchestrate_runs_a_workload_to_completion_and_exits_zero(
        cli: Cli, tmp_path: Path) -> None:
    cli.gateway.add_rules(*work_rules("a"), *work_rules("b"))
    workload = tmp_path / "work.yaml"
    workload.write_text(WORKLOAD)
    workspace = tmp_path / "ws"

    done = cli("orchestrate", "--workload", str(workload), "--agents", "2",
               "--workspace", str(workspace), "--budget-tokens", "100000", "--json")

    assert done.returncode == 0, done.stdout[-3000:]
    summary = json.loads(done.stdout)
    assert summary["status"] == "done"
    assert summary["objective_succeeded"] is True
    assert summary["tasks"]["done"] == 2
    assert "store: sqlite" in done.stderr, "the boot trace is printed"
    assert not (workspace / "b.txt").exists(), "the user's folder changes only by hive apply"
    branch = f"ruflo/{summary['hive_id']}:b.txt"
    assert subprocess.run(["git", "-C", str(workspace), "show", branch], capture_output=True,
                          text=True, check=True).stdout.strip() == "b"
    store = cli.store()
    try:
        hive = store.get_hive(summary["hive_id"])
        assert hive.status is HiveStatus.DONE
        assert hive.budget.max_tokens == 100000
        assert {t.state for t in store.list_tasks(hive.id)} == {TaskState.DONE}
        assert len(store.list_agents(hive.id)) == 2
        assert store.events(hive.id, kinds=["objective_verified"])[0].data["passed"] is True
    finally:
        store.close()


def test_orchestrate_plans_the_objective_with_one_coordination_call(
        cli: Cli, tmp_path: Path) -> None:
    plan = {"tasks": [{"id": "x", "title": "x", "verify": "test -f x.txt"},
                      {"id": "y", "title": "y", "depends_on": ["x"]}]}
    cli.gateway.add_rules({"match": {"system": "You plan work"},
                           "reply": {"content": "```json\n" + json.dumps(plan) + "\n```"}},
                          *work_rules("x"), *work_rules("y"))

    done = cli("orchestrate", "write x then y", "--agents", "2",
               "--workspace", str(tmp_path / "ws"))

    assert done.returncode == 0, done.stderr
    assert "2/2 tasks done" in done.stdout
    assert "planned 2 tasks" in done.stderr
    assert "task_done agent-" in done.stderr, "the view prints events when not on a terminal"
    store = cli.store()
    try:
        hive = store.list_hives()[0]
        assert hive.objective == "write x then y"
        assert [t.title for t in store.list_tasks(hive.id)] == ["x", "y"]
        assert store.spend(hive_id=hive.id, kind="coordination").calls == 1  # type: ignore[arg-type]
    finally:
        store.close()


def test_a_malformed_plan_posts_nothing_and_says_why(cli: Cli, tmp_path: Path) -> None:
    cli.gateway.add_rules({"match": {"system": "You plan work"},
                           "reply": {"content": "Sure! Here are the tasks: 1. write x"}})

    refused = cli("orchestrate", "write x", "--workspace", str(tmp_path / "ws"))

    assert refused.returncode == 2
    assert "not a usable task list" in refused.stderr
    assert "nothing was posted" in refused.stderr
    assert "Traceback" not in refused.stderr
    store = cli.store()
    try:
        hive = store.list_hives()[0]
        assert hive.status is HiveStatus.FAILED
        assert not store.list_tasks(hive.id)
    finally:
        store.close()


def test_a_refused_key_ends_the_run_paused_with_a_clear_line(cli: Cli, tmp_path: Path) -> None:
    cli.gateway.add_rules(*work_rules("a"), *work_rules("b"))
    workload = tmp_path / "work.yaml"
    workload.write_text(WORKLOAD)

    paused = cli("orchestrate", "--workload", str(workload), "--workspace",
                 str(tmp_path / "ws"), env={"OPENAI_API_KEY": "sk-revoked"})

    assert paused.returncode == 3
    assert "paused: gateway refused the key" in paused.stderr
    assert "ruflo hive resume" in paused.stderr
    store = cli.store()
    try:
        hive = store.list_hives()[0]
        assert hive.status is HiveStatus.PAUSED
        assert not store.list_tasks(hive.id, states=[TaskState.CLAIMED])
    finally:
        store.close()

    resumed = cli("hive", "resume", hive.id[:10])

    assert resumed.returncode == 0, resumed.stderr
    assert "2/2 tasks done" in resumed.stdout


def test_orchestrate_without_a_gateway_refuses_before_storing_anything(
        cli: Cli, tmp_path: Path) -> None:
    refused = cli("orchestrate", "anything", env={"OPENAI_BASE_URL": ""})

    assert refused.returncode == 2
    assert "no gateway" in refused.stderr
    assert not (cli.data_dir / "ruflo.db").exists()
