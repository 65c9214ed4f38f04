"""`ruflo hive ...` and `ruflo task ...` on stored hives, as subprocesses on a temp data dir."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_harness import Cli, work_rules

from ruflo.model import Agent, Hive, HiveStatus, Mode, Task, TaskState

pytestmark = pytest.mark.integration


def stored_hive(cli: Cli, tmp_path: Path, hive_id: str = "c0ffee00c0ffee00") -> Hive:
    store = cli.store()
    try:
        hive = Hive(id=hive_id, name="stored", mode=Mode.SWARM, objective="write a",
                    workspace=str(tmp_path / "ws"))
        store.create_hive(hive, agents=[Agent(id=f"{hive_id[:8]}.agent-1", hive_id=hive_id,
                                              name="agent-1")],
                          tasks=[Task(id=f"{hive_id[:8]}.a", hive_id=hive_id, title="a",
                                      verify="grep -qx a a.txt")])
        return hive
    finally:
        store.close()


def test_hive_and_task_commands_act_on_a_stored_hive(cli: Cli, tmp_path: Path) -> None:
    hive = stored_hive(cli, tmp_path)
    cli.gateway.add_rules(*work_rules("a"), *work_rules("b"))

    listed = cli("hive", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [h["id"] for h in json.loads(listed.stdout)] == [hive.id]

    posted = cli("task", "post", hive.id[:6], "b", "--id", "b", "--depends-on", "a",
                 "--verify", "grep -qx b b.txt", "--skill", "python", "--json")
    assert posted.returncode == 0, posted.stderr
    assert json.loads(posted.stdout)["depends_on"] == [f"{hive.id[:8]}.a"]
    again = cli("task", "post", hive.id, "b", "--id", "b")
    assert again.returncode == 2
    assert "already has a task 'b'" in again.stderr

    assert cli("hive", "pause", hive.id).returncode == 0
    shown = json.loads(cli("hive", "show", hive.id, "--json").stdout)
    assert shown["hive"]["status"] == "paused"
    assert shown["hive"]["reason"] == "paused by a person"
    assert [t["title"] for t in shown["tasks"]] == ["a", "b"]

    resumed = cli("hive", "resume", hive.id)
    assert resumed.returncode == 0, resumed.stderr
    assert "2/2 tasks done" in resumed.stdout

    shown = cli("hive", "show", hive.id)
    assert shown.returncode == 0
    assert "agent-1" in shown.stdout
    assert "python=" in shown.stdout, "thresholds are shown"
    assert "tool_call agent-1" in shown.stdout, "the transcript is in the events"
    task = json.loads(cli("task", "show", "b", "--hive", hive.id, "--json").stdout)
    assert task["state"] == "done"
    assert task["verified"] is True
    assert "task_claimed" in [e["kind"] for e in task["events"]]
    assert json.loads(cli("task", "list", hive.id, "--state", "done", "--json").stdout)


def test_cancel_and_refusals_say_why_and_exit_non_zero(cli: Cli, tmp_path: Path) -> None:
    hive = stored_hive(cli, tmp_path)
    assert cli("task", "post", hive.id, "later", "--id", "later",
               "--depends-on", "a").returncode == 0

    cancelled = cli("task", "cancel", "a", "--hive", hive.id, "--json")
    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cancelled.stdout)["cancelled"] == [f"{hive.id[:8]}.a",
                                                        f"{hive.id[:8]}.later"]
    assert cli("hive", "cancel", hive.id).returncode == 0

    store = cli.store()
    try:
        assert store.get_hive(hive.id).status is HiveStatus.CANCELLED
        assert {t.state for t in store.list_tasks(hive.id)} == {TaskState.CANCELLED}
    finally:
        store.close()
    for args, words in [
        (("hive", "resume", hive.id), "is cancelled and can't be resumed"),
        (("task", "post", hive.id, "more"), "nothing was posted"),
        (("hive", "show", "nosuchhive"), "no hive 'nosuchhive'"),
        (("task", "show", "nosuchtask"), "no task 'nosuchtask'"),
        (("task", "list", hive.id, "--state", "sleeping"), "states are open"),
    ]:
        result = cli(*args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert words in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_hive_resume_leaves_a_hive_another_process_drives_alone(cli: Cli, tmp_path: Path) -> None:
    """A live driver elsewhere (a server, another terminal): `hive resume` changes nothing and
    says who drives it; `hive show` names the driver; once its lease has run out (it died),
    resume drives here."""
    from datetime import timedelta

    from ruflo.model import HiveDriver, utcnow

    hive = stored_hive(cli, tmp_path)
    cli.gateway.add_rules(*work_rules("a"))
    store = cli.store()
    try:
        store.set_hive_status(hive.id, HiveStatus.PAUSED, reason="paused by a person")
        now = utcnow()
        elsewhere = store.take_hive(HiveDriver(
            hive_id=hive.id, instance="other-instance", host="elsewhere", pid=4242,
            driving_since=now, driver_until=now), lease_seconds=600)
    finally:
        store.close()

    for args in (("hive", "resume", hive.id), ("hive", "resume", hive.id, "--json")):
        refused = cli(*args)
        assert refused.returncode == 2, refused.stdout
        assert refused.stderr.strip().splitlines()[-1] == (
            f"error: hive {hive.id} is driven by elsewhere:4242 (lease until "
            f"{elsewhere.driver_until:%Y-%m-%d %H:%M:%S} UTC); `ruflo hive resume` leaves it "
            f"alone; nothing was changed (`ruflo hive resume --no-run {hive.id}` marks it "
            "running for that driver)")
        assert "Traceback" not in refused.stderr
    shown = cli("hive", "show", hive.id)
    assert shown.returncode == 0, shown.stderr
    assert "paused" in shown.stdout, "nothing was changed"
    assert "driver: elsewhere:4242 since" in shown.stdout
    driver = json.loads(cli("hive", "show", hive.id, "--json").stdout)["driver"]
    assert (driver["host"], driver["pid"], driver["alive"]) == ("elsewhere", 4242, True)

    # The other process died: its lease ran out a minute ago (nobody renewed it).
    store = cli.store()
    try:
        store.take_hive(elsewhere, lease_seconds=1, now=utcnow() - timedelta(seconds=60))
        assert not store.events(hive.id, kinds=["hive_running"])
    finally:
        store.close()
    assert "NOT ALIVE: its lease ran out" in cli("hive", "show", hive.id).stdout
    resumed = cli("hive", "resume", hive.id)
    assert resumed.returncode == 0, resumed.stderr
    assert "1/1 tasks done" in resumed.stdout
    shown = cli("hive", "show", hive.id)
    assert "driver: none" in shown.stdout, "the command let go when it was done"
