"""What a reconcile leaves behind: the one-line summary shown at login, the log with every
command, exit code and output tail, and the last result as JSON for `ruflo shell status`.
Depends on the standard library and shell.runner.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ruflo.shell.package_command import CommandResult

LOG_LIMIT = 1_000_000
"""Bytes; past this the log is rotated to reconcile.log.1 at the start of a run."""


def iso_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ShellState:
    """The reconciler's folder: `summary` (the login line), `reconcile.log`, `last.json`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.summary_path = directory / "summary"
        self.log_path = directory / "reconcile.log"
        self.last_path = directory / "last.json"
        self.lock_path = directory / "reconcile.lock"

    def prepare(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)

    def write_summary(self, line: str) -> None:
        _write_atomic(self.summary_path, line + "\n")

    def write_last(self, record: dict[str, Any]) -> None:
        _write_atomic(self.last_path, json.dumps(record, indent=2, ensure_ascii=False) + "\n")

    def read_summary(self) -> str | None:
        try:
            return self.summary_path.read_text(encoding="utf-8").strip() or None
        except FileNotFoundError:
            return None

    def read_last(self) -> dict[str, Any] | None:
        try:
            record = json.loads(self.last_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except ValueError:
            return None
        return record if isinstance(record, dict) else None


def _write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


class ReconcileLog:
    """Appends one run to the log; each line is flushed so a killed run still leaves a trail."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if path.exists() and path.stat().st_size > LOG_LIMIT:
            os.replace(path, path.with_name(path.name + ".1"))
        self._file = path.open("a", encoding="utf-8")

    def line(self, text: str) -> None:
        self._file.write(text.rstrip("\n") + "\n")
        self._file.flush()

    def command(self, result: CommandResult) -> None:
        shown = " ".join(result.argv)
        timing = f" ({result.seconds:.1f} s)" if result.seconds else ""
        self.line(f"$ {shown}")
        self.line(f"  -> {result.status}{timing}")
        tail = result.tail()
        if tail:
            self.line("\n".join("  | " + line for line in tail.splitlines()))

    def close(self) -> None:
        self._file.close()
