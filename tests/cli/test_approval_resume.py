"""Durable attempts and per-action approvals together, end to end: a real `ruflo orchestrate` on a
git repository whose agent, at turn 3, asks to run an `rm -rf` command (the safe defaults ask).
The approval opens and the attempt waits with no gateway call; the process is SIGKILLed while it
waits; a person decides with a real `ruflo approval` while nothing runs; `ruflo hive resume`
continues the attempt at turn 3 from its journal, finds the decided approval (no second one), and
runs the command once (approved) or gives the model the reason as a tool error (rejected); if
nobody decided yet, the resumed attempt waits on the same approval, again with no gateway call.
On SQLite and on Postgres."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cli_harness import RUFLO, Cli

from ruflo.agents.gitwork import HiveRepo, init_repo
from ruflo.event_kinds import EventKind
from ruflo.model import ApprovalKind, ApprovalStatus, HiveStatus, TaskState
from ruflo.store import open_store
from waiting import stays_sync, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WORKLOAD = """\
name: cleanup
objective: clean the build
tasks:
  - id: clean
    title: Clean the build
    verify: grep -qx 'checked' notes.txt
"""

REASON = "keep the build cache"


def call(name: str, **arguments: object) -> dict[str, Any]:
    return {"tool_calls": [{"name": name, "arguments": arguments}]}


def rules(wipe: str) -> list[dict[str, Any]]:
    """Turn 1 writes notes.txt, turn 2 reads it, turn 3 runs `wipe` (asked), turn 4 answers what
    the person decided. The rules match on the turn (and the last tool result) only, so a resumed
    attempt, whose requests carry the turns from its journal, meets the same ones."""
    return [
        {"match": {"turn": 1}, "reply": call("write_file", path="notes.txt", content="checked\n")},
        {"match": {"turn": 2}, "reply": call("read_file", path="notes.txt")},
        {"match": {"turn": 3}, "reply": call("run_command", command=wipe)},
        {"match": {"turn": 4, "last_tool": "exit code 0"},
         "reply": call("complete", result="wiped the build folder")},
        {"match": {"turn": 4, "last_tool": "rejected"},
         "reply": call("complete", result="left the build folder as it was")},
    ]


def git(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True,
                          check=False)


def kill_while_it_waits(cli: Cli, tmp_path: Path, env: dict[str, str]) -> tuple[Any, Path, str]:
    """Start `ruflo orchestrate`, wait for the action approval of turn 3, check that the attempt
    waits without a gateway call, SIGKILL the process. Returns (store, workspace, counter)."""
    counter = tmp_path / "runs"
    # The command counts its runs in a file outside the worktree: the sandbox would hide it.
    wipe = f"rm -rf build && echo ran >> {shlex.quote(str(counter))}"
    cli.gateway.set_rules(rules(wipe))
    workload = tmp_path / "work.yaml"
    workload.write_text(WORKLOAD)
    workspace = tmp_path / "ws"
    (workspace / "build").mkdir(parents=True)
    (workspace / "build" / "out.o").write_text("object\n")
    init_repo(workspace)
    store = open_store(env["DATABASE_URL"])
    log = tmp_path / "first.log"
    with log.open("w") as out:
        first = subprocess.Popen(
            [str(RUFLO), "orchestrate", "--workload", str(workload), "--agents", "1",
             "--workspace", str(workspace), "--json"],
            env={**cli.env, **env}, stdout=out, stderr=subprocess.STDOUT, text=True)
    try:
        def pending() -> list[Any]:
            return store.list_approvals(status=ApprovalStatus.PENDING)

        (approval,) = wait_until(pending, within=90, what="the action approval of turn 3",
                                 explain=log.read_text)
        assert approval.kind is ApprovalKind.ACTION
        assert approval.data["turn"] == 3
        assert approval.data["subject"] == wipe
        assert cli.gateway.chat_count == 3
        stays_sync(lambda: cli.gateway.chat_count == 3 and first.poll() is None,
                   what="the waiting attempt called the gateway or ended")
        assert not counter.exists()
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    assert first.returncode == -signal.SIGKILL
    return store, workspace, str(counter)


def lapsed(store: Any) -> str:
    """Wait until the dead driver's lease lapsed; the hive's id."""
    hive_id: str = store.list_hives()[0].id

    def gone() -> bool:
        driver = store.hive_driver(hive_id)
        return driver is None or driver.driver_until < datetime.now(UTC)

    wait_until(gone, within=60, what="the dead driver's lease to lapse")
    return hive_id


def resume(cli: Cli, store: Any, env: dict[str, str]) -> str:
    """`ruflo hive resume` once the dead driver's lease lapsed; the hive's id."""
    hive_id = lapsed(store)
    resumed = cli("hive", "resume", hive_id, "--json", timeout=180, env=env)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert json.loads(resumed.stdout)["status"] == "done"
    return hive_id


def resumed_at_turn_3(store: Any, hive_id: str) -> None:
    """The attempt went on from its journal at turn 3, the asked call run now (it had not
    started), and the hive verified and merged the task."""
    (event,) = store.events(hive_id, kinds=[EventKind.ATTEMPT_RESUMED])
    assert event.data["turn"] == 3
    assert event.data["run_now"] == ["run_command"]
    assert event.data["interrupted"] == []
    assert store.get_hive(hive_id).status is HiveStatus.DONE
    (task,) = store.list_tasks(hive_id)
    assert task.state is TaskState.DONE
    (journal,) = store.task_journals(task.id)
    assert journal.close_reason == "ended: complete"


@pytest.fixture
def env(store_url: str) -> dict[str, str]:
    """Both processes on the same store (SQLite in the data dir, or a Postgres schema), the
    command unsandboxed (see kill_while_it_waits)."""
    return {"DATABASE_URL": store_url, "RUFLO_SANDBOX": "off"}


def test_approved_while_nothing_runs_the_resumed_attempt_runs_the_command_once(
        cli: Cli, tmp_path: Path, env: dict[str, str]) -> None:
    store, workspace, counter = kill_while_it_waits(cli, tmp_path, env)
    try:
        (approval,) = store.list_approvals()
        done = cli("approval", "approve", approval.id[:10], "--by", "person:ops", env=env)
        assert done.returncode == 0, done.stderr
        assert "approved" in done.stdout

        hive_id = resume(cli, store, env)

        assert cli.gateway.chat_count == 4, "no turn was asked twice"
        assert Path(counter).read_text() == "ran\n", "the command ran exactly once"
        assert [a.id for a in store.list_approvals()] == [approval.id], "no second approval"
        after = cli.gateway.requests[3]["messages"]
        assert after[-1]["role"] == "tool"
        assert after[-1]["tool_call_id"] == after[-2]["tool_calls"][0]["id"]
        assert "exit code 0" in after[-1]["content"]
        assert sum(m["role"] == "assistant" for m in after) == 3
        resumed_at_turn_3(store, hive_id)
        branch = HiveRepo(workspace, hive_id).branch
        assert git("show", f"{branch}:notes.txt", cwd=workspace).stdout == "checked\n"
        assert git("cat-file", "-e", f"{branch}:build/out.o", cwd=workspace).returncode != 0, \
            "the approved command's deletion was merged"
    finally:
        store.close()


def test_rejected_while_nothing_runs_the_resumed_attempt_reads_the_reason(
        cli: Cli, tmp_path: Path, env: dict[str, str]) -> None:
    store, workspace, counter = kill_while_it_waits(cli, tmp_path, env)
    try:
        (approval,) = store.list_approvals()
        done = cli("approval", "reject", approval.id, "--by", "person:ops", "--reason", REASON,
                   "--json", env=env)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["status"] == "rejected"

        hive_id = resume(cli, store, env)

        assert cli.gateway.chat_count == 4, "no turn was asked twice"
        assert not Path(counter).exists(), "the rejected command never ran"
        assert [a.id for a in store.list_approvals()] == [approval.id], "no second approval"
        after = cli.gateway.requests[3]["messages"]
        assert after[-1]["role"] == "tool"
        assert after[-1]["tool_call_id"] == after[-2]["tool_calls"][0]["id"]
        assert "a person rejected it" in after[-1]["content"]
        assert f"person:ops: {REASON}" in after[-1]["content"]
        resumed_at_turn_3(store, hive_id)
        branch = HiveRepo(workspace, hive_id).branch
        assert git("show", f"{branch}:build/out.o", cwd=workspace).stdout == "object\n"
    finally:
        store.close()


def test_still_pending_at_resume_the_resumed_attempt_waits_on_the_same_approval(
        cli: Cli, tmp_path: Path, env: dict[str, str]) -> None:
    store, _, counter = kill_while_it_waits(cli, tmp_path, env)
    try:
        (approval,) = store.list_approvals()
        hive_id = lapsed(store)
        out, err = tmp_path / "resume.out", tmp_path / "resume.err"
        with out.open("w") as stdout, err.open("w") as stderr:
            resuming = subprocess.Popen([str(RUFLO), "hive", "resume", hive_id, "--json"],
                                        env={**cli.env, **env}, stdout=stdout, stderr=stderr,
                                        text=True)
        try:
            wait_until(lambda: store.events(hive_id, kinds=[EventKind.ATTEMPT_RESUMED]),
                       within=90, what="the attempt resumed", explain=err.read_text)
            stays_sync(lambda: cli.gateway.chat_count == 3 and resuming.poll() is None
                       and store.get_approval(approval.id).status is ApprovalStatus.PENDING,
                       what="the resumed attempt did not wait on the approval")
            assert [a.id for a in store.list_approvals()] == [approval.id], \
                "no second approval"
            done = cli("approval", "approve", approval.id, "--by", "person:ops", env=env)
            assert done.returncode == 0, done.stderr
            resuming.wait(timeout=180)
        finally:
            if resuming.poll() is None:
                resuming.kill()
                resuming.wait(timeout=30)
        assert resuming.returncode == 0, out.read_text()[-3000:] + err.read_text()[-3000:]
        assert json.loads(out.read_text())["status"] == "done"

        assert cli.gateway.chat_count == 4, "no turn was asked twice"
        assert Path(counter).read_text() == "ran\n", "the command ran exactly once"
        assert [a.id for a in store.list_approvals()] == [approval.id], "no second approval"
        assert "exit code 0" in cli.gateway.requests[3]["messages"][-1]["content"]
        resumed_at_turn_3(store, hive_id)
    finally:
        store.close()
