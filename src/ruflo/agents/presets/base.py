"""What a preset knows about one agent CLI: its program, its headless command, how it reaches
the model relay, and how its structured output reads as a transcript. Depends on the standard
library and the event kinds.

A preset is plain data and pure functions: the preset executor (agents.presets.executor) runs
the command through the process adapter's machinery (sandbox, relay token, timeout, process
group) and feeds the output, line by line, to the preset's reader.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruflo.errors import ConfigError
from ruflo.event_kinds import EventKind

__all__ = ["AGENT_CLI_DIR", "Event", "Preset", "Reader", "Setup", "find_program", "installed_in"]

AGENT_CLI_DIR = ".agent-clis"
"""Where scripts/install puts the pinned agent CLIs (npm --prefix), in ruflo's checkout; a
Python CLI gets a virtualenv of its own there, `venvs/PROGRAM` (its pins stay out of ruflo's)."""

Event = tuple[EventKind, dict[str, Any]]
"""A transcript event a reader found in the output: its kind and its fields."""


@dataclass(frozen=True, slots=True)
class Setup:
    """What a preset builds one run from."""

    prompt: str
    """The task as the agent reads it (objective, task, verify command, notes)."""
    workspace: Path
    """The attempt's folder (its git worktree under isolation): the only one it may change."""
    home: Path
    """The attempt's private home folder (HOME), empty at the start, gone at the end: config
    files are written here, never into the user's home."""
    env: Mapping[str, str]
    """The environment so far: the relay's addresses as the agent sees them (OPENAI_BASE_URL,
    ANTHROPIC_BASE_URL) and the attempt's token (OPENAI_API_KEY, ANTHROPIC_API_KEY)."""
    model: str
    """The model the agent asks the relay for."""
    config: Mapping[str, Any] = field(default_factory=dict)
    """The agent's adapter config (overrides: args, env, model, program, timeout, ...)."""
    confined: bool = True
    """The command runs in ruflo's sandbox (bubblewrap): the CLI's own sandbox may stand down."""


class Reader:
    """Reads a CLI's output, one line at a time, into transcript events. The base reader keeps
    every line as plain output; a preset's reader parses its CLI's JSON events."""

    def __init__(self) -> None:
        self.final: str | None = None
        """The CLI's last answer (its final message), once seen."""
        self.turns = 0
        """Model turns seen in the output."""
        self.error: str | None = None
        """What the CLI itself reported as its failure, if it did."""
        self.usage: dict[str, Any] = {}
        """Tokens the CLI says it used (its own count; the ledger's is the one that is billed)."""

    def read(self, line: str) -> list[Event]:
        """The events one line of output stands for (none for a line that only carries state)."""
        return [(EventKind.PROCESS_OUTPUT, {"text": line})] if line.strip() else []

    def finish(self) -> list[Event]:
        """Events still held when the output ends (a turn whose blocks came one by one)."""
        return []



class JsonLines(Reader):
    """A reader of a CLI that writes one JSON object a line: each object goes to `event`;
    anything else (a plain line, a JSON value that is not an object) is kept as plain output."""

    def read(self, line: str) -> list[Event]:
        try:
            event = json.loads(line)
        except ValueError:
            return super().read(line)
        if not isinstance(event, dict):
            return super().read(line)
        return self.event(event, line)

    def event(self, event: dict[str, Any], line: str) -> list[Event]:
        """The events one JSON object stands for (`line`: its text, for `plain`)."""
        raise NotImplementedError

    def plain(self, line: str) -> list[Event]:
        """`line` kept as plain output (an object the reader does not know)."""
        return Reader.read(self, line)

@dataclass(frozen=True, slots=True)
class Preset:
    """One agent CLI: how to find it, start it headless against the relay, and read it."""

    name: str
    """The adapter name (`claude-code`, `codex`, ...)."""
    program: str
    """The program's name on PATH or in .agent-clis/node_modules/.bin."""
    package: str
    """Where it comes from, pinned (`npm:@openai/codex@0.171.0`): the install hint."""
    version_args: tuple[str, ...] = ("--version",)

    def argv(self, program: str, setup: Setup) -> list[str]:
        """The headless command (program first), before the agent's extra `args`."""
        raise NotImplementedError

    def env(self, setup: Setup) -> dict[str, str]:
        """Variables added for this run: the relay for its own variable names, telemetry and
        update checks off. Files it needs (a config file) are written into `setup.home` here."""
        raise NotImplementedError

    def reader(self) -> Reader:
        return Reader()


def installed_in() -> list[Path]:
    """Folders searched for agent CLIs after PATH: RUFLO_AGENT_CLIS, then .agent-clis of the
    current folder and of ruflo's own checkout."""
    folders = []
    if os.environ.get("RUFLO_AGENT_CLIS"):
        folders.append(Path(os.environ["RUFLO_AGENT_CLIS"]))
    folders.append(Path.cwd() / AGENT_CLI_DIR)
    folders.append(Path(__file__).resolve().parents[4] / AGENT_CLI_DIR)
    return [f / "node_modules" / ".bin" for f in dict.fromkeys(folders)]


def find_program(preset: Preset, config: Mapping[str, Any], path: str | None) -> str | None:
    """The CLI's program: the agent's `program` setting (a path, or a name on PATH), else the
    preset's program on `path`, else in an .agent-clis install. None when not found."""
    chosen = config.get("program")
    if chosen is not None:
        if not isinstance(chosen, str) or not chosen.strip():
            raise ConfigError(f"adapter config program must be a path or a program name, not "
                              f"{chosen!r}; nothing was run")
        if os.sep in chosen:
            found = Path(chosen).expanduser()
            return str(found.resolve()) if os.access(found, os.X_OK) else None
        return shutil.which(chosen, path=path)
    on_path = shutil.which(preset.program, path=path)
    if on_path is not None:
        return on_path
    for folder in installed_in():
        for candidate in (folder / preset.program,
                          folder.parent.parent / "venvs" / preset.program / "bin" / preset.program):
            if os.access(candidate, os.X_OK):
                return str(candidate)
    return None


def installation(program: str) -> Path:
    """The folder the sandbox must show for `program` to run: its node_modules (an npm CLI's
    launcher finds its native binary there), its virtualenv (a Python CLI's packages), else the
    folder of the file it links to."""
    real = Path(os.path.realpath(program))
    for parent in real.parents:
        if parent.name == "node_modules":
            return parent
    if (real.parent.parent / "pyvenv.cfg").is_file():
        return real.parent.parent
    return real.parent
