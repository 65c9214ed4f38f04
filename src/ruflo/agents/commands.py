"""Running a command for an agent: in the sandbox (ruflo.agents.sandbox), workspace as cwd, a
timeout with a grace period, an output cap and a scrubbed environment. Depends on the standard
library and the sandbox (and, lazily, ruflo.gateway.env).

The command runs in its own process group so a timeout stops it and everything it started:
SIGTERM to the group, then SIGKILL after the grace period. Output is read as it comes; only a
head and a tail of it are kept, so a command printing 100 MB costs a few kilobytes of memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruflo.agents.sandbox import Sandbox, current_sandbox

BASE_ENV_KEYS = ("PATH", "LANG", "LC_ALL", "TZ")
"""Host variables a command needs to find programs and read text; nothing else leaks through."""

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"

LINGER_SECONDS = 1.0
"""How long output may stay open after the command exits (background children) before they are
killed."""


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What a finished (or stopped) command left behind."""

    exit_code: int | None
    """The exit status; negative for a signal (as subprocess reports it); None if never started."""
    output: str
    """Stdout and stderr interleaved, cut to the cap with a marker where bytes were dropped."""
    output_bytes: int
    """Everything the command printed, counted even where not kept."""
    timed_out: bool = False
    duration: float = 0.0

    @property
    def truncated(self) -> bool:
        return self.output_bytes > len(self.output.encode())

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def summary(self) -> str:
        """The result as the agent (and the transcript) reads it."""
        if self.timed_out:
            head = f"timed out after {self.duration:.1f}s and was stopped (exit {self.exit_code})"
        else:
            head = f"exit code {self.exit_code}"
        return f"{head}\n{self.output}" if self.output else head


class OutputCap:
    """Keeps the first and last `limit // 2` bytes of a stream and counts the rest."""

    def __init__(self, limit: int) -> None:
        self.head_limit = limit // 2
        self.tail_limit = limit - self.head_limit
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.head_limit - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self.tail += chunk
            if len(self.tail) > self.tail_limit:
                del self.tail[:len(self.tail) - self.tail_limit]

    def text(self) -> str:
        dropped = self.total - len(self.head) - len(self.tail)
        if dropped <= 0:
            return (bytes(self.head) + bytes(self.tail)).decode(errors="replace")
        marker = f"\n[... {dropped} bytes of output omitted ...]\n"
        return (self.head.decode(errors="replace") + marker + self.tail.decode(errors="replace"))


