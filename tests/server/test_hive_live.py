"""Hives run by the live engine inside a real server (`create_app` with the engine's runner, uvicorn
on loopback, ScriptedGateway as the model): created over HTTP they run to done, pause/resume/
cancel over HTTP act on the running engine, and the SSE stream shows the tasks moving. One test
runs `ruflo serve` itself: SIGTERM hands the claims back, and the next server finishes the hive."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_harness import Served

from agent_scripts import plan_rule, work_rules
from ruflo.agents.gitwork import git
from ruflo.config import load_settings
from ruflo.gateway.scripted import ScriptedGateway
from ruflo.model import CostKind
from ruflo.store import open_store
from waiting import stays_sync, wait_until

KEY = "sk-hive-live"
FAST = {"time_unit": 0.05, "lease_seconds": 2.0}


def create(served: Served, tasks: list[str], *, agents: int = 2,
           objective: str = "write the files") -> dict[str, Any]:
    answer = served.client.post("/api/v2/hives", json={
        "objective": objective, "agents": agents, "config": FAST,
        "tasks": [{"title": name, "verify": f"grep -qx {name} {name}.txt"} for name in tasks]})
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


def hive_of(served: Served, hive_id: str) -> dict[str, Any]:
    answer = served.client.get(f"/api/v2/hives/{hive_id}")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def counted(hive: dict[str, Any]) -> dict[str, int]:
    return {state: n for state, n in hive["tasks"].items() if n}


def tasks_in(served: Served, hive_id: str, state: str) -> list[dict[str, Any]]:
    answer = served.client.get(f"/api/v2/hives/{hive_id}/tasks", params={"state": state})
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()["tasks"]
    return found


def test_a_hive_created_over_http_runs_to_done_and_the_stream_shows_it(
        live_server: Callable[..., Served]) -> None:
    names = ["t1", "t2", "t3"]
    served = live_server(*[rule for name in names for rule in work_rules(name)])

    hive = create(served, names)
    frames = served.sse(f"/api/v2/hives/{hive['id']}/stream",
                        until=lambda got: got[-1]["data"]["kind"] == "hive_done", timeout=60)

    kinds = [frame["data"]["kind"] for frame in frames]
    seqs = [frame["id"] for frame in frames]
    assert seqs == sorted(set(seqs)), "in order, no duplicates"
    for name in names:
        task_id = next(t.id for t in served.store.list_tasks(hive["id"]) if t.title == name)
        moves = [f["data"]["kind"] for f in frames if f["data"]["task_id"] == task_id
                 and f["data"]["kind"].startswith("task_")]
        assert (moves[0], moves[-1]) == ("task_posted", "task_done"), moves
        assert "task_claimed" in moves
    assert kinds.index("engine_started") < kinds.index("hive_done")
    shown = hive_of(served, hive["id"])
    assert shown["status"] == "done"
    assert counted(shown) == {"done": 3}
    assert shown["spend"]["calls"] == 6, "two gateway calls per task, nothing else"
    # Git isolation by default: the folder the server made holds its first commit only; the
    # work is on the hive's integration branch.
    workspace = Path(shown["workspace"])
    assert sorted(p.name for p in workspace.iterdir()) == [".git"]
    assert shown["isolation"]["isolation"] == "git"
    files = git("ls-tree", "--name-only", shown["isolation"]["branch"], cwd=workspace).stdout
    assert files.split() == ["t1.txt", "t2.txt", "t3.txt"]


def test_an_objective_alone_is_planned_and_run(live_server: Callable[..., Served]) -> None:
    served = live_server(plan_rule("make a greeting"), *work_rules("make a greeting"))

    hive = create(served, [], agents=1, objective="greet the reader")
    assert [t["title"] for t in tasks_in(served, hive["id"], "open") + tasks_in(
        served, hive["id"], "claimed")] == ["make a greeting"], "planned before the answer"
    wait_until(lambda: hive_of(served, hive["id"])["status"] == "done")

    [task] = served.store.list_tasks(hive["id"])
    assert task.title == "make a greeting"
    [planned] = served.store.events(hive["id"], kinds=["objective_planned"])
    assert planned.data["tasks"] == 1
    assert CostKind.COORDINATION in {e.kind for e in served.store.ledger(hive_id=hive["id"])}, \
        "the plan is metered as coordination"


def test_a_refused_plan_fails_the_hive_with_the_reason(
        live_server: Callable[..., Served]) -> None:
    served = live_server({"name": "prose", "match": {"system": "You plan work"},
                          "reply": {"content": "Sure! First, write a greeting."}})
    answer = served.client.post("/api/v2/hives", json={"objective": "greet", "agents": 1})
    assert answer.status_code == 422, answer.text
    assert "not a usable task list" in answer.json()["message"]
    [hive] = served.store.list_hives()
    assert hive.status.value == "failed"
    assert served.store.list_tasks(hive.id) == [], "nothing was posted"
    assert served.store.events(hive.id, kinds=["plan_refused"])


def test_pause_resume_and_cancel_over_http_act_on_the_running_engine(
        live_server: Callable[..., Served]) -> None:
    served = live_server(*work_rules("t1", delay=30))
    hive = create(served, ["t1"], agents=1)
    wait_until(lambda: bool(tasks_in(served, hive["id"], "claimed")))

    paused = served.client.post(f"/api/v2/hives/{hive['id']}/pause", json={"reason": "lunch"})

    assert paused.status_code == 200, paused.text
    assert (paused.json()["status"], paused.json()["pause_reason"]) == ("paused", "lunch")
    assert not tasks_in(served, hive["id"], "claimed"), "the claim in flight went back"
    released = served.client.get(f"/api/v2/hives/{hive['id']}/events").json()["events"]
    assert any(e["kind"] == "task_released" and "lunch" in e["data"]["reason"]
               for e in released)
    calls = served.gateway.chat_count
    stays_sync(lambda: served.gateway.chat_count == calls, what="a call while paused")
    assert not tasks_in(served, hive["id"], "claimed")

    served.gateway.set_rules(work_rules("t1"))
    resumed = served.client.post(f"/api/v2/hives/{hive['id']}/resume")
    assert resumed.status_code == 200
    assert resumed.json()["status"] == "running"
    wait_until(lambda: hive_of(served, hive["id"])["status"] == "done")
    assert served.gateway.chat_count > calls

    served.gateway.set_rules(work_rules("t2", delay=30))
    second = create(served, ["t2", "t3"], agents=1)
    wait_until(lambda: bool(tasks_in(served, second["id"], "claimed")))
    cancelled = served.client.post(f"/api/v2/hives/{second['id']}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert counted(hive_of(served, second["id"])) == {"cancelled": 2}
    assert second["id"] not in served.ctx.runner.hosting  # type: ignore[attr-defined]
    again = served.client.post(f"/api/v2/hives/{second['id']}/resume")
    assert again.status_code == 409


def test_a_hive_whose_config_the_engine_refuses_is_paused_with_the_reason(
        live_server: Callable[..., Served]) -> None:
    served = live_server()
    answer = served.client.post("/api/v2/hives", json={
        "objective": "anything", "agents": 1, "config": {"time_unit": "very fast"}})

    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["status"] == "paused"
    assert "'time_unit' must be a number" in body["pause_reason"]
    assert served.gateway.chat_count == 0


@pytest.mark.integration
@pytest.mark.slow
def test_sigterm_hands_claims_back_and_the_next_server_finishes_the_hive(
        tmp_path: Path) -> None:
    gateway = ScriptedGateway({"keys": [KEY], "cost": 0.0001, "rules": work_rules("t1", delay=60)})
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("RUFLO_", "OPENAI_", "LITELLM_", "DATABASE_URL", "TASK_MODEL"))}
    env.update(RUFLO_DATA_DIR=str(tmp_path / "data"), RUFLO_CONFIG="",
               OPENAI_BASE_URL=gateway.start(), OPENAI_API_KEY=KEY)
    try:
        with ServedProcess(env, tmp_path / "serve-1.log") as url:
            hive = httpx.post(f"{url}/api/v2/hives", json={
                "objective": "write t1", "agents": 1, "config": FAST,
                "tasks": [{"title": "t1"}]}, timeout=20).json()
            wait_until(lambda: bool(httpx.get(f"{url}/api/v2/hives/{hive['id']}/tasks",
                                              params={"state": "claimed"}).json()["tasks"]))
        # ServedProcess sent SIGTERM and saw the server exit within 10 s.
        store = open_store(load_settings(env))
        try:
            [task] = store.list_tasks(hive["id"])
            assert (task.state.value, task.assignee) == ("open", None), "the claim went back"
            assert store.get_hive(hive["id"]).status.value == "running"
            assert store.list_workers() == [], "the server signed out"
        finally:
            store.close()

        gateway.set_rules(work_rules("t1"))
        with ServedProcess(env, tmp_path / "serve-2.log") as url:
            wait_until(lambda: httpx.get(f"{url}/api/v2/hives/{hive['id']}").json()["status"]
                       == "done")
    finally:
        gateway.stop()


class ServedProcess:
    """`ruflo serve` in a subprocess on a free port (its log in a file); SIGTERM on exit, which
    must end it cleanly within 10 s."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.env = env
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> str:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", "from ruflo.cli import main; main()", "serve",
                 "--port", str(self.port)], env=self.env, stdout=log, stderr=log)
        url = f"http://127.0.0.1:{self.port}"

        def up() -> bool:
            assert self.process is not None
            assert self.process.poll() is None, self.log.read_text()
            try:
                return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(up, what="ruflo serve answered /healthz", explain=self.log.read_text)
        return url

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError("ruflo serve did not end within 10 s of SIGTERM:\n"
                                 + self.log.read_text()) from None
        # uvicorn re-raises the signal it caught once it has shut down cleanly.
        assert code in (0, -signal.SIGTERM), self.log.read_text()
        assert "Application shutdown complete" in self.log.read_text()
