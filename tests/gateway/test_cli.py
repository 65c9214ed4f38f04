"""`ruflo gateway scripted` and `ruflo gateway models`, run as real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ruflo.gateway.scripted import ScriptedGateway

pytestmark = pytest.mark.integration

RUFLO = [str(Path(sys.executable).with_name("ruflo"))]


def _env(**extra: str) -> dict[str, str]:
    """ruflo's environment without any gateway or ruflo settings of the machine running the
    tests (an empty config folder stands in for the user's)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENAI_BASE_URL", "LITELLM_BASE_URL", "OPENAI_API_KEY")
           and not k.startswith("RUFLO_")}
    env["XDG_CONFIG_HOME"] = env["XDG_DATA_HOME"] = _EMPTY
    env.update(extra)
    return env


_EMPTY = tempfile.mkdtemp(prefix="ruflo-cli-test-")


@pytest.fixture
def scripted_process(tmp_path: Path) -> Iterator[str]:
    script = tmp_path / "script.yaml"
    script.write_text("models: [cli-model]\nkeys: [sk-cli]\ncost: 0.002\nrules:\n"
                      "  - match: {last_user: ping}\n    reply: {content: pong}\n")
    process = subprocess.Popen([*RUFLO, "gateway", "scripted", "--port", "0", "--script",
                                str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=_env())
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("scripted gateway on http://127.0.0.1:"), (
            line, process.stderr.read() if process.poll() is not None and process.stderr
            else "")
        yield line.split()[-1]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) is not None


def test_the_scripted_gateway_runs_from_the_cli(scripted_process: str) -> None:
    answer = httpx.post(f"{scripted_process}/chat/completions",
                        headers={"Authorization": "Bearer sk-cli"},
                        json={"model": "cli-model",
                              "messages": [{"role": "user", "content": "ping"}]})
    assert answer.json()["choices"][0]["message"]["content"] == "pong"
    assert answer.headers["x-litellm-response-cost"] == "0.002"
    stats = httpx.get(scripted_process.removesuffix("/v1") + "/_scripted/stats").json()
    assert stats["chat"] == 1


def test_models_lists_what_the_gateway_offers(scripted_process: str) -> None:
    done = subprocess.run([*RUFLO, "gateway", "models", "--json"], capture_output=True,
                          text=True, timeout=60,
                          env=_env(OPENAI_BASE_URL=scripted_process, OPENAI_API_KEY="sk-cli"))
    assert done.returncode == 0, done.stderr
    listing = json.loads(done.stdout)
    assert listing["models"] == [{"id": "cli-model", "owned_by": "scripted"}]
    assert listing["source"] == "OPENAI_BASE_URL"
    plain = subprocess.run([*RUFLO, "gateway", "models"], capture_output=True, text=True,
                           timeout=60, env=_env(LITELLM_BASE_URL=scripted_process,
                                                OPENAI_API_KEY="sk-cli"))
    assert plain.stdout.split() == ["cli-model"]
    assert "LITELLM_BASE_URL" in plain.stderr


def test_models_with_a_refused_key_says_so_without_a_traceback(scripted_process: str) -> None:
    done = subprocess.run([*RUFLO, "gateway", "models"], capture_output=True, text=True,
                          timeout=60, env=_env(OPENAI_BASE_URL=scripted_process,
                                               OPENAI_API_KEY="sk-anthropic-oops"))
    assert done.returncode == 2
    assert "virtual key" in done.stderr
    assert "Traceback" not in done.stderr


def test_models_without_a_gateway_is_a_clear_error() -> None:
    done = subprocess.run([*RUFLO, "gateway", "models"], capture_output=True, text=True,
                          timeout=60, env=_env())
    assert done.returncode == 2
    assert "OPENAI_BASE_URL" in done.stderr


def test_a_bad_script_fails_before_serving(tmp_path: Path) -> None:
    script = tmp_path / "bad.yaml"
    script.write_text("rules: [{fault: meteor}]\n")
    done = subprocess.run([*RUFLO, "gateway", "scripted", "--port", "0", "--script",
                           str(script)], capture_output=True, text=True, timeout=60, env=_env())
    assert done.returncode == 2
    assert "unknown scripted fault" in done.stderr


def test_the_in_process_server_stops_cleanly() -> None:
    server = ScriptedGateway()
    url = server.start()
    assert httpx.get(f"{url}/models", headers={"Authorization": "Bearer k"}).status_code == 200
    server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/models", headers={"Authorization": "Bearer k"})