def command_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment an agent's command gets: PATH and locale from the host and nothing else:
    no model credential (not the gateway's, not a provider's), no cloud credentials, no tokens
    of the person running ruflo. An outside agent's model token is added per attempt by the
    process adapter."""
    base = {key: os.environ[key] for key in BASE_ENV_KEYS if key in os.environ}
    base.setdefault("PATH", DEFAULT_PATH)
    base.setdefault("LANG", "C.UTF-8")
    # An agent edits a module and reruns its tests within the same second; Python's bytecode
    # cache keys on mtime (whole seconds) and size, so an edit of the same length would run the
    # stale .pyc. Writing none keeps every run honest (and the workspace free of __pycache__).
    base["PYTHONDONTWRITEBYTECODE"] = "1"
    from ruflo.gateway.env import spawn_env

    return spawn_env(base=base, extra=extra)


async def run_command(command: str | Sequence[str], *, cwd: Path, env: Mapping[str, str],
                      time_limit: float = 120.0, grace: float = 3.0, output_limit: int = 64_000,
                      stdin: bytes | None = None,
                      on_output: Callable[[bytes], None] | None = None,
                      sandbox: Sandbox | None = None,
                      halt: asyncio.Event | None = None) -> CommandResult:
    """Run `command` (a shell string, or an argv list run without a shell) in `sandbox` (None:
    this process's, see agents.sandbox.current_sandbox) with `cwd` writable, and wait for it.

    Never raises for the command's own failure: a non-zero exit, a timeout or a program that
    does not exist all come back as a CommandResult the agent can read. Raises ConfigError when
    commands are refused (no working sandbox and no opt-out): nothing runs then. When `halt` is
    set the command is stopped as on a timeout (SIGTERM, grace, SIGKILL), but not called timed out.
    Cancelled, it stops the command the same way before the cancellation goes on, and a second
    cancellation meanwhile does not cut that short: no process of the command outlives the call.
    """
    started = time.monotonic()
    sandbox = sandbox if sandbox is not None else current_sandbox()
    sandbox.require()
    argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
    program = argv[0] if argv else ""
    if not (shutil.which(program, path=env.get("PATH", DEFAULT_PATH)) if os.sep not in program
            else os.access(cwd / program, os.X_OK)):
        # Said here: inside the sandbox, bwrap would report it as its own failure (exit 1).
        return CommandResult(exit_code=None, output=f"could not start the command: no program "
                                                    f"{program!r} found", output_bytes=0)
    argv = sandbox.confine(argv, cwd=cwd, path=env.get("PATH"))
    try:
        process = await start(argv, cwd=cwd, env=env, stdin=stdin is not None)
    except OSError as error:
        return CommandResult(exit_code=None, output=f"could not start the command: {error}",
                             output_bytes=0, duration=time.monotonic() - started)

    cap = OutputCap(output_limit)

    async def feed_stdin() -> None:
        assert process.stdin is not None
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            process.stdin.write(stdin or b"")
            await process.stdin.drain()
        process.stdin.close()

    async def read_output() -> None:
        assert process.stdout is not None
        while chunk := await process.stdout.read(65536):
            cap.add(chunk)
            if on_output is not None:
                on_output(chunk)

    feeder = asyncio.ensure_future(feed_stdin()) if stdin is not None else None
    reader = asyncio.ensure_future(read_output())
    deadline = started + time_limit
    timed_out = False
    try:
        exited_at: float | None = None
        # On 3.11, process.wait() also waits for the pipes to close, so a background child that
        # keeps stdout open would hold us to the timeout: watch returncode instead.
        while not reader.done():
            now = time.monotonic()
            if now >= deadline or (halt is not None and halt.is_set()):
                break
            if process.returncode is not None:
                exited_at = exited_at or now
                if now - exited_at > LINGER_SECONDS:
                    break
            await asyncio.wait({reader}, timeout=min(0.1, deadline - now))
        if reader.done() and process.returncode is None:
            # Output closed but the command runs on: give it until the deadline to exit.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), max(0.0, deadline - time.monotonic()))
        if process.returncode is None:
            timed_out = halt is None or not halt.is_set()
    finally:
        # Also on cancellation: whatever the command started must not outlive it.
        await to_the_end(end_command(process, grace, (reader, feeder)))
    exit_code = process.returncode
    if sandbox.confines and exit_code is not None and 128 < exit_code <= 128 + 64:
        # bwrap reports a command killed by a signal as 128 + the signal, as a shell does.
        exit_code = 128 - exit_code
    return CommandResult(exit_code=exit_code, output=cap.text(), output_bytes=cap.total,
                         timed_out=timed_out, duration=time.monotonic() - started)


async def start(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str],
                stdin: bool) -> asyncio.subprocess.Process:
    """Start `argv` in a session of its own. A cancellation while it starts still stops what
    started, as a group: asyncio alone would kill only the leader (in the sandbox, bwrap, whose
    children would run on) and then wait for the output pipe they hold open."""
    spawning = asyncio.ensure_future(asyncio.create_subprocess_exec(
        *argv, cwd=cwd, env=dict(env), start_new_session=True,
        stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT))
    try:
        return await asyncio.shield(spawning)
    except asyncio.CancelledError:
        await to_the_end(kill_started(spawning))
        raise


async def kill_started(spawning: asyncio.Future[asyncio.subprocess.Process]) -> None:
    with contextlib.suppress(Exception):  # it failed to start: nothing runs
        process = await spawning
        kill_group(process.pid, signal.SIGKILL)
        await wait_exit(process, 5.0)


async def end_command(process: asyncio.subprocess.Process, grace: float,
                      helpers: Sequence[asyncio.Future[None] | None]) -> None:
    """Stop the command's process group (SIGTERM, grace, SIGKILL) and its output's readers."""
    if process.returncode is None:
        await stop_group(process, grace)
    kill_group(process.pid, signal.SIGKILL)
    for helper in helpers:
        if helper is not None and not helper.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(helper), 1.0)
            helper.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await helper


async def to_the_end(cleanup: Coroutine[Any, Any, None]) -> None:
    """Run `cleanup` to its end even when the caller is cancelled meanwhile, again and again
    (an engine pausing a hive cancels the attempt, then cancels it once more as it stops): a
    cancellation met on the way is raised once the cleanup is done. Only the cleanup's own
    cancellation (its event loop closing) cuts it short."""
    job = asyncio.ensure_future(cleanup)
    cancelled = False
    while not job.done():
        try:
            await asyncio.shield(job)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    job.result()


def kill_group(pgid: int, sig: signal.Signals) -> bool:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


async def stop_group(process: asyncio.subprocess.Process, grace: float) -> None:
    """SIGTERM to the process group; SIGKILL to it if the leader is still alive after `grace`."""
    kill_group(process.pid, signal.SIGTERM)
    if not await wait_exit(process, grace):
        kill_group(process.pid, signal.SIGKILL)
        await wait_exit(process, 5.0)
    # Children that ignored SIGTERM while the leader exited still get the group kill.
    kill_group(process.pid, signal.SIGKILL)


async def wait_exit(process: asyncio.subprocess.Process, seconds: float) -> bool:
    """Whether the process exited within `seconds` (polls returncode: process.wait() would also
    wait for pipes that a stray child may hold open)."""
    deadline = time.monotonic() + seconds
    while process.returncode is None:
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.02)
    return True
