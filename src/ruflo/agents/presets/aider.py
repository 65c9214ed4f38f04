"""The aider preset (`adapter: aider`): `aider --message` headless (one request, then exit), its
plain output read into turns and applied edits. Depends on the preset types.

aider speaks OpenAI Chat Completions through its own LiteLLM to OPENAI_API_BASE with
OPENAI_API_KEY: the model relay and the attempt's token; the model is `openai/MODEL`. Everything
it would write besides the task's files goes to the attempt's private home: chat and input
history, a git identity (else it writes one into the repository's config), and the model's
metadata file (given, so it never fetches LiteLLM's price list from the
web). It edits without asking (`--yes-always`), never commits (ruflo integrates the worktree),
leaves .gitignore alone, checks no updates and sends no analytics. Its repository map is off
(`--map-tokens 0`): the map's tag cache would be written into the worktree and merged with the
work. Inside ruflo's sandbox it runs with `--no-git` (an attempt's git metadata is read-only
there, and aider's git use writes), so it edits the files it is given (`files`) and those the model names; the
repository's other files it does not see. aider has no structured output: the reader takes "Applied edit to PATH" as an edit and the
"Tokens: N sent, M received." line as the end of a model turn. Overrides in the agent's adapter
config: `edit_format` (aider's; default `diff`, its SEARCH/REPLACE blocks, which capable models
write well — aider would pick `whole`, the entire file, for a model it does not know), `files`
(paths added to the chat at the start).
"""

from __future__ import annotations

import json
import re

from ruflo.agents.presets.base import Event, Preset, Reader, Setup
from ruflo.errors import ConfigError
from ruflo.event_kinds import EventKind

QUIET_FLAGS = ("--yes-always", "--no-auto-commits", "--no-dirty-commits", "--no-gitignore",
               "--no-check-update", "--no-show-release-notes", "--analytics-disable",
               "--no-show-model-warnings", "--no-pretty", "--no-stream", "--no-fancy-input",
               "--no-detect-urls", "--no-restore-chat-history", "--map-tokens", "0")
"""Headless and quiet: no questions, commits, .gitignore edits, update checks or analytics."""

CONTEXT_TOKENS = 128_000
"""The context size aider is told the relay's model has (it knows no relay model's size)."""

APPLIED = re.compile(r"^Applied edit to (?P<path>.+?)\s*$")
TOKENS = re.compile(r"^Tokens: (?P<sent>[\d.,]+k?) sent, (?P<received>[\d.,]+k?) received")
FAILED = re.compile(r"^litellm\.(?P<kind>\w+Error): (?P<message>.*)$")
PREAMBLE = re.compile(r"^(Aider v|Model: |Git repo: |Repo-map: |Added .* to the chat|Analytics |"
                      r"Detected dumb terminal|Warning|Update git )")
"""aider's own lines before a model's answer: not part of the answer."""


class Aider(Preset):
    def argv(self, program: str, setup: Setup) -> list[str]:
        home, config = setup.home, setup.config
        files = config.get("files") or []
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise ConfigError("adapter config files must be a list of paths; nothing was run")
        argv = [program, "--model", f"openai/{setup.model}",
                "--model-metadata-file", str(home / "model-metadata.json"),
                "--chat-history-file", str(home / "chat-history.md"),
                "--input-history-file", str(home / "input-history"),
                *QUIET_FLAGS]
        if setup.confined:
            # Inside ruflo's sandbox the worktree's git metadata (in the repository's .git) is
            # read-only and aider's git use writes. ruflo commits and merges the work.
            argv.append("--no-git")
        argv += ["--edit-format", str(config.get("edit_format") or "diff")]
        return [*argv, f"--message={setup.prompt}", *files]

    def env(self, setup: Setup) -> dict[str, str]:
        metadata = {f"openai/{setup.model}": {
            "max_input_tokens": CONTEXT_TOKENS, "max_output_tokens": 8192,
            "input_cost_per_token": 0, "output_cost_per_token": 0,
            "litellm_provider": "openai", "mode": "chat"}}
        (setup.home / "model-metadata.json").write_text(json.dumps(metadata))
        # An identity of its own: without one aider writes one into the repository's config,
        # which the sandbox keeps read-only (and which is not the attempt's to change).
        (setup.home / ".gitconfig").write_text(
            "[user]\n\tname = ruflo agent (aider)\n\temail = aider@ruflo.invalid\n")
        return {"OPENAI_API_BASE": setup.env.get("OPENAI_BASE_URL", ""),
                "LITELLM_LOCAL_MODEL_COST_MAP": "True", "AIDER_ANALYTICS": "false",
                "AIDER_CHECK_UPDATE": "false", "NO_COLOR": "1", "TERM": "dumb"}

    def reader(self) -> Reader:
        return Plain()


class Plain(Reader):
    """aider's plain output: every line kept as output; an applied edit also as a tool result,
    the token line as the end of a model turn, LiteLLM's errors as the CLI's failure."""

    def __init__(self) -> None:
        super().__init__()
        self.said: list[str] = []
        """The lines since the last model turn ended: its answer, as printed."""

    def read(self, line: str) -> list[Event]:
        events = super().read(line)
        applied = APPLIED.match(line)
        if applied:
            path = applied["path"]
            return [*events, (EventKind.TOOL_CALL, {"turn": self.turns, "name": "edit",
                                                    "arguments": {"path": path}}),
                    (EventKind.TOOL_RESULT, {"turn": self.turns, "name": "edit", "ok": True,
                                             "content": f"applied edit to {path}"})]
        tokens = TOKENS.match(line)
        if tokens:
            self.turns += 1
            sent, received = count(tokens["sent"]), count(tokens["received"])
            self.usage = {"input_tokens": self.usage.get("input_tokens", 0) + sent,
                          "output_tokens": self.usage.get("output_tokens", 0) + received}
            answer = "\n".join(self.said).strip()
            self.said = []
            if answer:
                self.final = answer
            return [*events, (EventKind.AGENT_TURN, {
                "turn": self.turns, "content": answer, "tool_calls": [],
                "prompt_tokens": sent, "completion_tokens": received})]
        failed = FAILED.match(line)
        if failed:
            self.error = f"{failed['kind']}: {failed['message']}"
        if not PREAMBLE.match(line):
            self.said.append(line)
        return events


def count(text: str) -> int:
    """aider's token count as printed: `747`, `1,234` or `12k`."""
    text = text.replace(",", "")
    return int(float(text[:-1]) * 1000) if text.endswith("k") else int(float(text))


PRESET = Aider(name="aider", program="aider", package="pypi:aider-chat==0.86.2")
