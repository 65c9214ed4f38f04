"""The process adapter: an outside agent CLI (a coding agent, a script) does the task.

Depends on the Executor types and the command runner. The agent's `adapter_config`::

    command: ["my-agent", "--task", "{prompt}"]   # argv (or one string, split like a shell)
    timeout: 1800                                  # seconds; SIGTERM, then SIGKILL after grace
    grace: 5
    env: {EXTRA: "1"}                              # added to the scrubbed environment

The prompt goes in as `{prompt}` (an argument), through `{prompt_file}` (a file path), or on
stdin when the command names neither. Placeholders `{workspace}` and `{task_id}` also work.
No shell is involved, so a prompt can't inject commands. Exit code 0 means complete.

The agent reaches models through the model relay (gateway.relay) with a token for this attempt
only — OPENAI_BASE_URL, LITELLM_BASE_URL and ANTHROPIC_BASE_URL name the relay, OPENAI_API_KEY
and ANTHROPIC_API_KEY hold the token; it never sees the gateway key. Its calls are metered and
budgeted like the built-in agent's; a budget stop or a refused gateway key stops the command and
pauses the hive the same way. The command runs in the sandbox (agents.sandbox): the workspace
writable, the prompt's folder read-only, and for network only the byte pipe (agents.relay) to
the model relay.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import shlex
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ruflo.agents.base import OutcomeKind, RunContext, TaskOutcome
from ruflo.agents.commands import DEFAULT_PATH, CommandResult, command_env, run_command
from ruflo.agents.loop import Transcript
from ruflo.agents.prompts import task_prompt
from ruflo.agents.relay import gateway_relay
from ruflo.agents.sandbox import current_sandbox
from ruflo.agents.tools import truncate
from ruflo.errors import ConfigError
from ruflo.event_kinds import EventKind
from ruflo.gateway.base import CallContext
from ruflo.memory.notes import Memory, agent_namespace, hive_namespace
from ruflo.model import Agent, Hive, Task

if TYPE_CHECKING:
    from ruflo.gateway.relay import ModelRelay
    from ruflo.gateway.relay_tokens import Grant

MAX_OUTPUT_EVENTS = 200
"""Transcript events one run may add with its output; past that the output is only counted."""


def outside_prompt(task: Task, hive: Hive, workspace: Path, memory: Memory,
                   agent: Agent) -> str:
    """The task as an outside agent reads it: objective, task, verify command, relevant notes."""
    parts = [f"Objective of the hive: {hive.objective}"] if hive.objective else []
    parts += [task_prompt(task), f"Workspace folder: {workspace}"]
    notes = memory.search_many(f"{task.title}\n{task.description}",
                               [hive_namespace(hive.id), agent_namespace(agent.id)], limit=5)
    if notes:
        parts.append("Notes from the hive:\n" + "\n".join(f"- [{n.key}] {truncate(n.content, 800)}"
                                                         for n in notes))
    return "\n\n".join(parts)


class ProcessExecutor:
    """Runs the configured command for a task and streams its output into the transcript."""

    async def run(self, task: Task, agent: Agent, hive: Hive, ctx: RunContext) -> TaskOutcome:
        config = agent.adapter_config
        argv = parse_command(config.get("command"), agent)
        memory = ctx.memory if ctx.memory is not None else Memory(ctx.store)
        prompt = outside_prompt(task, hive, ctx.workspace, memory, agent)
        transcript = Transcript(ctx.store, hive, agent, task, ctx.limits.transcript_chars)
        timeout = number(config, "timeout", ctx.limits.process_timeout, agent)
        uses_file = any("{prompt_file}" in a for a in argv)
        uses_arg = any("{prompt}" in a for a in argv)

        def prepare(scratch: Path, env: dict[str, str]) -> Launch:
            prompt_file = scratch / "prompt.md"
            if uses_file:
                prompt_file.write_text(prompt)
            values = {"{prompt}": prompt, "{prompt_file}": str(prompt_file),
                      "{workspace}": str(ctx.workspace), "{task_id}": task.id}
            command = [substitute(a, values) for a in argv]
            transcript.add(EventKind.PROCESS_STARTED, command=[truncate(a, 200) for a in command],
                           prompt_via="file" if uses_file else "argument" if uses_arg
                           else "stdin")
            return Launch(command, stdin=None if uses_file or uses_arg else prompt.encode())

        stream = OutputStream(transcript)
        result = await run_outside(task, agent, hive, ctx, prepare, stream, transcript)
        transcript.add(EventKind.PROCESS_EXITED, exit_code=result.exit_code,
                       timed_out=result.timed_out, output_bytes=result.output_bytes,
                       duration=round(result.duration, 3))
        tail = truncate(result.output, ctx.limits.tool_output_chars)
        if result.ok:
            return TaskOutcome(OutcomeKind.COMPLETE, result=tail.strip() or "(no output)")
        why = (f"timed out after {timeout:g}s and was stopped" if result.timed_out
               else f"exited with {result.exit_code}")
        return TaskOutcome(OutcomeKind.FAILED, result=tail.strip() or None,
                           reason=f"{argv[0]} {why}")


@dataclass(frozen=True, slots=True)
class Launch:
    """One outside agent's command, made once its environment (relay addresses) is known."""

    argv: list[str]
    stdin: bytes | None = None
    """Fed to the command; None: it reads nothing (stdin is /dev/null)."""
    writable: tuple[Path, ...] = ()
    """Folders it may write besides the workspace (an agent CLI's private home)."""
    readable: tuple[Path, ...] = ()
    """Folders it may read besides the system's and its PATH's (the CLI's installation)."""


