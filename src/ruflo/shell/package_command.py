"""Run one package-manager command with a timeout and keep what a person needs to read later:
the command, its real exit code and the tail of its output. Depends on the standard library.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

TAIL_LINES = 30
TAIL_CHARS = 4000


@dataclass(frozen=True, slots=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int | None
    """The process's own exit code; None when it never ran or was killed on timeout."""
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False
    error: str | None = None
    """Why it did not run or finish (not found on PATH, timed out)."""

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def status(self) -> str:
        if self.error:
            return self.error
        return f"rc={self.returncode}"

    @property
    def output(self) -> str:
        return "\n".join(part for part in (self.stdout.strip(), self.stderr.strip()) if part)

    def tail(self, lines: int = TAIL_LINES, chars: int = TAIL_CHARS) -> str:
        text = "\n".join(self.output.splitlines()[-lines:])
        return text[-chars:]


class Runner:
    """Runs commands with a per-step timeout in a prepared environment, reporting each result to
    `on_result` (the reconcile log)."""

    def __init__(self, *, timeout: float = 600.0, env: Mapping[str, str] | None = None,
                 on_result: Callable[[CommandResult], None] | None = None) -> None:
        self.timeout = timeout
        self.base_env = dict(os.environ if env is None else env)
        self.on_result = on_result

    def env(self) -> dict[str, str]:
        """The environment for the next command: mise's shims first on PATH once they exist, so
        npm and pipx run on the runtimes mise activated, not on the system's."""
        env = dict(self.base_env)
        shims = mise_shims_dir(env)
        path = env.get("PATH", os.defpath)
        if shims.is_dir() and str(shims) not in path.split(os.pathsep):
            env["PATH"] = os.pathsep.join((str(shims), path))
        # Non-interactive, no nagging: nothing may wait for input at boot.
        env.setdefault("npm_config_update_notifier", "false")
        env.setdefault("npm_config_fund", "false")
        env.setdefault("npm_config_audit", "false")
        env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        env.setdefault("MISE_YES", "1")
        return env

    def which(self, program: str) -> str | None:
        return shutil.which(program, path=self.env().get("PATH"))

    def run(self, argv: list[str], *, timeout: float | None = None) -> CommandResult:
        result = self._run(tuple(argv), self.timeout if timeout is None else timeout)
        if self.on_result is not None:
            self.on_result(result)
        return result

    def _run(self, argv: tuple[str, ...], timeout: float) -> CommandResult:
        env = self.env()
        started = time.monotonic()
        program = shutil.which(argv[0], path=env.get("PATH"))
        if program is None:
            return CommandResult(argv, None, "", "", 0.0, error=f"not run: {argv[0]} not found on PATH")
        try:
            process = subprocess.Popen(
                [program, *argv[1:]], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, env=env, text=True, errors="replace",
                start_new_session=True)
        except OSError as error:
            return CommandResult(argv, None, "", "", 0.0,
                                 error=f"not run: {error.strerror or error}")
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            # Package managers spawn children (node-gyp, pip, rustc): kill the whole group.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            try:
                stdout, stderr = process.communicate(timeout=5)
            except subprocess.TimeoutExpired:  # a grandchild left the group and holds the pipes
                process.kill()
                stdout, stderr = "", ""
            return CommandResult(argv, None, stdout, stderr, time.monotonic() - started,
                                 timed_out=True, error=f"timed out after {timeout:g} s (killed)")
        return CommandResult(argv, process.returncode, stdout, stderr,
                             time.monotonic() - started)


def mise_shims_dir(env: Mapping[str, str]) -> Path:
    if env.get("MISE_DATA_DIR"):
        return Path(env["MISE_DATA_DIR"]) / "shims"
    data_home = env.get("XDG_DATA_HOME") or str(Path(env.get("HOME", "~")).expanduser()
                                                 / ".local" / "share")
    return Path(data_home) / "mise" / "shims"
