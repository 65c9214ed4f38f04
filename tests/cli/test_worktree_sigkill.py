"""A real `ruflo orchestrate` on a git repository, SIGKILLed while an attempt's worktree exists
(its model call held at a gate), then `ruflo hive resume`: the left-over worktree is not leaked,
no merge is lost or done twice, and the hive finishes."""

from __future__ import annotations

import json
import signal
import subprocess
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cli_harness import RUFLO, Cli, work_rules

from ruflo.agents.gitwork import HiveRepo, init_repo
from ruflo.event_kinds import EventKind
from ruflo.model import HiveStatus, TaskState
from waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WORKLOAD = """\
name: two-files
objective: write two files
verify: test -f a.txt && test -f b.txt
tasks:
  - id: a
    title: a
    verify: grep -qx a a.txt
  - id: b
    title: b
    verify: grep -qx b b.txt
"""


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True,
                          text=True).stdout


def test_sigkill_mid_attempt_then_resume_leaks_nothing_and_merges_once(
        cli: Cli, tmp_path: Path) -> None:
    cli.gateway.add_rules(*work_rules("a"), *work_rules("b", hold="b-held"))
    workload = tmp_path / "work.yaml"
    workload.write_text(WORKLOAD)
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "README").write_text("the user's project\n")
    init_repo(workspace)
    user_head = git("rev-parse", "HEAD", cwd=workspace)
    log = tmp_path / "first.log"
    store = cli.store()
    try:
        with log.open("w") as out:
            first = subprocess.Popen(
                [str(RUFLO), "orchestrate", "--workload", str(workload), "--agents", "2",
                 "--workspace", str(workspace), "--json"],
                env=cli.env, stdout=out, stderr=subprocess.STDOUT, text=True)
        try:
            hive_id = wait_until(lambda: next((h.id for h in store.list_hives()), None),
                                 what="the hive stored", explain=log.read_text)
            repo = HiveRepo(workspace, hive_id)
            b_id = wait_until(lambda: next((t.id for t in store.list_tasks(hive_id)
                                            if t.title == "b"), None), what="task b posted")
            wait_until(lambda: store.events(hive_id, kinds=[EventKind.TASK_MERGED]),
                       within=60, what="a merged", explain=log.read_text)
            wait_until(lambda: (repo.attempt_path(b_id) / "README").exists(),
                       within=60, what="b's worktree cut", explain=log.read_text)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=30)
        assert first.returncode == -signal.SIGKILL
        assert repo.leftovers() == [b_id], "the kill left b's worktree behind"
        assert store.get_task(b_id).state is TaskState.CLAIMED
        cli.gateway.open_gate("b-held")

        # The dead process's driver lease must lapse before another process may drive the hive.
        def lapsed() -> bool:
            driver = store.hive_driver(hive_id)
            return driver is None or driver.driver_until < datetime.now(UTC)

        wait_until(lapsed, within=60, what="the dead driver's lease to lapse")
        resumed = cli("hive", "resume", hive_id, "--json", timeout=120)
        assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
        assert json.loads(resumed.stdout)["status"] == "done"

        hive = store.get_hive(hive_id)
        assert hive.status is HiveStatus.DONE
        merged = Counter(e.task_id for e in store.events(hive_id, kinds=[EventKind.TASK_MERGED]))
        assert sorted(merged.values()) == [1, 1], f"each task merged exactly once: {merged}"
        assert set(merged) == {t.id for t in store.list_tasks(hive_id)}
        merges = git("rev-list", "--merges", repo.branch, cwd=workspace).split()
        assert len(merges) == 2, "one merge commit per task on the integration branch"
        assert git("show", f"{repo.branch}:a.txt", cwd=workspace).strip() == "a"
        assert git("show", f"{repo.branch}:b.txt", cwd=workspace).strip() == "b"
        # No worktree leaked: only the user's and the integration worktree are left.
        assert repo.leftovers() == []
        assert not repo.attempt_path(b_id).exists()
        listed = [line for line in git("worktree", "list", "--porcelain", cwd=workspace)
                  .splitlines() if line.startswith("worktree ")]
        assert listed == [f"worktree {workspace}", f"worktree {repo.integration}"]
        assert git("rev-parse", "HEAD", cwd=workspace) == user_head, "the user's branch kept"
    finally:
        store.close()