class OutputSink(Protocol):
    """Where a command's output goes as it comes (the transcript, cut into events)."""

    lines: OutputLines
    """Cuts the output into lines; run_outside adds the attempt's relay token to its secrets."""

    def feed(self, data: bytes) -> None: ...

    def flush(self) -> None: ...


async def run_outside(task: Task, agent: Agent, hive: Hive, ctx: RunContext,
                      prepare: Callable[[Path, dict[str, str]], Launch], sink: OutputSink,
                      transcript: Transcript) -> CommandResult:
    """Run an outside agent's command for one attempt: a relay token for this attempt only, the
    byte pipe as its one road out of the sandbox, the agent's `timeout`, `grace` and `env`
    settings, its output fed to `sink`. `prepare(scratch, env)` makes the command once the
    environment is final; `scratch` is a private folder that ends with the attempt.

    A stop the relay met (a spent budget, a refused gateway key) ends the command as a timeout
    would, is recorded as `process_exited` with `stopped`, and is raised for the engine to pause
    the hive, as for the built-in agent's own calls."""
    config = agent.adapter_config
    timeout = number(config, "timeout", ctx.limits.process_timeout, agent)
    grace = number(config, "grace", ctx.limits.command_grace, agent)
    extra = config.get("env") or {}
    if not isinstance(extra, dict) or not all(isinstance(v, str) for v in extra.values()):
        raise ConfigError(f"agent {agent.name}: adapter env must map names to strings")
    own = dict(ctx.env) if ctx.env else command_env()
    env = {**own, **extra}
    sandbox = ctx.sandbox if ctx.sandbox is not None else current_sandbox()
    sandbox.require()
    with tempfile.TemporaryDirectory(prefix="ruflo-prompt-") as scratch:
        async with contextlib.AsyncExitStack() as relaying:
            relay = await model_relay(ctx)
            grant: Grant | None = None
            if relay is not None:
                # The agent's model key: a token for this attempt only, revoked at the end.
                token, grant = relaying.enter_context(
                    relay.attempt(CallContext(hive.id, agent.id, task.id)))
                env.update(relay.agent_env(token))
                sink.lines.secrets.append(token)
            pipe = None
            if sandbox.confines:
                # Its one road out leads to the relay (or nowhere, without one).
                pipe = await relaying.enter_async_context(gateway_relay(
                    relay.agent_env("") if relay is not None else {}, Path(scratch)))
                env.update(pipe.env)
            launch = prepare(Path(scratch), env)
            if sandbox.confines:
                sandbox = sandbox.with_extras(
                    readable=[Path(scratch), *launch.readable], writable=launch.writable,
                    relay=pipe if pipe is not None and pipe.routes else None,
                    shown_path=own.get("PATH", DEFAULT_PATH))
            try:
                result = await run_command(
                    launch.argv, cwd=ctx.workspace, env=env, time_limit=timeout, grace=grace,
                    output_limit=ctx.limits.command_output_bytes, stdin=launch.stdin,
                    on_output=sink.feed, sandbox=sandbox,
                    halt=grant.stopped if grant is not None else None)
            except asyncio.CancelledError:
                # The engine ended the attempt (the hive paused or was cancelled): the command's
                # process group is stopped by now; the transcript says so.
                sink.flush()
                why = (str(grant.stop).split(";")[0] if grant is not None and grant.stop
                       else "the attempt was cancelled")
                transcript.add(EventKind.PROCESS_EXITED, exit_code=None, stopped=True,
                               reason=why)
                raise
        sink.flush()
    if grant is not None and grant.stop is not None:
        # A refused gateway key or a spent budget: the engine pauses, as for its own calls.
        transcript.add(EventKind.PROCESS_EXITED, exit_code=result.exit_code, stopped=True,
                       reason=str(grant.stop).split(";")[0])
        raise grant.stop
    return result


