"""A real `ruflo orchestrate` on a git repository, SIGKILLed at turn 6 of a 10-turn attempt
while the command of that turn runs, then `ruflo hive resume`: the attempt continues from its
journal (no turn asked twice), the files written before the kill are replayed into the new
worktree and merged, and the command is reported to the model as interrupted, not run again."""

from __future__ import annotations

import json
import signal
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cli_harness import RUFLO, Cli

from long_attempt import long_rules, written_parts
from ruflo.agents.gitwork import HiveRepo, init_repo
from ruflo.agents.journal import INTERRUPTED
from ruflo.event_kinds import EventKind
from ruflo.model import HiveStatus
from waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WORKLOAD = """\
name: long
objective: write the parts
tasks:
  - id: parts
    title: Write the parts
    verify: grep -qx 'part 1 checked' part1.txt && test -f part7.txt
"""


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True,
                          text=True).stdout


def test_sigkill_at_turn_6_resumes_from_the_journal(cli: Cli, tmp_path: Path) -> None:
    counter, release = tmp_path / "runs", tmp_path / "release"
    cli.gateway.set_rules(long_rules(10, command_turn=6, counter=counter, release=release))
    workload = tmp_path / "work.yaml"
    workload.write_text(WORKLOAD)
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "README").write_text("the user's project\n")
    init_repo(workspace)
    # The command counts its runs in a file outside the worktree: the sandbox would hide it.
    env = {"RUFLO_SANDBOX": "off"}
    log = tmp_path / "first.log"
    store = cli.store()
    try:
        with log.open("w") as out:
            first = subprocess.Popen(
                [str(RUFLO), "orchestrate", "--workload", str(workload), "--agents", "1",
                 "--workspace", str(workspace), "--json"],
                env={**cli.env, **env}, stdout=out, stderr=subprocess.STDOUT, text=True)
        try:
            wait_until(counter.exists, within=90, what="the turn-6 command running",
                       explain=log.read_text)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=30)
        assert first.returncode == -signal.SIGKILL
        assert cli.gateway.chat_count == 6
        hive_id = store.list_hives()[0].id
        (task,) = store.list_tasks(hive_id)

        def lapsed() -> bool:
            driver = store.hive_driver(hive_id)
            return driver is None or driver.driver_until < datetime.now(UTC)

        wait_until(lapsed, within=60, what="the dead driver's lease to lapse")
        resumed = cli("hive", "resume", hive_id, "--json", timeout=180, env=env)
        assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
        assert json.loads(resumed.stdout)["status"] == "done"

        assert store.get_hive(hive_id).status is HiveStatus.DONE
        assert cli.gateway.chat_count == 10, "no turn was asked twice"
        assert counter.read_text() == "ran\n", "the command was not run again"
        after_kill = cli.gateway.requests[6]
        assert after_kill["messages"][-1] == {
            "role": "tool", "tool_call_id": after_kill["messages"][-2]["tool_calls"][0]["id"],
            "content": INTERRUPTED}
        (event,) = store.events(hive_id, kinds=[EventKind.ATTEMPT_RESUMED])
        assert event.data["turn"] == 6
        assert event.data["interrupted"] == ["run_command"]
        assert sorted(event.data["replayed_files"]) == ["part1.txt", "part4.txt"]
        repo = HiveRepo(workspace, hive_id)
        for name, text in written_parts(10, command_turn=6).items():
            assert git("show", f"{repo.branch}:{name}", cwd=workspace) == text
        (journal,) = store.task_journals(task.id)
        assert journal.close_reason == "ended: complete"
    finally:
        release.touch()  # the orphaned command of the killed process ends
        store.close()
