"""Helpers for the CLI tests (the `cli` fixture lives in conftest.py): the `ruflo` program run as a subprocess against a ScriptedGateway
started by the test, with a temp data dir and a clean environment."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ruflo.gateway.scripted import ScriptedGateway

KEY = "sk-cli-test"
RUFLO = Path(sys.executable).parent / "ruflo"


@dataclass
class Cli:
    env: dict[str, str]
    data_dir: Path
    gateway: ScriptedGateway

    def __call__(self, *args: str, timeout: float = 120, env: dict[str, str] | None = None,
                 input_text: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(RUFLO), *args], env={**self.env, **(env or {})},
                              input=input_text, capture_output=True, text=True, timeout=timeout,
                              check=False)

    def store(self) -> Any:
        from ruflo.store import open_store

        return open_store(f"sqlite:///{self.data_dir / 'ruflo.db'}")


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    gateway = ScriptedGateway({"keys": [KEY], "cost": 0.0001})
    gateway.start()
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENAI_", "LITELLM_", "RUFLO_", "DATABASE_"))}
    env.update(OPENAI_BASE_URL=gateway.base_url, OPENAI_API_KEY=KEY, RUFLO_DATA_DIR=str(data),
               RUFLO_LEASE_SECONDS="2",
               XDG_CONFIG_HOME=str(tmp_path / "config"), COLUMNS="120")
    yield Cli(env=env, data_dir=data, gateway=gateway)
    gateway.stop()


def work_rules(name: str, **extra: Any) -> list[dict[str, Any]]:
    """The built-in agent writes `<name>.txt` containing its name, then completes."""
    match = f"^Task: {name}$|^Task: {name}\\n"
    return [{"match": {"last_user": match, "turn": 1}, **extra,
             "reply": {"tool_calls": [{"name": "write_file", "arguments": {
                 "path": f"{name}.txt", "content": name}}]}},
            {"match": {"last_user": match, "turn": 2},
             "reply": {"tool_calls": [{"name": "complete",
                                       "arguments": {"result": f"wrote {name}.txt"}}]}}]


WorkRules = Callable[..., list[dict[str, Any]]]