class OutputLines:
    """A command's output as text cut at line ends, as it comes: what both output sinks read.

    Bytes are read as UTF-8 (a character split between two reads waits for its end; a bad byte
    shows as U+FFFD). Each piece is whole lines, ending with the line end the command wrote
    ("\\n", a "\\r" before it kept), as many as have come; with a `limit`, as many as fit in
    `limit` characters, and a longer line comes in parts of at most `limit`. The last line may
    have no end. The `secrets` never come out: each shows as "[relay token]", also when the
    command prints one across two reads or where a long line is cut."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit
        """Characters one piece may hold; None: a piece holds every line come, however long."""
        self.secrets: list[str] = []
        """Text never handed on, one line each (the attempt's relay token, if printed)."""
        self.pending = ""
        """The start of a line whose end has not come yet."""
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes) -> list[str]:
        """The pieces of text that `data` completes."""
        return self.take(self.decoder.decode(data))

    def finish(self) -> list[str]:
        """What is left when the output ends, the last line even without a line end."""
        pieces = self.take(self.decoder.decode(b"", final=True))
        if self.pending:
            pieces.append(self.withhold(self.pending))
            self.pending = ""
        return pieces

    def take(self, decoded: str) -> list[str]:
        text, start, pieces = self.pending + decoded, 0, list[str]()
        searched = len(self.pending)  # the text before it holds no line end
        while True:
            bound = len(text) if self.limit is None else start + self.limit
            end = text.rfind("\n", max(start, searched), bound)
            if end >= 0:
                cut: int | None = end + 1
            elif self.limit is not None and len(text) - start >= self.limit:
                cut = self.piece_end(text, start, bound)
            else:
                cut = None
            if cut is None:
                self.pending = text[start:]
                return pieces
            pieces.append(self.withhold(text[start:cut]))
            start = cut

    def piece_end(self, text: str, start: int, at: int) -> int | None:
        """Where the piece of a long line from `start` ends: at `at`, or earlier where a secret
        begins that `at` would cut in two, whole or still coming. None: wait for more text."""
        moved = True
        while moved:
            moved = False
            for secret in self.secrets:
                for begins in range(max(start, at - len(secret) + 1), at):
                    if secret.startswith(text[begins:begins + len(secret)]):
                        at, moved = begins, True
                        break
        if at > start:
            return at
        # The piece begins with a secret of `limit` characters or more: the secret is the piece.
        whole = [len(secret) for secret in self.secrets if text.startswith(secret, start)]
        return start + max(whole) if whole else None

    def withhold(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "[relay token]")
        return text


class OutputStream:
    """Cuts a command's output into transcript events of whole lines, up to a bound."""

    def __init__(self, transcript: Transcript, chunk_chars: int = 2000) -> None:
        self.transcript = transcript
        self.lines = OutputLines(limit=chunk_chars)
        self.events = 0
        self.dropped = 0

    def feed(self, data: bytes) -> None:
        for text in self.lines.feed(data):
            self.add(text)

    def flush(self) -> None:
        for text in self.lines.finish():
            self.add(text)
        if self.dropped:
            self.transcript.add(EventKind.PROCESS_OUTPUT, text="", dropped_chars=self.dropped)

    def add(self, text: str) -> None:
        if self.events >= MAX_OUTPUT_EVENTS:
            self.dropped += len(text)
            return
        self.events += 1
        self.transcript.add(EventKind.PROCESS_OUTPUT, text=text)


async def model_relay(ctx: RunContext) -> ModelRelay | None:
    """The relay of the run's gateway client (started on first use), if it has one."""
    if ctx.gateway is None:
        return None
    from ruflo.gateway.client import GatewayClient  # the SDK loads only when a relay is due

    if isinstance(ctx.gateway, GatewayClient):
        return await ctx.gateway.relay()
    return None


def parse_command(value: Any, agent: Agent) -> list[str]:
    if isinstance(value, str) and value.strip():
        return shlex.split(value)
    if isinstance(value, list) and value and all(isinstance(a, str) for a in value):
        return list(value)
    raise ConfigError(f"agent {agent.name} uses the process adapter but its adapter config has "
                      "no command (a list of arguments, or a string)")


def number(config: dict[str, Any], name: str, default: float, agent: Agent) -> float:
    value = config.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"agent {agent.name}: adapter {name} must be a positive number")
    return float(value)


def substitute(argument: str, values: dict[str, str]) -> str:
    for placeholder, value in values.items():
        argument = argument.replace(placeholder, value)
    return argument
