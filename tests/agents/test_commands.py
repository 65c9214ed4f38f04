"""Running commands: timeout with SIGTERM then SIGKILL, the output cap, the scrubbed env."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from pathlib import Path

import pytest

from ruflo.agents.commands import command_env, run_command
from ruflo.agents.sandbox import Sandbox, SandboxMode, current_sandbox
from waiting import until


async def test_exit_code_and_interleaved_output(workspace: Path) -> None:
    result = await run_command("echo out; echo err >&2; exit 3", cwd=workspace,
                               env=command_env())
    assert result.exit_code == 3
    assert not result.timed_out
    assert result.output == "out\nerr\n"


async def test_the_workspace_is_the_cwd(workspace: Path) -> None:
    result = await run_command("pwd", cwd=workspace, env=command_env())
    assert result.output.strip() == str(workspace)  # tmp_path is already a real path


async def test_a_command_that_never_ends_is_stopped(workspace: Path) -> None:
    result = await run_command("sleep 600", cwd=workspace, env=command_env(), time_limit=0.5,
                               grace=0.5)
    assert result.timed_out
    assert result.exit_code == -15
    assert result.duration < 5
    assert "timed out" in result.summary()


async def test_sigterm_ignored_then_sigkill_for_the_whole_group(workspace: Path) -> None:
    # A sleep of an odd length marks the background child; it is looked for by its command line
    # (inside the sandbox's own PID namespace, the pid it sees of itself means nothing here).
    length = f"600.{uuid.uuid4().int % 10**9}"
    script = f"trap '' TERM; (trap '' TERM; sleep {length}) & sleep 600"
    result = await run_command(script, cwd=workspace, env=command_env(), time_limit=0.5,
                               grace=0.3)
    assert result.timed_out
    assert result.exit_code == -9
    assert running_with(length) == []
    witness = await asyncio.create_subprocess_exec("sleep", length)  # the search finds one
    try:
        assert running_with(length) == [witness.pid]
    finally:
        witness.kill()
        await witness.wait()


def running_with(argument: str) -> list[int]:
    """Live processes (zombies excluded) with `argument` among their arguments."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            arguments = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if argument.encode() in arguments and state != "Z":
            found.append(int(entry.name))
    return found


async def test_background_children_do_not_hold_the_call(workspace: Path) -> None:
    result = await run_command("sleep 600 & echo started", cwd=workspace, env=command_env(),
                               time_limit=30)
    assert result.exit_code == 0
    assert not result.timed_out
    assert result.output == "started\n"
    assert result.duration < 10


async def test_a_command_printing_100_mb_keeps_only_the_cap(workspace: Path) -> None:
    result = await run_command(f"{sys.executable} -c \"import sys; [sys.stdout.write('y' * 1048575 + chr(10)) for _ in range(100)]\"; echo the-end",
                               cwd=workspace, env=command_env(), output_limit=10_000,
                               time_limit=60)
    assert result.exit_code == 0
    assert result.output_bytes == 100 * 1048576 + len("the-end\n")
    assert len(result.output) < 10_200
    assert result.truncated
    assert "bytes of output omitted" in result.output
    assert result.output.endswith("the-end\n")  # the tail is kept: test summaries live there


async def test_a_missing_program_is_a_result_not_a_crash(workspace: Path) -> None:
    result = await run_command(["/nonexistent/program"], cwd=workspace, env=command_env())
    assert result.exit_code is None
    assert "could not start" in result.output


async def test_stdin_is_fed(workspace: Path) -> None:
    result = await run_command("cat", cwd=workspace, env=command_env(), stdin=b"hello")
    assert result.output == "hello"


async def test_the_environment_is_scrubbed(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-provider")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws")
    monkeypatch.setenv("HARMLESS_BUT_UNLISTED", "1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-virtual")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:4000")
    result = await run_command("env", cwd=workspace, env=command_env())
    names = dict(line.split("=", 1) for line in result.output.splitlines() if "=" in line)
    assert "sk-virtual" not in result.output  # no model credential for commands, not even ours
    for hidden in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "AWS_SECRET_ACCESS_KEY", "HARMLESS_BUT_UNLISTED", "HOME"):
        assert hidden not in names
    assert "PATH" in names


@pytest.mark.parametrize("sandboxed", [True, False])
async def test_a_command_cancelled_while_it_starts_leaves_nothing_running(
        workspace: Path, sandboxed: bool) -> None:
    """A worker stopping hands back its claims at once: a command cancelled at any moment of
    its start (in the sandbox: while bwrap builds it) is stopped whole, never left running."""
    sandbox = current_sandbox() if sandboxed else Sandbox(SandboxMode.OFF)
    for delay in (0, 1, 2, 3, 5, 8, 13, 21):  # event loop turns before the cancellation
        length = f"600.{uuid.uuid4().int % 10**9}"
        running = asyncio.ensure_future(run_command(["sleep", length], cwd=workspace,
                                                    env=command_env(), sandbox=sandbox))
        for _ in range(delay):
            await asyncio.sleep(0)
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(running, 30)
        assert running_with(length) == [], delay


async def test_a_halt_stops_the_command_like_a_timeout_but_is_not_one(workspace: Path) -> None:
    halt = asyncio.Event()
    running = asyncio.ensure_future(run_command(
        ["sh", "-c", "echo started; sleep 600"], cwd=workspace, env=command_env(),
        time_limit=600, grace=1, halt=halt, on_output=lambda _: halt.set()))
    result = await asyncio.wait_for(running, 60)
    assert "started" in result.output
    assert result.timed_out is False
    assert result.exit_code is not None
    assert result.exit_code < 0  # ended by a signal


@pytest.mark.parametrize("sandboxed", [True, False])
async def test_a_command_cancelled_twice_is_still_stopped_whole(
        workspace: Path, sandboxed: bool) -> None:
    """An engine pausing a hive cancels the attempt, then cancels it again as it stops: the
    second cancellation must not cut short the first one's SIGTERM, grace and SIGKILL, or an
    agent CLI that shrugs off SIGTERM would outlive its attempt."""
    sandbox = current_sandbox() if sandboxed else Sandbox(SandboxMode.OFF)
    length = f"600.{uuid.uuid4().int % 10**9}"
    script = (f"trap 'echo > got-term' TERM; (trap '' TERM; exec sleep {length}) & "
              "echo started; while :; do wait; done")
    started = asyncio.Event()
    running = asyncio.ensure_future(run_command(
        script, cwd=workspace, env=command_env(), time_limit=600, grace=2, sandbox=sandbox,
        on_output=lambda _: started.set()))
    await asyncio.wait_for(started.wait(), 60)
    running.cancel()
    await until(lambda: (workspace / "got-term").exists())  # in its grace period now
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(running, 60)
    assert running_with(length) == []
