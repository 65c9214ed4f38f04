"""`ruflo serve` and `ruflo token` as a person runs them: real subprocesses, real signals."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_harness import SCRIPT, iter_frames

from ruflo.gateway.scripted import ScriptedGateway
from waiting import wait_until

RUFLO = [sys.executable, "-c", "from ruflo.cli import main; main()"]


def ruflo_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("RUFLO_", "OPENAI_", "LITELLM_", "DATABASE_URL", "TASK_MODEL"))}
    env.update(RUFLO_DATA_DIR=str(data_dir), **extra)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_refuses_an_open_bind_without_auth(tmp_path: Path) -> None:
    done = subprocess.run([*RUFLO, "serve", "--host", "0.0.0.0", "--port", str(free_port())],
                          env=ruflo_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "refusing to listen on 0.0.0.0 with no auth" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.integration
def test_token_commands(tmp_path: Path) -> None:
    env = ruflo_env(tmp_path)
    made = subprocess.run([*RUFLO, "token", "create", "--user", "dana", "--name", "ci"], env=env,
                          capture_output=True, text=True, timeout=60, check=True)
    token = made.stdout.strip()
    assert token.startswith("rfl_")
    assert len(token) > 40
    listed = json.loads(subprocess.run([*RUFLO, "token", "list", "--json"], env=env,
                                       capture_output=True, text=True, timeout=60,
                                       check=True).stdout)
    assert [(t["user_id"], t["name"]) for t in listed] == [("dana", "ci")]
    assert token not in json.dumps(listed), "the token itself is never shown again"

    from ruflo.server.auth import hash_token
    from ruflo.store import open_store

    store = open_store(f"sqlite:///{tmp_path / 'ruflo.db'}")
    try:
        assert store.find_token(hash_token(token))["user_id"] == "dana"  # type: ignore[index]
    finally:
        store.close()
    revoked = subprocess.run([*RUFLO, "token", "revoke", listed[0]["id"]], env=env,
                             capture_output=True, text=True, timeout=60)
    assert revoked.returncode == 0
    store = open_store(f"sqlite:///{tmp_path / 'ruflo.db'}")
    try:
        assert store.find_token(hash_token(token)) is None
    finally:
        store.close()
    unknown = subprocess.run([*RUFLO, "token", "revoke", "nope"], env=env, capture_output=True,
                             text=True, timeout=60)
    assert unknown.returncode == 2
    assert "no token" in unknown.stderr


@pytest.mark.integration
def test_sigterm_ends_the_server_fast_and_keeps_the_partial_answer(tmp_path: Path) -> None:
    with ScriptedGateway(SCRIPT) as gateway_url:
        port = free_port()
        env = ruflo_env(tmp_path, OPENAI_BASE_URL=gateway_url, OPENAI_API_KEY="sk-test")
        server = subprocess.Popen([*RUFLO, "serve", "--port", str(port)], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            base = f"http://127.0.0.1:{port}"
            def up() -> bool:
                assert server.poll() is None, server.communicate()
                try:
                    return httpx.get(f"{base}/healthz").status_code == 200
                except httpx.TransportError:
                    return False

            wait_until(up, what="ruflo serve did not start")
            client = httpx.Client(base_url=base, timeout=30)
            hive = client.post("/api/v2/hives", json={"objective": "wait", "agents": 1,
                                                      "tasks": [{"title": "wait"}]}).json()
            conversation = client.post("/api/v2/conversations", json={}).json()["conversationId"]

            events: list[dict[str, Any]] = []
            following = threading.Event()

            def follow() -> None:
                with httpx.stream("GET", f"{base}/api/v2/hives/{hive['id']}/stream",
                                  timeout=30) as answer:
                    for frame in iter_frames(answer.iter_lines()):
                        events.append(frame)
                        following.set()

            follower = threading.Thread(target=follow)
            follower.start()
            # The stream must be open before the signal (the server now also runs the hive).
            assert following.wait(20), "the event stream did not start"
            chat_frames: list[dict[str, Any]] = []
            with client.stream("POST", f"/api/v2/conversations/{conversation}/messages",
                               json={"inputs": "a long story"}) as answer:
                for frame in iter_frames(answer.iter_lines()):
                    chat_frames.append(frame)
                    if frame["data"]["type"] == "stream" and len(chat_frames) == 5:
                        signalled = time.monotonic()
                        server.send_signal(signal.SIGTERM)
            server.wait(timeout=10)
            took = time.monotonic() - signalled
            follower.join(timeout=5)
            assert not follower.is_alive(), "the event stream ended with the server"
            assert took < 10
            assert events, "the event stream delivered the hive's history before ending"
            final = [f["data"] for f in chat_frames if f["data"]["type"] == "finalAnswer"]
            assert final, "the chat stream was closed with its final answer"
            assert final[0]["interrupted"] is True
            client.close()
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
    # uvicorn re-raises the signal once shut down, so a clean end reads as "killed by SIGTERM".
    assert server.returncode in (0, -signal.SIGTERM), server.stderr.read() if server.stderr else ""
    assert "Application shutdown complete" in (server.stderr.read() if server.stderr else "")
    from ruflo.store import open_store

    store = open_store(f"sqlite:///{tmp_path / 'ruflo.db'}")
    try:
        answer_message = store.messages(conversation)[-1]
    finally:
        store.close()
    assert answer_message.role == "assistant"
    assert answer_message.interrupted
    assert answer_message.content == final[0]["text"]
    assert answer_message.content.startswith("once upon")


def test_serve_opens_the_model_relay_where_the_settings_say(tmp_path: Path) -> None:
    # The pod's shell names the server container's relay at a fixed loopback address: serve
    # listens there from the start, takes only attempt tokens, and its boot trace names it.
    with ScriptedGateway(SCRIPT) as gateway_url:
        port, relay_port = free_port(), free_port()
        address = f"127.0.0.1:{relay_port}"
        env = ruflo_env(tmp_path, OPENAI_BASE_URL=gateway_url, OPENAI_API_KEY="sk-test",
                        RUFLO_RELAY_ADDRESS=address)
        server = subprocess.Popen([*RUFLO, "serve", "--port", str(port)], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            def relay_answers() -> httpx.Response | None:
                assert server.poll() is None, server.communicate()
                try:
                    return httpx.get(f"http://{address}/v1/models",
                                     headers={"authorization": "Bearer sk-test"})
                except httpx.TransportError:
                    return None

            refused = wait_until(relay_answers, within=60, what="the relay did not open")
            assert refused.status_code == 401  # the gateway key is no relay token
        finally:
            server.send_signal(signal.SIGTERM)
            out, err = server.communicate(timeout=20)
    assert f"model relay: {address}" in out + err
