"""The boot trace and `ruflo doctor` say whether agents' commands are sandboxed, and how."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def ruflo(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from ruflo.cli import main; main()", *args],
                          env=env, capture_output=True, text=True, timeout=120, check=False)


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RUFLO_", "OPENAI_", "LITELLM_")) and k != "DATABASE_URL"}
    env.update(RUFLO_DATA_DIR=str(tmp_path / "data"), HOME=str(tmp_path), **extra)
    return env


def test_doctor_says_commands_are_sandboxed(tmp_path: Path) -> None:
    done = ruflo(clean_env(tmp_path), "doctor")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "\ncommands: sandboxed with bubblewrap (" in done.stdout
    assert "ok   sandbox: sandboxed with bubblewrap" in done.stdout


def test_doctor_warns_when_the_operator_opts_out(tmp_path: Path) -> None:
    done = ruflo(clean_env(tmp_path, RUFLO_SANDBOX="off"), "doctor")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "commands: NOT SANDBOXED (RUFLO_SANDBOX=off, env RUFLO_SANDBOX)" in done.stdout
    assert "warn sandbox: NOT SANDBOXED" in done.stdout


@pytest.mark.parametrize("mode", ["auto", "bwrap"])
def test_doctor_fails_when_commands_would_be_refused(tmp_path: Path, mode: str) -> None:
    done = ruflo(clean_env(tmp_path, RUFLO_SANDBOX=mode, PATH=str(tmp_path / "no-bwrap")),
                 "doctor")
    assert done.returncode == 1
    assert "FAIL sandbox: REFUSED: bubblewrap (bwrap) is not installed; install bubblewrap " \
           "(Debian/Ubuntu: apt-get install bubblewrap) or set RUFLO_SANDBOX=off" in done.stdout


def test_orchestrates_boot_trace_names_the_sandbox(tmp_path: Path) -> None:
    # No gateway: orchestrate stops after its boot trace, having run nothing.
    done = ruflo(clean_env(tmp_path), "orchestrate", "write a.txt")
    assert done.returncode != 0
    assert "commands: sandboxed with bubblewrap" in done.stderr
    refused = ruflo(clean_env(tmp_path, PATH=str(tmp_path / "no-bwrap")), "orchestrate", "x")
    assert "commands: REFUSED: bubblewrap (bwrap) is not installed" in refused.stderr


@pytest.mark.parametrize("mode", ["auto", "bwrap"])
def test_orchestrate_refuses_up_front_when_commands_would_be_refused(
        tmp_path: Path, mode: str) -> None:
    # A gateway is named (never called): what stops the run is the sandbox, before a hive exists.
    env = clean_env(tmp_path, RUFLO_SANDBOX=mode, PATH=str(tmp_path / "no-bwrap"),
                    OPENAI_BASE_URL="http://127.0.0.1:9/v1", OPENAI_API_KEY="sk-unused")
    done = ruflo(env, "orchestrate", "write a.txt", "--workspace", str(tmp_path / "ws"))
    assert done.returncode == 2, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: commands are refused: bubblewrap (bwrap) is not installed; install "
                      "bubblewrap (Debian/Ubuntu: apt-get install bubblewrap) or set "
                      "RUFLO_SANDBOX=off to run them unconfined; nothing was run"], done.stderr
    assert "Traceback" not in done.stderr
    listed = ruflo(clean_env(tmp_path), "hive", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) in ([], {"hives": []}), listed.stdout


def test_doctor_lists_the_folders_shown_read_only(tmp_path: Path) -> None:
    shown = [tmp_path / "tools", tmp_path / "more"]
    done = ruflo(clean_env(tmp_path, RUFLO_SANDBOX_READ=":".join(map(str, shown))), "doctor")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f'  sandbox_read = ["{shown[0]}", "{shown[1]}"] (env RUFLO_SANDBOX_READ)' \
        in done.stdout
