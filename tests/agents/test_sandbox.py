"""The sandbox around agents' commands, verify and outside agents: writes outside the attempt's
folder, reads of files outside it and network connections are refused; an outside agent reaches
the gateway through the relay and nothing else; no sandbox means refusal unless opted out."""

from __future__ import annotations

import socket
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ruflo.agents import OutcomeKind, executor_for, verify_task
from ruflo.agents.commands import command_env, run_command
from ruflo.agents.sandbox import Sandbox, SandboxMode, sandbox_for
from ruflo.config import load_settings
from ruflo.errors import ConfigError
from ruflo.gateway.client import GatewayClient
from ruflo.model import AdapterKind, Agent

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(tmp_path: Path) -> object:
    (tmp_path / "data").mkdir()
    return load_settings({"RUFLO_CONFIG": "", "RUFLO_DATA_DIR": str(tmp_path / "data")})


@pytest.fixture
def sandbox(settings: object) -> Sandbox:
    confined = sandbox_for(settings)  # type: ignore[arg-type]
    assert confined.confines, confined.describe()  # scripts/install installs bubblewrap
    return confined


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP port on loopback, outside any sandbox, that accepts and says hello."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            accepted.append(client)
            client.sendall(b"hello\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    server.close()
    for client in accepted:
        client.close()


async def test_writes_outside_the_attempts_folder_are_refused(workspace: Path, tmp_path: Path,
                                                              sandbox: Sandbox) -> None:
    sibling = tmp_path / "sibling"
    sibling.mkdir()
    home_file = Path.home() / f".ruflo-sandbox-test-{uuid.uuid4().hex}"
    targets = [sibling / "planted.txt", tmp_path / "data" / "planted.txt", home_file,
               Path("/usr/planted.txt"), Path("/etc/planted.txt")]
    script = "; ".join(f"echo x > {target} && echo WROTE {target}" for target in targets)
    try:
        result = await run_command(f"{script}; echo inside > mine.txt", cwd=workspace,
                                   env=command_env(), sandbox=sandbox)
        assert "WROTE /usr" not in result.output
        assert "Read-only file system" in result.output
        for target in targets:
            assert not target.exists(), target
        assert (workspace / "mine.txt").read_text() == "inside\n"
    finally:
        for target in targets:  # were the sandbox broken, leave the machine as it was
            target.unlink(missing_ok=True)


async def test_files_outside_the_attempts_folder_cant_be_read(workspace: Path, tmp_path: Path,
                                                               settings: object) -> None:
    secret = tmp_path / "elsewhere" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("TOP-SECRET-1\n")
    store = tmp_path / "data" / "ruflo.db"
    store.write_text("TOP-SECRET-2\n")
    home_file = Path.home() / f".ruflo-sandbox-test-{uuid.uuid4().hex}"
    home_file.write_text("TOP-SECRET-3\n")
    # The data dir stays hidden even inside a folder the operator shows (RUFLO_SANDBOX_READ).
    shown = sandbox_for(settings).with_extras(readable=[tmp_path])  # type: ignore[arg-type]
    try:
        for target in (secret, store, home_file, Path("/etc/shadow")):
            result = await run_command(["cat", str(target)], cwd=workspace, env=command_env(),
                                       sandbox=sandbox_for(settings))  # type: ignore[arg-type]
            assert result.exit_code != 0, target
            assert "No such file or directory" in result.output
            assert "TOP-SECRET" not in result.output
        hidden = await run_command(["cat", str(store)], cwd=workspace, env=command_env(),
                                   sandbox=shown)
        assert hidden.exit_code != 0
        assert "TOP-SECRET" not in hidden.output
        seen = await run_command(["cat", str(secret)], cwd=workspace, env=command_env(),
                                 sandbox=shown)
        assert seen.output == "TOP-SECRET-1\n"  # what the operator shows can be read
    finally:
        home_file.unlink()


async def test_no_network_for_commands_and_verify(workspace: Path, listener: int,
                                                  sandbox: Sandbox, make_board) -> None:
    connect = (f"{sys.executable} -c \"import socket; s = socket.create_connection("
               f"('127.0.0.1', {listener}), timeout=5); print(s.recv(6))\"")
    outside = await run_command(connect, cwd=workspace, env=command_env(),
                                sandbox=Sandbox(SandboxMode.OFF))
    assert outside.output == "b'hello\\n'\n"  # the listener answers anyone not in the sandbox
    inside = await run_command(connect, cwd=workspace, env=command_env(), sandbox=sandbox)
    assert inside.exit_code != 0
    assert "Connection refused" in inside.output
    names = await run_command(f"{sys.executable} -c \"import socket; "
                              f"socket.create_connection(('example.com', 80), timeout=5)\"",
                              cwd=workspace, env=command_env(), sandbox=sandbox)
    assert names.exit_code != 0
    # The local Postgres, by TCP and by its Unix socket (a path outside the sandbox).
    postgres = await run_command(
        f"{sys.executable} -c \"import socket; socket.create_connection(('127.0.0.1', 5432), "
        f"timeout=5)\"; test -S /var/run/postgresql/.s.PGSQL.5432 && echo SOCKET SEEN",
        cwd=workspace, env=command_env(), sandbox=sandbox)
    assert "Connection refused" in postgres.output
    assert "SOCKET SEEN" not in postgres.output

    board = make_board(verify=connect)
    verdict = await verify_task(board.task, board.context(sandbox=sandbox))
    assert verdict is not None
    assert not verdict.passed
    assert "Connection refused" in verdict.output


async def test_verify_runs_in_the_sandbox_with_its_folder_writable(make_board, tmp_path: Path,
                                                                   sandbox: Sandbox) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("x")
    board = make_board(verify=f"echo built > out.txt && test ! -e {secret}")
    verdict = await verify_task(board.task, board.context(sandbox=sandbox))
    assert verdict is not None
    assert verdict.passed, verdict
    assert (board.workspace / "out.txt").read_text() == "built\n"


AGENT = '''
import json, os, socket, sys, urllib.request
base = os.environ["OPENAI_BASE_URL"]
request = urllib.request.Request(
    base + "/chat/completions", method="POST",
    data=json.dumps({"model": "gpt-4o-mini",
                     "messages": [{"role": "user", "content": "hello"}]}).encode(),
    headers={"Authorization": "Bearer " + os.environ["OPENAI_API_KEY"],
             "Content-Type": "application/json"})
answer = json.load(urllib.request.urlopen(request, timeout=30))
print("MODEL SAID", answer["choices"][0]["message"]["content"])
for port in sys.argv[1:]:
    try:
        socket.create_connection(("127.0.0.1", int(port)), timeout=5)
        print("REACHED", port)
    except OSError as error:
        print("REFUSED", port, error)
open("done.txt", "w").write("ok")
'''


async def test_an_outside_agent_reaches_the_gateway_and_nothing_else(
        make_board, scripted, tmp_path: Path, listener: int, sandbox: Sandbox) -> None:
    gateway = scripted({"default": {"content": "hello from the gateway"}})
    program = tmp_path / "agent-cli" / "agent.py"
    program.parent.mkdir()
    program.write_text(AGENT)
    postgres = 5432
    agent = Agent(id="a1", hive_id="h1", name="outside", adapter=AdapterKind.PROCESS,
                  adapter_config={"command": [sys.executable, str(program), str(listener),
                                              str(postgres)],
                                  # An agent's own gateway URL is not a road out.
                                  "env": {"LITELLM_BASE_URL": f"http://127.0.0.1:{listener}"}})
    board = make_board(agent=agent, verify="test -s done.txt")
    client = GatewayClient(gateway.base_url, "sk-test", store=board.store)

    outcome = await executor_for(agent).run(
        board.task, agent, board.hive,
        board.context(client, env=command_env(),
                      sandbox=sandbox.with_extras(readable=[program.parent])))

    output = "".join(e.data["text"] for e in board.transcript("process_output"))
    assert outcome.kind is OutcomeKind.COMPLETE, output
    assert "MODEL SAID hello from the gateway" in output
    assert f"REFUSED {listener}" in output
    assert f"REFUSED {postgres}" in output
    assert "REACHED" not in output
    assert gateway.chat_count == 1
    assert [r["key"] for r in gateway.requests] == ["sk-test"]  # the relay's, not the agent's
    assert len(board.store.ledger(hive_id=board.hive.id)) == 1  # metered by the relay
    await client.aclose()


async def test_an_outside_agent_on_a_named_gateway_host(make_board, scripted, tmp_path: Path,
                                                        sandbox: Sandbox) -> None:
    gateway = scripted({"default": {"content": "named"}})
    named = gateway.base_url.replace("127.0.0.1", "localhost")
    program = tmp_path / "agent-cli" / "agent.py"
    program.parent.mkdir()
    program.write_text(AGENT)
    agent = Agent(id="a1", hive_id="h1", name="outside", adapter=AdapterKind.PROCESS,
                  adapter_config={"command": [sys.executable, str(program)]})
    board = make_board(agent=agent)
    client = GatewayClient(named, "sk-test", store=board.store)
    outcome = await executor_for(agent).run(
        board.task, agent, board.hive,
        board.context(client, env=command_env(),
                      sandbox=sandbox.with_extras(readable=[program.parent])))
    output = "".join(e.data["text"] for e in board.transcript("process_output"))
    assert outcome.kind is OutcomeKind.COMPLETE, output
    assert "MODEL SAID named" in output
    await client.aclose()


async def test_without_a_sandbox_commands_are_refused(workspace: Path, make_board,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no bwrap to be found
    settings = load_settings({"RUFLO_CONFIG": ""})
    refused = sandbox_for(settings)
    assert not refused.confines
    line = refused.describe()
    assert "REFUSED" in line
    assert "apt-get install bubblewrap" in line
    assert "RUFLO_SANDBOX=off" in line

    marker = workspace / "ran.txt"
    for command in (f"touch {marker}", ["touch", str(marker)], ["no-such-program"]):
        with pytest.raises(ConfigError, match=r"commands are refused: bubblewrap .* not "
                                              r"installed.*nothing was run"):
            await run_command(command, cwd=workspace, env={"PATH": "/usr/bin:/bin"},
                              sandbox=refused)
    board = make_board(verify=f"touch {marker}")
    with pytest.raises(ConfigError, match="commands are refused"):
        await verify_task(board.task, board.context(sandbox=refused))
    agent = Agent(id="a1", hive_id="h1", name="outside", adapter=AdapterKind.PROCESS,
                  adapter_config={"command": ["touch", str(marker)]})
    with pytest.raises(ConfigError, match="commands are refused"):
        await executor_for(agent).run(board.task, agent, board.hive,
                                      board.context(sandbox=refused))
    assert not marker.exists()


async def test_a_bwrap_that_cannot_build_the_sandbox_is_a_refusal(tmp_path: Path,
                                                                  monkeypatch) -> None:
    fake = tmp_path / "bin" / "bwrap"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'bwrap: Creating new namespace failed: "
                    "Operation not permitted' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:/usr/bin:/bin")
    for mode in ("auto", "bwrap"):
        refused = sandbox_for(load_settings({"RUFLO_CONFIG": "", "RUFLO_SANDBOX": mode}))
        assert refused.refusal is not None
        assert "Creating new namespace failed" in refused.refusal
        assert "RUFLO_SANDBOX=off" in refused.refusal


async def test_the_opt_out_runs_unconfined_and_says_so(workspace: Path, tmp_path: Path) -> None:
    settings = load_settings({"RUFLO_CONFIG": "", "RUFLO_SANDBOX": "off"})
    unconfined = sandbox_for(settings)
    assert "NOT SANDBOXED (RUFLO_SANDBOX=off, env RUFLO_SANDBOX)" in unconfined.describe()
    outside = tmp_path / "outside.txt"
    result = await run_command(f"echo x > {outside}", cwd=workspace, env=command_env(),
                               sandbox=unconfined)
    assert result.ok
    assert outside.exists()


@pytest.mark.parametrize("value", ["on", "yes", "firejail", "1"])
def test_an_unknown_sandbox_setting_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match=r"sandbox \(env RUFLO_SANDBOX\).*nothing was started"):
        load_settings({"RUFLO_CONFIG": "", "RUFLO_SANDBOX": value})


