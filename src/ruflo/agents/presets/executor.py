"""The preset executor: runs an agent CLI (Claude Code, Codex, ...) headless for one attempt, as
its preset says, through the process adapter's machinery (sandbox, relay token, timeout and
process group, budget stops). Depends on the process adapter and the preset types.

Per-agent overrides in `adapter_config`: `program` (a path or a name), `model`, `args` (added
after the preset's), `env` (added last, so it can override the preset's), `timeout`, `grace`,
and what a preset documents for itself (e.g. Claude Code's `permission_mode`).
"""

from __future__ import annotations

from pathlib import Path

from ruflo.agents.base import OutcomeKind, RunContext, TaskOutcome
from ruflo.agents.commands import DEFAULT_PATH, command_env
from ruflo.agents.loop import Transcript
from ruflo.agents.presets.base import (
    Event,
    Preset,
    Reader,
    Setup,
    find_program,
    installation,
)
from ruflo.agents.process import (
    Launch,
    OutputLines,
    number,
    outside_prompt,
    run_outside,
)
from ruflo.agents.sandbox import current_sandbox
from ruflo.agents.tools import truncate
from ruflo.errors import ConfigError
from ruflo.event_kinds import EventKind
from ruflo.memory.notes import Memory
from ruflo.model import Agent, Hive, Task

MAX_EVENTS = 2000
"""Transcript events one run may add from its output; past that lines are only counted."""

HOME_DIRS = {"XDG_CONFIG_HOME": ".config", "XDG_CACHE_HOME": ".cache",
             "XDG_DATA_HOME": ".local/share", "XDG_STATE_HOME": ".local/state"}
"""Where CLIs keep settings, caches and sessions: all inside the attempt's private home."""


class PresetExecutor:
    """Runs the agent's CLI for a task and reads its structured output into the transcript."""

    def __init__(self, preset: Preset) -> None:
        self.preset = preset

    async def run(self, task: Task, agent: Agent, hive: Hive, ctx: RunContext) -> TaskOutcome:
        preset, config = self.preset, agent.adapter_config
        transcript = Transcript(ctx.store, hive, agent, task, ctx.limits.transcript_chars)
        path = (ctx.env or command_env()).get("PATH", DEFAULT_PATH)
        program = find_program(preset, config, path)
        if program is None:
            reason = (f"{preset.name}: program {config.get('program') or preset.program!r} not "
                      f"found (on PATH or in .agent-clis); install {preset.package} "
                      "(scripts/install does) or set the agent's adapter config `program`")
            transcript.add(EventKind.PROCESS_EXITED, exit_code=None, agent_cli=preset.name,
                           error=reason)
            return TaskOutcome(OutcomeKind.FAILED, reason=reason)
        model = config.get("model") or agent.model or ctx.model
        args = config.get("args") or []
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise ConfigError(f"agent {agent.name}: adapter args must be a list of strings; "
                              "nothing was run")
        if not isinstance(model, str) or not model:
            raise ConfigError(f"agent {agent.name}: adapter model must be a model name")
        timeout = number(config, "timeout", ctx.limits.process_timeout, agent)
        memory = ctx.memory if ctx.memory is not None else Memory(ctx.store)
        prompt = outside_prompt(task, hive, ctx.workspace, memory, agent)
        sandbox = ctx.sandbox if ctx.sandbox is not None else current_sandbox()
        reader = preset.reader()
        sink = ReaderSink(transcript, reader)

        def prepare(scratch: Path, env: dict[str, str]) -> Launch:
            home = scratch / "home"
            home.mkdir()
            env["HOME"] = str(home)
            for var, sub in HOME_DIRS.items():
                (home / sub).mkdir(parents=True, exist_ok=True)
                env[var] = str(home / sub)
            setup = Setup(prompt=prompt, workspace=ctx.workspace, home=home, env=dict(env),
                          model=model, config=config, confined=sandbox.confines)
            env.update(preset.env(setup))
            env.update(config.get("env") or {})  # the agent's own word goes last
            argv = [*preset.argv(program, setup), *args]
            transcript.add(EventKind.PROCESS_STARTED, agent_cli=preset.name, program=program,
                           model=model, command=[truncate(a, 200) for a in argv],
                           prompt_via="argument")
            return Launch(argv, writable=(home,), readable=(installation(program),))

        result = await run_outside(task, agent, hive, ctx, prepare, sink, transcript)
        final = reader.final
        transcript.add(EventKind.PROCESS_EXITED, agent_cli=preset.name,
                       exit_code=result.exit_code, timed_out=result.timed_out,
                       output_bytes=result.output_bytes, duration=round(result.duration, 3),
                       turns=reader.turns, final=final or "", error=reader.error or "",
                       usage=reader.usage)
        tail = truncate(result.output, ctx.limits.tool_output_chars).strip()
        if result.ok:
            return TaskOutcome(OutcomeKind.COMPLETE, result=final or tail or "(no output)",
                               turns=reader.turns)
        why = (f"timed out after {timeout:g}s and was stopped" if result.timed_out
               else f"exited with {result.exit_code}")
        said = f": {reader.error}" if reader.error else ""
        return TaskOutcome(OutcomeKind.FAILED, result=final or tail or None, turns=reader.turns,
                           reason=f"{preset.name} {why}{said}")


class ReaderSink:
    """Cuts the output into lines and hands each to the preset's reader; what it finds goes
    into the transcript (the attempt's relay token never does)."""

    def __init__(self, transcript: Transcript, reader: Reader) -> None:
        self.transcript = transcript
        self.reader = reader
        self.lines = OutputLines()  # whole lines, however long: the reader parses each
        self.events = 0
        self.dropped = 0

    def feed(self, data: bytes) -> None:
        for text in self.lines.feed(data):
            self.read(text)

    def flush(self) -> None:
        for text in self.lines.finish():
            self.read(text)
        self.add(self.reader.finish())
        if self.dropped:
            self.transcript.add(EventKind.PROCESS_OUTPUT, text="", dropped_lines=self.dropped)

    def read(self, text: str) -> None:
        for line in text.removesuffix("\n").split("\n"):
            self.add(self.reader.read(line))

    def add(self, events: list[Event]) -> None:
        for kind, data in events:
            if self.events >= MAX_EVENTS:
                self.dropped += 1
                continue
            self.events += 1
            self.transcript.add(kind, **data)
