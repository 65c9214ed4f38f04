"""Two `ruflo worker` processes on Postgres, the built-in agent on a 10-turn scripted attempt: the
first worker is SIGKILLed while the command of turn 6 runs; the second adopts the agent once the
first is stale, takes the task when its lease lapses, and continues the attempt from its journal:
no turn asked twice, the command reported as interrupted and not run again, the files written
before the kill replayed into the workspace (emptied, as another machine's folder would be)."""

from __future__ import annotations

from pathlib import Path

import pytest

from long_attempt import long_rules, written_parts
from ruflo.agents.journal import INTERRUPTED
from ruflo.event_kinds import EventKind
from ruflo.gateway.scripted import ScriptedGateway
from ruflo.model import Agent, Hive, HiveStatus, Mode, Task, TaskState
from ruflo.store.sql import SqlStore

from .harness import start_worker, stop_all, wait_for, worker_env

KEY = "sk-worker"


@pytest.mark.postgres
@pytest.mark.slow
def test_the_second_worker_continues_the_attempt_the_first_died_in(
        pg_store: SqlStore, pg_schema_url: str, tmp_path: Path) -> None:
    counter, release = tmp_path / "runs", tmp_path / "release"
    gateway = ScriptedGateway({"keys": [KEY], "rules": long_rules(
        10, command_turn=6, counter=counter, release=release)})
    gateway.start()
    workspace = tmp_path / "ws"
    workspace.mkdir()
    hive = Hive(id="hw", name="resume", mode=Mode.SWARM, objective="write the parts",
                workspace=str(workspace))
    agent = Agent(id="hw-a", hive_id=hive.id, name="ada", role="coder")
    task = Task(id="hw-t", hive_id=hive.id, title="Write the parts")
    pg_store.create_hive(hive, agents=[agent], tasks=[task])
    env = worker_env(pg_schema_url, tmp_path / "data", lease_seconds=2.0)
    # The command counts its runs in a file outside the workspace: the sandbox would hide it.
    env.update(OPENAI_BASE_URL=gateway.base_url, OPENAI_API_KEY=KEY, RUFLO_SANDBOX="off")
    args = ["--hive", hive.id, "--agents", "1", "--poll-seconds", "0.5"]
    workers = [start_worker(0, args, env, tmp_path / "logs")]
    try:
        wait_for(counter.exists, 90, "the turn-6 command running", workers)
        workers[0].process.kill()
        workers[0].process.wait(timeout=30)
        assert gateway.chat_count == 6
        for name in written_parts(6):
            (workspace / name).unlink()  # the next worker's machine has none of them

        workers.append(start_worker(1, args, env, tmp_path / "logs"))
        wait_for(lambda: pg_store.get_task(task.id).state is TaskState.DONE, 120,
                 "the task done by the second worker", workers)
        wait_for(lambda: pg_store.get_hive(hive.id).status is HiveStatus.DONE, 60,
                 "the hive done", workers)
    finally:
        release.touch()  # the orphaned command of the killed worker ends
        stop_all(workers)
        gateway.stop()

    assert gateway.chat_count == 10, "no turn was asked twice"
    assert counter.read_text() == "ran\n", "the command was not run again"
    after_kill = gateway.requests[6]["messages"]
    assert after_kill[-1]["role"] == "tool"
    assert after_kill[-1]["content"] == INTERRUPTED
    (event,) = pg_store.events(hive.id, kinds=[EventKind.ATTEMPT_RESUMED])
    assert event.data["turn"] == 6
    assert sorted(event.data["replayed_files"]) == ["part1.txt", "part4.txt"]
    for name, text in written_parts(10, command_turn=6).items():
        assert (workspace / name).read_text() == text
    (journal,) = pg_store.task_journals(task.id)
    assert journal.close_reason == "ended: complete"
