"""The process adapter against a real small CLI written by the test, and the http adapter
against a local webhook server."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from ruflo.agents import Limits, OutcomeKind, executor_for, store_outcome
from ruflo.agents.commands import command_env
from ruflo.agents.sandbox import Sandbox, current_sandbox
from ruflo.errors import ConfigError
from ruflo.model import AdapterKind, Agent, TaskState

CLI = '''
import os, sys, time, signal
mode = sys.argv[1]
if mode == "stdin":
    prompt = sys.stdin.read()
elif mode == "arg":
    prompt = sys.argv[2]
elif mode == "file":
    prompt = open(sys.argv[2]).read()
elif mode == "stubborn":
    signal.signal(signal.SIGTERM, lambda *a: print("ignoring SIGTERM", flush=True))
    print("working...", flush=True)
    time.sleep(600)
if mode == "fail":
    print("cannot do it", file=sys.stderr)
    sys.exit(4)
for i in range(3):
    print(f"step {i}", flush=True)
open("done.txt", "w").write(prompt)
print("ENV " + " ".join(sorted(os.environ)))
print("GATEWAY " + os.environ.get("OPENAI_BASE_URL", "-"))
'''


@pytest.fixture
def cli(tmp_path: Path) -> Path:
    (tmp_path / "agent-cli").mkdir()
    script = tmp_path / "agent-cli" / "fake_agent.py"
    script.write_text(CLI)
    return script


def showing(folder: Path) -> Sandbox:
    """This process's sandbox, also showing `folder` (read-only) where the agent's program is:
    as RUFLO_SANDBOX_READ would for an agent installed outside PATH."""
    return current_sandbox().with_extras(readable=[folder])


def process_agent(cli: Path, *args: str, **config: Any) -> Agent:
    return Agent(id="a1", hive_id="h1", name="outside", adapter=AdapterKind.PROCESS,
                 adapter_config={"command": [sys.executable, str(cli), *args], **config})


@pytest.mark.integration
@pytest.mark.parametrize(("args", "via"), [(("stdin",), "stdin"), (("arg", "{prompt}"), "argument"),
                                           (("file", "{prompt_file}"), "file")])
async def test_process_adapter_passes_the_prompt(make_board, cli, monkeypatch, args, via,
                                                 scripted, gateway_for):
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_secret")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-virtual")
    board = make_board(agent=process_agent(cli, *args), title="Write done.txt",
                       verify="test -s done.txt")
    client = gateway_for(scripted({"default": {"content": "unused"}}), board.store)

    outcome = await executor_for(board.agent).run(
        board.task, board.agent, board.hive,
        board.context(client, env=command_env(), sandbox=showing(cli.parent)))

    assert outcome.kind is OutcomeKind.COMPLETE
    assert outcome.verified is True
    assert "Task: Write done.txt" in (board.workspace / "done.txt").read_text()
    started = board.transcript("process_started")[0].data
    assert started["prompt_via"] == via
    streamed = "".join(e.data["text"] for e in board.transcript("process_output"))
    assert "step 0\nstep 1\nstep 2\n" in streamed
    env_line = next(line for line in streamed.splitlines() if line.startswith("ENV "))
    names = set(env_line.split()[1:])
    assert {"OPENAI_BASE_URL", "OPENAI_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY"} \
        <= names  # the relay's address and the attempt's token, under both SDKs' names
    assert not names & {"GITHUB_TOKEN", "HOME"}
    assert "sk-ant" not in streamed
    assert "sk-virtual" not in streamed
    assert "GATEWAY http://127.0.0.1:" in streamed
    exited = board.transcript("process_exited")[0].data
    assert exited["exit_code"] == 0
    assert exited["timed_out"] is False
    finished = store_outcome(board.store, board.task, board.agent, outcome)
    assert finished is not None
    assert finished.state is TaskState.DONE


@pytest.mark.integration
async def test_process_adapter_timeout_with_grace(make_board, cli):
    board = make_board(agent=process_agent(cli, "stubborn", timeout=1, grace=0.5))

    outcome = await executor_for(board.agent).run(board.task, board.agent, board.hive,
                                                  board.context(sandbox=showing(cli.parent)))

    assert outcome.kind is OutcomeKind.FAILED
    assert "timed out after 1s" in (outcome.reason or "")
    streamed = "".join(e.data["text"] for e in board.transcript("process_output"))
    assert "working..." in streamed
    assert "ignoring SIGTERM" in streamed
    exited = board.transcript("process_exited")[0].data
    assert exited["timed_out"] is True
    assert exited["exit_code"] == -9


@pytest.mark.integration
async def test_process_adapter_failure_and_bad_config(make_board, cli):
    board = make_board(agent=process_agent(cli, "fail"))
    outcome = await executor_for(board.agent).run(board.task, board.agent, board.hive,
                                                  board.context(sandbox=showing(cli.parent)))
    assert outcome.kind is OutcomeKind.FAILED
    assert "exited with 4" in (outcome.reason or "")
    assert "cannot do it" in (outcome.result or "")

    broken = replace(board.agent, adapter_config={})
    with pytest.raises(ConfigError, match="no command"):
        await executor_for(broken).run(board.task, broken, board.hive, board.context())


@pytest.mark.integration
async def test_process_output_flood_is_bounded_in_the_transcript(make_board, tmp_path):
    flood = tmp_path / "agent-cli" / "flood.py"
    flood.parent.mkdir()
    flood.write_text("import sys\nfor i in range(200000): print('line', i)\n")
    agent = Agent(id="a1", hive_id="h1", name="noisy", adapter=AdapterKind.PROCESS,
                  adapter_config={"command": [sys.executable, str(flood)]})
    board = make_board(agent=agent)

    outcome = await executor_for(agent).run(board.task, agent, board.hive,
                                            board.context(limits=Limits(command_output_bytes=4000),
                                                          sandbox=showing(flood.parent)))

    assert outcome.kind is OutcomeKind.COMPLETE
    outputs = board.transcript("process_output")
    assert len(outputs) <= 201
    assert outputs[-1].data["dropped_chars"] > 0
    assert board.transcript("process_exited")[0].data["output_bytes"] > 2_000_000


class Hook(BaseHTTPRequestHandler):
    answers: ClassVar[list[tuple[int, str]]] = []
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hook.received.append({"body": json.loads(body), "auth": self.headers.get("Authorization")})
        status, text = Hook.answers.pop(0)
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[str]:
    Hook.answers, Hook.received = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


def http_agent(url: str) -> Agent:
    return Agent(id="a1", hive_id="h1", name="hooked", adapter=AdapterKind.HTTP,
                 adapter_config={"url": url, "headers": {"Authorization": "Bearer hook-key"}})


async def test_http_adapter_posts_the_task_and_records_the_answer(make_board, webhook):
    board = make_board(agent=http_agent(webhook), title="Summarise the logs")
    Hook.answers = [(200, json.dumps({"outcome": "complete", "result": "3 errors found"}))]

    outcome = await executor_for(board.agent).run(board.task, board.agent, board.hive,
                                                  board.context())

    assert outcome.kind is OutcomeKind.COMPLETE
    assert outcome.result == "3 errors found"
    sent = Hook.received[0]
    assert sent["auth"] == "Bearer hook-key"
    assert sent["body"]["task"]["title"] == "Summarise the logs"
    assert "adapter_config" not in sent["body"]["agent"]
    assert "Task: Summarise the logs" in sent["body"]["prompt"]
    assert board.transcript("http_response")[0].data["status"] == 200


@pytest.mark.parametrize(("answer", "kind", "text"), [
    ((200, "plain text answer"), OutcomeKind.COMPLETE, "plain text answer"),
    ((200, json.dumps({"outcome": "abstain", "reason": "not mine"})), OutcomeKind.ABSTAIN,
     "not mine"),
    ((500, "boom"), OutcomeKind.FAILED, "answered 500"),
    ((200, json.dumps({"outcome": "delegate"})), OutcomeKind.FAILED, "does not accept"),
])
async def test_http_adapter_answers(make_board, webhook, answer, kind, text):
    board = make_board(agent=http_agent(webhook))
    Hook.answers = [answer]
    outcome = await executor_for(board.agent).run(board.task, board.agent, board.hive,
                                                  board.context())
    assert outcome.kind is kind
    assert text in f"{outcome.result} {outcome.reason}"


async def test_http_adapter_unreachable(make_board):
    board = make_board(agent=http_agent("http://127.0.0.1:9/hook"))
    outcome = await executor_for(board.agent).run(board.task, board.agent, board.hive,
                                                  board.context())
    assert outcome.kind is OutcomeKind.FAILED
    assert "could not be reached" in (outcome.reason or "")


@pytest.mark.parametrize("adapter", [AdapterKind.HTTP, AdapterKind.A2A])
@pytest.mark.parametrize(("config", "refusal"), [
    ({}, "no http\\(s\\)"),
    ({"url": "ftp://nowhere"}, "no http\\(s\\)"),
    ({"url": "http://127.0.0.1:9", "headers": {"X-N": 1}}, "headers must map"),
    ({"url": "http://127.0.0.1:9", "headers": ["X-N"]}, "headers must map"),
])
async def test_outside_adapters_refuse_a_bad_endpoint(make_board, adapter, config, refusal):
    board = make_board()
    agent = replace(board.agent, adapter=adapter, adapter_config=config)
    with pytest.raises(ConfigError, match=f"agent {agent.name}.*{refusal}"):
        await executor_for(agent).run(board.task, agent, board.hive, board.context())
