"""`ruflo mcp` as a real subprocess, driven by the SDK's own client over stdio and over streamable
HTTP on a loopback port: a task is posted, claimed and completed and the store shows it; a bad
call is a tool error and the server goes on serving."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp.client.stdio import StdioServerParameters

from mcp import Client
from ruflo.model import TaskState
from ruflo.store import open_store
from waiting import wait_until

pytestmark = pytest.mark.integration

RUFLO = str(Path(sys.executable).with_name("ruflo"))


def server_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RUFLO_") and k not in ("DATABASE_URL", "OPENAI_BASE_URL",
                                                       "LITELLM_BASE_URL")}
    env["RUFLO_DATA_DIR"] = str(data_dir)
    config = data_dir / "config.toml"
    if not config.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        config.write_text("")  # not the person's own config file
    env["RUFLO_CONFIG"] = str(config)
    return env


async def call(client: Client, tool: str, **arguments: Any) -> Any:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    return json.loads(result.content[0].text)  # type: ignore[union-attr]


async def work_a_task(client: Client) -> tuple[str, str]:
    """The board cycle every MCP client goes through; returns (hive id, task id)."""
    hive = (await call(client, "create_hive", name="mcp-hive", objective="ship",
                       agents=[{"name": "coder", "skills": ["python"]}]))["hive"]
    task = (await call(client, "post_task", hive="mcp-hive", title="fix the bug",
                       skills=["python"], verify="true"))["task"]
    bad = await client.call_tool("post_task", {"hive": "mcp-hive", "title": "x",
                                               "priority": "urgent"})
    assert bad.is_error
    missing = await client.call_tool("claim_next_task", {"hive": "no-such-hive",
                                                         "agent": "coder"})
    assert missing.is_error
    assert "no hive 'no-such-hive'" in missing.content[0].text  # type: ignore[union-attr]
    claimed = await call(client, "claim_next_task", hive="mcp-hive", agent="coder",
                         task=task["id"])
    assert claimed["task"]["state"] == "claimed"
    done = await call(client, "complete_task", hive="mcp-hive", task=task["id"], agent="coder",
                      result="patched")
    assert done["task"]["state"] == "done"
    assert done["task"]["verified"] is True
    status = await call(client, "board_status", hive="mcp-hive")
    assert status["counts"]["done"] == 1
    return hive["id"], task["id"]


def check_stored(data_dir: Path, hive_id: str, task_id: str) -> None:
    """What `ruflo hive show` reads: the stored board and events (and the command, once it
    exists in this checkout)."""
    store = open_store(f"sqlite:///{data_dir / 'ruflo.db'}")
    try:
        task = store.get_task(task_id)
        assert task.state is TaskState.DONE
        assert task.result == "patched"
        tools = [e.data["tool"] for e in store.events(hive_id, kinds=["mcp_call"])]
        assert tools[:2] == ["create_hive", "post_task"]
        assert "complete_task" in tools
    finally:
        store.close()
    if (Path(__file__).parents[2] / "src/ruflo/commands/hive.py").exists():
        shown = subprocess.run([RUFLO, "hive", "show", hive_id], env=server_env(data_dir),
                               capture_output=True, text=True, timeout=60, check=False)
        assert shown.returncode == 0, shown.stderr
        assert "fix the bug" in shown.stdout


async def test_stdio(tmp_path: Path) -> None:
    params = StdioServerParameters(command=RUFLO, args=["mcp"], env=server_env(tmp_path))
    async with Client(params) as client:
        hive_id, task_id = await work_a_task(client)
    check_stored(tmp_path, hive_id, task_id)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for_port(port: int, process: subprocess.Popen[bytes], seconds: float = 30) -> None:
    def listening() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"ruflo mcp exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            return False
        return True

    wait_until(listening, within=seconds, what=f"ruflo mcp did not listen on {port}")


def start_http_server(port: int, data_dir: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([RUFLO, "mcp", "--transport", "http", "--port", str(port)],
                            env=server_env(data_dir), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


async def test_streamable_http(tmp_path: Path) -> None:
    port = free_port()
    process = start_http_server(port, tmp_path)
    try:
        wait_for_port(port, process)
        async with Client(f"http://127.0.0.1:{port}/mcp") as client:
            hive_id, task_id = await work_a_task(client)
        async with Client(f"http://127.0.0.1:{port}/mcp") as again:
            status = await call(again, "board_status", hive=hive_id)
            assert status["counts"]["done"] == 1
    finally:
        process.terminate()
        process.wait(timeout=20)
    check_stored(tmp_path, hive_id, task_id)


def test_a_non_loopback_bind_is_refused(tmp_path: Path) -> None:
    ran = subprocess.run([RUFLO, "mcp", "--transport", "http", "--host", "0.0.0.0"],
                         env=server_env(tmp_path), capture_output=True, text=True, timeout=60,
                         check=False)
    assert ran.returncode == 2
    assert "no auth" in ran.stderr


def test_an_unknown_default_hive_is_refused_at_start(tmp_path: Path) -> None:
    ran = subprocess.run([RUFLO, "mcp", "--hive", "nope"], env=server_env(tmp_path),
                         capture_output=True, text=True, timeout=60, check=False,
                         stdin=subprocess.DEVNULL)
    assert ran.returncode == 2
    assert "no hive 'nope'" in ran.stderr
