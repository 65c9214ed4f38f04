"""`ruflo doctor` lists the agent CLIs found, their versions, and whether each completes a
one-call handshake through the model relay to the configured gateway (here a ScriptedGateway);
a gateway that refuses their calls makes the handshake fail, said plainly, as a warning."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent_clis import require_agent_cli
from ruflo.gateway.scripted import ScriptedGateway

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = "sk-doctor-clis"
VERSIONS = {"claude-code": "2.1.332 (Claude Code)", "codex": "codex-cli 0.171.0",
            "gemini-cli": "0.61.0", "opencode": "1.18.33", "aider": "aider 0.86.2"}


def doctor(tmp_path: Path, base_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RUFLO_") and k not in ("DATABASE_URL", "LITELLM_BASE_URL")}
    env.update({"RUFLO_DATA_DIR": str(tmp_path / "data"), "HOME": str(tmp_path),
                "OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": KEY})
    return subprocess.run([sys.executable, "-c", "from ruflo.cli import main; main()",
                           "doctor", *args], env=env, capture_output=True, text=True,
                          timeout=300, check=False, cwd=tmp_path)


def cli_checks(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"].removeprefix("agent cli "): c for c in report["checks"]
            if c["name"].startswith("agent cli ")}


def test_doctor_shows_each_cli_its_version_and_a_handshake_through_the_relay(
        tmp_path: Path) -> None:
    for name in VERSIONS:
        require_agent_cli(name)
    with ScriptedGateway({"keys": [KEY], "default": {"content": "READY"}}) as base_url:
        done = doctor(tmp_path, base_url, "--json")
    assert done.returncode == 0, done.stderr
    found = cli_checks(json.loads(done.stdout))
    for name, version in VERSIONS.items():
        check = found[name]
        assert check["ok"], check
        assert check["data"]["version"] == version
        assert check["data"]["handshake"] is True
        assert check["data"]["calls"] >= 1
        assert "answered 'READY'" in check["detail"]
    with ScriptedGateway({"keys": [KEY], "default": {"content": "READY"}}) as base_url:
        text = doctor(tmp_path, base_url, "--no-handshakes")
    assert "ok   agent cli codex: codex-cli 0.171.0 at" in text.stdout
    assert "handshake not tried: --no-handshakes" in text.stdout


def test_a_gateway_refusing_the_clis_calls_fails_their_handshake_as_a_warning(
        tmp_path: Path) -> None:
    for name in VERSIONS:
        require_agent_cli(name)
    script = {"keys": [KEY], "rules": [{"name": "no", "fault": "key_refused"}]}
    with ScriptedGateway(script) as base_url:
        done = doctor(tmp_path, base_url, "--json")
    report = json.loads(done.stdout)
    found = cli_checks(report)
    for name in VERSIONS:
        assert found[name]["ok"] is False
        assert found[name]["fatal"] is False
        assert found[name]["data"]["handshake"] is False
        assert "refused the key" in found[name]["detail"]
    assert done.returncode == 0, "the CLIs' handshakes warn; they don't fail the doctor"
