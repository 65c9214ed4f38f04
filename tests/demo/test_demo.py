"""`ruflo demo` as a person meets it: a real subprocess that compares the built-in workloads on the
ScriptedGateway, serves the UI on a free port until SIGTERM, and fails plainly when a step can't
be done (busy port, refused key, bad data dir) without running anything."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import IO

import httpx
import pytest

from ruflo.cli import run
from ruflo.compare.workloads import BUILTIN, builtin_path, gateway_rules
from ruflo.config import load_settings
from ruflo.demo import CHAT_REPLY, demo_sandbox, demo_settings
from ruflo.gateway.scripted import ScriptedGateway
from ruflo.workload import load_workload
from waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
RUFLO = [sys.executable, "-m", "ruflo"] if (ROOT / "src/ruflo/__main__.py").is_file() \
    else [str(Path(sys.executable).parent / "ruflo")]
NOT_REAL = "not a real model"


def clean_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENAI_BASE_URL", "LITELLM_BASE_URL", "OPENAI_API_KEY", "DATABASE_URL",
                        "RUFLO_CONFIG", "RUFLO_WORKSPACE")}
    env.update(RUFLO_DATA_DIR=str(data_dir), RUFLO_LEASE_SECONDS="2", COLUMNS="120", **extra)
    return env


@pytest.fixture
def scrubbed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """In-process runs: no gateway, no Postgres, a temp data dir."""
    for var in ("OPENAI_BASE_URL", "LITELLM_BASE_URL", "OPENAI_API_KEY", "DATABASE_URL",
                "RUFLO_CONFIG", "RUFLO_WORKSPACE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("RUFLO_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def read_until(stream: IO[str], pattern: str, seconds: float, seen: list[str]) -> re.Match[str]:
    """Lines of the stream until one matches (the demo prints its URL once it serves)."""
    deadline = time.monotonic() + seconds
    for line in stream:
        seen.append(line)
        found = re.search(pattern, line)
        if found:
            return found
        if time.monotonic() > deadline:
            break
    raise AssertionError(f"no line matching {pattern!r}; stdout was:\n{''.join(seen)}")


@pytest.fixture
def demo_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    process = subprocess.Popen([*RUFLO, "demo", "--port", "0"], cwd=tmp_path,
                               env=clean_env(tmp_path / "data"), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        yield process, tmp_path / "data"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


@pytest.mark.slow
def test_demo_compares_serves_the_report_and_hives_and_stops_cleanly(
        demo_process: tuple[subprocess.Popen[str], Path]) -> None:
    process, data = demo_process
    assert process.stdout is not None
    assert process.stderr is not None
    seen: list[str] = []
    url = read_until(process.stdout, r"serving at (http://127\.0\.0\.1:\d+)/", 240, seen)[1]
    report_id = read_until(process.stdout, rf"report: {re.escape(url)}/reports/(\S+)", 5, seen)[1]
    printed = "".join(seen)

    # Its own data dir under the normal one: nothing of the demo lands beside real hives.
    demo = data / "demo"
    assert (demo / "ruflo.db").is_file()
    assert not (data / "ruflo.db").exists()
    report = json.loads((demo / "reports" / report_id / "report.json").read_text())
    assert report["settings"]["gateway"]["kind"] == "scripted"
    runs = report["runs"]
    assert {(r["workload"], r["mode"]) for r in runs} == {
        (w, m) for w in BUILTIN for m in ("swarm", "company", "solo")}
    # Every mode runs for real, company included (its engine plans through the script).
    assert {r["status"] for r in runs} == {"ok"}, [(r["id"], r["status"]) for r in runs]
    assert report["unavailable"] == []
    assert all(r["metrics"]["success"] for r in runs)
    for entry in runs:
        coordination = entry["metrics"]["coordination_tokens"]
        assert coordination > 0 if entry["mode"] == "company" else coordination == 0
    assert report["settings"]["auto_approval"] == dict.fromkeys(
        ("budget_override", "hire", "strategy"), "reject")
    # The results table says what the report says: the scripted swarm verifies the ticket.
    assert next(r for r in runs if r["id"] == "ticket/swarm/0/baseline")["metrics"]["success"]
    rows = [line for line in printed.splitlines() if "ticket" in line and "swarm" in line]
    assert len(rows) == 1, printed
    assert "yes" in rows[0]

    with httpx.Client(base_url=url, timeout=10) as http:
        listing = http.get("/reports")
        assert listing.status_code == 200
        assert f'href="/reports/{report_id}"' in listing.text
        page = http.get(f"/reports/{report_id}")
        assert page.status_code == 200, page.text[:500]
        for entry in runs:
            assert entry["id"] in page.text
            if entry["status"] == "ok":
                assert entry["hive_id"] in page.text
        assert NOT_REAL in page.text

        swarm_ticket = next(r for r in runs if r["id"] == "ticket/swarm/0/baseline")
        hive_id = swarm_ticket["hive_id"]
        hive_page = http.get(f"/hives/{hive_id}")
        assert hive_page.status_code == 200
        assert hive_id in hive_page.text
        assert NOT_REAL in hive_page.text
        # The page's script fills the board from this API.
        tasks = http.get(f"/api/v2/hives/{hive_id}/tasks").json()["tasks"]
        titles = {task["title"] for task in tasks}
        assert {t.title for t in load_workload(builtin_path("ticket")).tasks} <= titles
        assert {task["state"] for task in tasks} == {"done"}
        company = next(r for r in runs if r["id"] == "ticket/company/0/baseline")
        assert http.get(f"/hives/{company['hive_id']}").status_code == 200
        tickets = http.get(f"/api/v2/hives/{company['hive_id']}/tasks").json()["tasks"]
        assert {t.title for t in load_workload(builtin_path("ticket")).tasks} < \
            {task["title"] for task in tickets}, "the root's plan, one ticket per task"
        assert {task["state"] for task in tickets} == {"done"}
        listed = {h["id"] for h in http.get("/api/v2/hives").json()["hives"]}
        assert {r["hive_id"] for r in runs if r["status"] == "ok"} <= listed

        # Chat answers too, and say plainly they come from a script.
        created = http.post("/api/v2/conversations", json={})
        assert created.status_code == 201, created.text
        conversation = created.json()["conversationId"]
        sent = http.post(f"/api/v2/conversations/{conversation}/messages",
                         json={"inputs": "What can you do?"})
        assert sent.status_code == 200, sent.text
        thread = http.get(f"/api/v2/conversations/{conversation}").json()["messages"]
        assert thread[-1]["from"] == "assistant"
        assert CHAT_REPLY in thread[-1]["content"]

    stopped_at = time.monotonic()
    process.send_signal(signal.SIGTERM)
    code = process.wait(15)
    took = time.monotonic() - stopped_at
    errors = process.stderr.read()
    assert code == 0, errors[-3000:]
    assert took < 10, f"the demo took {took:.1f} s to stop"
    assert "stopped by SIGTERM" in errors
    assert NOT_REAL in errors
    assert "unavailable" not in errors
    with pytest.raises(httpx.TransportError):
        httpx.get(url + "/healthz", timeout=2)


@pytest.mark.slow
def test_sigterm_during_the_comparison_stops_it_and_leaves_no_hive_running(
        demo_process: tuple[subprocess.Popen[str], Path]) -> None:
    process, data = demo_process
    assert process.stderr is not None
    seen: list[str] = []
    read_until(process.stderr, r"comparing ticket", 240, seen)
    database = data / "demo" / "ruflo.db"
    wait_until(lambda: _hive_statuses(database), what="no hive was created")
    process.send_signal(signal.SIGTERM)
    code = process.wait(30)
    errors = "".join(seen) + process.stderr.read()
    assert code == 128 + signal.SIGTERM, errors[-3000:]
    assert "stopped by SIGTERM" in errors
    assert "nothing was served" in errors
    statuses = _hive_statuses(database)
    assert statuses
    assert "running" not in statuses
    assert not list((data / "demo" / "reports").glob("*/report.json"))


def _hive_statuses(database: Path) -> list[str]:
    if not database.is_file():
        return []
    with closing(sqlite3.connect(database)) as db:
        try:
            return [row[0] for row in db.execute("SELECT status FROM hives")]
        except sqlite3.OperationalError:  # the schema is still being created
            return []


@pytest.mark.slow
def test_demo_with_openai_base_url_uses_that_gateway(tmp_path: Path) -> None:
    rules = gateway_rules([builtin_path(name) for name in BUILTIN])
    with ScriptedGateway({"rules": rules, "keys": ["sk-demo-key"], "cost": 0.0002}) as gateway_url:
        done = subprocess.run(
            [*RUFLO, "demo", "--no-serve", "--json"], cwd=tmp_path, capture_output=True,
            text=True, timeout=600,
            env=clean_env(tmp_path / "data", OPENAI_BASE_URL=gateway_url,
                          OPENAI_API_KEY="sk-demo-key"))
    assert done.returncode == 0, done.stderr[-3000:]
    facts = json.loads(done.stdout)
    assert facts["scripted"] is False
    assert facts["notice"] is None
    report = json.loads(Path(facts["report"]).read_text())
    assert report["settings"]["gateway"] == {"kind": "configured", "url": gateway_url,
                                             "source": "OPENAI_BASE_URL"}
    assert NOT_REAL not in done.stderr
    assert any(r["status"] == "ok" for r in report["runs"])


def test_a_refused_key_fails_the_gateway_step_before_anything_runs(
        scrubbed: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    with ScriptedGateway({"keys": ["sk-good"]}) as gateway_url:
        monkeypatch.setenv("OPENAI_BASE_URL", gateway_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-revoked")
        assert run(["demo", "--no-serve"]) == 2
    err = capsys.readouterr().err
    assert "failed: starting the gateway" in err
    assert "refused the key" in err
    assert "comparing" not in err
    assert not (scrubbed / "demo" / "reports").exists()


def test_a_gateway_without_a_key_says_what_to_set(
        scrubbed: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    assert run(["demo", "--no-serve"]) == 2
    err = capsys.readouterr().err
    assert "OPENAI_API_KEY is not" in err
    assert "ScriptedGateway" in err
    assert not (scrubbed / "demo" / "reports").exists()


def test_a_busy_port_fails_before_the_comparison(
        scrubbed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert run(["demo", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err
    assert "--port" in err
    assert "comparing" not in err
    assert not (scrubbed / "demo" / "ruflo.db").exists()


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_an_open_bind_without_auth_is_refused(
        scrubbed: Path, host: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["demo", "--host", host, "--port", "0"]) == 2
    assert "refusing to listen" in capsys.readouterr().err
    assert not (scrubbed / "demo" / "ruflo.db").exists()


def test_a_data_dir_that_is_a_file_is_reported(
        scrubbed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("mine\n")
    assert run(["demo", "--no-serve", "--data-dir", str(blocker)]) == 2
    err = capsys.readouterr().err
    assert "failed: reading settings" in err
    assert blocker.read_text() == "mine\n"


def test_demo_settings_keep_the_demo_apart(tmp_path: Path) -> None:
    normal = load_settings({"RUFLO_DATA_DIR": str(tmp_path / "real"),
                            "DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/real",
                            "RUFLO_WORKSPACE": str(tmp_path / "real-work")})
    demo = demo_settings(normal, None)
    assert demo.data_dir == tmp_path / "real" / "demo"
    assert demo.store_url == f"sqlite:///{tmp_path / 'real' / 'demo' / 'ruflo.db'}"
    assert demo.workspace_dir == tmp_path / "real" / "demo" / "workspace"
    assert "demo" in demo.sources["data_dir"]
    # The real settings are untouched.
    assert normal.database_url is not None
    assert normal.sources["data_dir"] == "env RUFLO_DATA_DIR"
    chosen = demo_settings(normal, tmp_path / "elsewhere")
    assert chosen.data_dir == tmp_path / "elsewhere"
    assert chosen.sources["data_dir"] == "--data-dir"


def test_without_bubblewrap_the_scripted_demo_runs_unconfined_and_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "no-bwrap"))
    default = load_settings({"RUFLO_CONFIG": "", "RUFLO_DATA_DIR": str(tmp_path)})
    scripted = demo_sandbox(default, scripted=True)
    assert not scripted.confines
    assert scripted.refusal is None
    line = scripted.describe()
    assert "NOT SANDBOXED (ruflo demo on the ScriptedGateway: bubblewrap (bwrap) is not " \
           "installed; every command is the demo's own script" in line
    # A real model's commands, or an explicit setting: no sandbox stays a refusal.
    assert demo_sandbox(default, scripted=False).refusal is not None
    for mode in ("auto", "bwrap"):
        explicit = load_settings({"RUFLO_CONFIG": "", "RUFLO_SANDBOX": mode})
        assert demo_sandbox(explicit, scripted=True).refusal is not None


def test_with_bubblewrap_the_demo_is_sandboxed() -> None:
    for scripted in (True, False):
        sandbox = demo_sandbox(load_settings({"RUFLO_CONFIG": ""}), scripted=scripted)
        assert sandbox.confines, sandbox.describe()


def test_a_real_gateway_without_a_sandbox_stops_before_anything_runs(
        scrubbed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    with ScriptedGateway({"keys": ["sk-good"]}) as gateway_url:
        monkeypatch.setenv("OPENAI_BASE_URL", gateway_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-good")
        monkeypatch.setenv("PATH", str(tmp_path / "no-bwrap"))
        assert run(["demo", "--no-serve"]) == 2
    err = capsys.readouterr().err
    assert "commands are refused: bubblewrap (bwrap) is not installed" in err
    assert "RUFLO_SANDBOX=off" in err
    assert not (scrubbed / "demo" / "reports").exists()