async def test_folders_named_by_ruflo_sandbox_read_are_shown_read_only(
        workspace: Path, tmp_path: Path) -> None:
    tools, more = tmp_path / "tools", tmp_path / "more"
    for folder in (tools, more):
        folder.mkdir()
        (folder / "note.txt").write_text(f"in {folder.name}\n")
    settings = load_settings({"RUFLO_CONFIG": "", "RUFLO_SANDBOX_READ": f"{tools}:{more}"})
    assert settings.sandbox_read == [tools, more]
    shown = sandbox_for(settings)
    for folder in (tools, more):
        result = await run_command(f"cat {folder}/note.txt && echo x > {folder}/new.txt",
                                   cwd=workspace, env=command_env(), sandbox=shown)
        assert result.output.startswith(f"in {folder.name}\n")
        assert "Read-only file system" in result.output
        assert not (folder / "new.txt").exists()


async def test_an_outside_agents_own_path_does_not_choose_what_is_shown(
        make_board, tmp_path: Path, sandbox: Sandbox) -> None:
    secrets = tmp_path / "keys"
    secrets.mkdir()
    (secrets / "id_rsa").write_text("PRIVATE-KEY\n")
    board = make_board()
    for command in (["cat", str(secrets / "id_rsa")], ["ls", str(secrets)]):
        agent = Agent(id="a1", hive_id="h1", name="outside", adapter=AdapterKind.PROCESS,
                      adapter_config={"command": command,
                                      "env": {"PATH": f"{secrets}:/usr/bin:/bin"}})
        outcome = await executor_for(agent).run(board.task, agent, board.hive,
                                                board.context(sandbox=sandbox))
        assert outcome.kind is OutcomeKind.FAILED
        assert "No such file or directory" in (outcome.result or "")
        assert "PRIVATE-KEY" not in (outcome.result or "")
        assert "id_rsa" not in (outcome.result or "").replace(str(secrets / "id_rsa"), "")
