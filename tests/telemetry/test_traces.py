"""Traces of a scripted hive: none (and no OpenTelemetry import) without the OTEL_* variables;
with them, the whole trace in a real OTLP receiver (Arize Phoenix, from PyPI, in its own
virtualenv: scripts/install puts it in .venv-phoenix), its GenAI attributes equal to the ledger.
JSON log lines carry the ids."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
HIVE = Path(__file__).with_name("scripted_hive.py")
RELAYED = Path(__file__).with_name("relay_hive.py")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OTEL_", "RUFLO_", "OPENAI_", "LITELLM_", "DATABASE_URL"))}
    env["PYTHONPATH"] = str(ROOT / "src")
    env["RUFLO_SANDBOX"] = "off"
    env.update(extra)
    return env


def run_hive(folder: Path, script: Path = HIVE, **extra: str) -> tuple[dict[str, Any], str]:
    done = subprocess.run([sys.executable, str(script), str(folder)], env=_env(**extra),
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("SUMMARY "))
    return json.loads(line[len("SUMMARY "):]), done.stderr


def test_without_the_variables_nothing_of_opentelemetry_is_imported(tmp_path: Path) -> None:
    summary, _ = run_hive(tmp_path)
    assert summary["status"] == "done"
    assert summary["modules"] == []
    assert summary["config"] == {}
    assert summary["traceparents"] == [None] * 4


def test_relayed_calls_without_the_variables_import_nothing_of_opentelemetry(
        tmp_path: Path) -> None:
    summary, _ = run_hive(tmp_path, RELAYED)
    assert summary["status"] == "done"
    assert len(summary["ledger"]) == 12
    assert summary["modules"] == []
    assert summary["traceparents"] == [None] * 12, "no traceparent header to the gateway"


def test_json_log_lines_parse_and_carry_the_ids(tmp_path: Path) -> None:
    summary, stderr = run_hive(tmp_path, RUFLO_LOG_FORMAT="json")
    lines = [json.loads(x) for x in stderr.splitlines() if x.strip()]
    assert lines, "no log lines"
    assert any(x["message"] == "hive ended" for x in lines)
    assert all({"ts", "level", "logger", "message"} <= x.keys() for x in lines)
    assert summary["modules"] == []
    calls = [x for x in lines if x["message"] == "calling the gateway"]
    assert len(calls) == 4
    assert {(x["hive_id"], x["agent_id"]) for x in calls} == {("h1", "a1")}
    assert sorted({x["task_id"] for x in calls}) == ["t1", "t2"]
    assert all("trace_id" not in x for x in lines), "untraced"


def test_json_log_lines_carry_the_trace_when_traced(tmp_path: Path) -> None:
    summary, stderr = run_hive(tmp_path, RUFLO_LOG_FORMAT="json", OTEL_TRACES_EXPORTER="console")
    trace_id = summary["config"]["traceparent"].split("-")[1]
    lines = [json.loads(x) for x in stderr.splitlines() if x.startswith("{")]
    calls = [x for x in lines if x["message"] == "calling the gateway"]
    assert len(calls) == 4
    assert {x["trace_id"] for x in calls} == {trace_id}
    assert len({x["span_id"] for x in calls}) == 4, "each within its own turn's span"


def _phoenix() -> str:
    found = os.environ.get("RUFLO_PHOENIX") or str(ROOT / ".venv-phoenix" / "bin" / "phoenix")
    if Path(found).exists():
        return found
    message = f"Arize Phoenix is not installed at {found}: scripts/install puts it there"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("phoenix")
    port, grpc = _free_port(), _free_port()
    env = {**os.environ, "PHOENIX_HOST": "127.0.0.1", "PHOENIX_PORT": str(port),
           "PHOENIX_GRPC_PORT": str(grpc), "PHOENIX_WORKING_DIR": str(folder)}
    log = (folder / "phoenix.log").open("w")
    process = subprocess.Popen([_phoenix(), "serve"], env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, (folder / "phoenix.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "Phoenix did not start in 240 s"
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def spans_of(url: str, trace_id: str) -> list[dict[str, Any]]:
    spans: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 1000}
        if cursor:
            params["cursor"] = cursor
        page = httpx.get(f"{url}/v1/projects/default/spans", params=params, timeout=10).json()
        spans += [s for s in page["data"] if s["context"]["trace_id"] == trace_id]
        cursor = page.get("next_cursor")
        if not cursor:
            return spans


@pytest.mark.integration
@pytest.mark.slow
def test_a_scripted_hive_is_one_whole_trace_in_phoenix(phoenix: str, tmp_path: Path) -> None:
    summary, _ = run_hive(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=phoenix,
                          OTEL_SERVICE_NAME="ruflo-test")
    assert summary["status"] == "done"
    assert "opentelemetry.sdk" in summary["modules"]
    _, trace_id, hive_span, _ = summary["config"]["traceparent"].split("-")
    assert all(tp.split("-")[1] == trace_id for tp in summary["traceparents"])
    spans: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    while len(spans) < 19 and time.monotonic() < deadline:  # Phoenix stores spans in batches
        spans = spans_of(phoenix, trace_id)
        time.sleep(0.2)
    names = sorted(s["name"] for s in spans)
    # hive, 2 x (claim, attempt, 2 turns, 2 model calls, 2 tool calls)
    assert len(spans) == 1 + 2 * 8, names
    by_id = {s["context"]["span_id"]: s for s in spans}
    root = by_id[hive_span]
    assert root["name"] == "hive traced"
    assert root["parent_id"] is None
    attempts = [s for s in spans if s["name"].startswith("attempt ")]
    claims = [s for s in spans if s["name"] == "claim"]
    assert len(attempts) == 2
    assert len(claims) == 2
    assert all(s["parent_id"] == hive_span for s in attempts + claims)
    turns = [s for s in spans if s["name"].startswith("turn ")]
    assert {by_id[t["parent_id"]]["name"] for t in turns} == {"attempt one", "attempt two"}
    calls = [s for s in spans if s["attributes"].get("gen_ai.operation.name") == "chat"]
    tools = [s for s in spans if s["attributes"].get("gen_ai.operation.name") == "execute_tool"]
    assert len(calls) == 4
    assert len(tools) == 4
    assert all(by_id[s["parent_id"]]["name"].startswith("turn ") for s in calls + tools)
    for call in calls:
        attributes = call["attributes"]
        assert attributes["gen_ai.request.model"] == "gpt-4o-mini"
        assert attributes["gen_ai.response.model"] == "gpt-4o-mini"
        assert attributes["gen_ai.provider.name"] == "openai"
        assert "gen_ai.input.messages" not in attributes, "content only when opted in"
    traced = sorted((c["attributes"]["gen_ai.usage.input_tokens"],
                     c["attributes"]["gen_ai.usage.output_tokens"],
                     c["attributes"]["ruflo.cost"]) for c in calls)
    ledger = sorted((prompt, completion, cost) for _, prompt, completion, cost
                    in summary["ledger"])
    assert traced == ledger


@pytest.mark.integration
@pytest.mark.slow
def test_an_outside_agents_relayed_calls_are_model_calls_under_its_attempt(
        phoenix: str, tmp_path: Path) -> None:
    summary, _ = run_hive(tmp_path, RELAYED, OTEL_EXPORTER_OTLP_ENDPOINT=phoenix,
                          OTEL_SERVICE_NAME="ruflo-test")
    assert summary["status"] == "done"
    _, trace_id, hive_span, _ = summary["config"]["traceparent"].split("-")
    spans: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    while len(spans) < 17 and time.monotonic() < deadline:  # Phoenix stores spans in batches
        spans = spans_of(phoenix, trace_id)
        time.sleep(0.2)
    names = sorted(s["name"] for s in spans)
    assert len(spans) == 1 + 2 * 8, names  # hive, 2 x (claim, attempt, six relayed calls)
    by_id = {s["context"]["span_id"]: s for s in spans}
    assert by_id[hive_span]["name"] == "hive relayed"
    attempts = {s["attributes"]["ruflo.task.id"]: s for s in spans
                if s["name"].startswith("attempt ")}
    assert sorted(attempts) == ["t1", "t2"]
    assert all(s["parent_id"] == hive_span for s in attempts.values())
    calls = [s for s in spans if s["attributes"].get("gen_ai.operation.name") == "chat"]
    assert len(calls) == 12
    for call in calls:
        attributes = call["attributes"]
        task = attributes["ruflo.task.id"]
        assert call["parent_id"] == attempts[task]["context"]["span_id"], "under its attempt"
        assert call["name"] == "chat m"
        assert attributes["gen_ai.request.model"] == "m"
        assert attributes["gen_ai.response.model"] == "m"
        assert attributes["gen_ai.provider.name"] == "openai"
        assert (attributes["ruflo.hive.id"], attributes["ruflo.agent.id"]) == ("h1", "a1")
        assert call["status_code"] != "ERROR"
    assert sorted(c["attributes"]["ruflo.relay.protocol"] for c in calls) == sorted(
        ["chat", "messages", "responses"] * 4)
    traced = sorted((c["attributes"]["ruflo.task.id"],
                     c["attributes"]["gen_ai.usage.input_tokens"],
                     c["attributes"]["gen_ai.usage.output_tokens"],
                     c["attributes"].get("ruflo.cost", -1.0)) for c in calls)
    ledger = sorted((task, prompt, completion, -1.0 if cost is None else cost)
                    for task, prompt, completion, cost in summary["ledger"])
    assert traced == ledger
    # Each forwarded request carried its own call's span as the traceparent.
    assert {tp.split("-")[1] for tp in summary["traceparents"]} == {trace_id}
    carried = sorted(tp.split("-")[2] for tp in summary["traceparents"])
    assert carried == sorted(c["context"]["span_id"] for c in calls)


def test_asked_without_the_extra_is_one_line_and_untraced(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['opentelemetry.sdk'] = None\n"
            "from ruflo import telemetry\n"
            "print(telemetry.describe()); print(telemetry.tracing_on())\n"
            "with telemetry.span('x') as s: s.set('k', 1)\n"
            "print(dict(telemetry.headers()))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=_env(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9"),
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    line, on, headers = done.stdout.splitlines()
    assert "pip install 'ruflo[otel]'" in line
    assert line.startswith("tracing: asked by the OTEL_* variables")
    assert (on, headers) == ("False", "{}")
    assert done.stderr.count("pip install 'ruflo[otel]'") == 1
