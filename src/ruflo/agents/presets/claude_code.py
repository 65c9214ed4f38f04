"""The Claude Code preset (`adapter: claude-code`): `claude -p` headless, its stream-json output
read into turns, tool calls and results. Depends on the preset types.

Claude Code speaks Anthropic Messages (`POST /v1/messages`, streamed) to ANTHROPIC_BASE_URL with
ANTHROPIC_API_KEY: both name the model relay and the attempt's token. Its settings, sessions and
caches go to the attempt's private home (CLAUDE_CONFIG_DIR there too). Overrides in the agent's
adapter config: `permission_mode` (default acceptEdits), `allowed_tools` (a list), `max_turns`.
"""

from __future__ import annotations

from typing import Any

from ruflo.agents.presets.base import Event, JsonLines, Preset, Reader, Setup
from ruflo.event_kinds import EventKind

ALLOWED_TOOLS = ("Read", "Write", "Edit", "MultiEdit", "Bash", "Glob", "Grep", "LS",
                 "TodoWrite", "NotebookEdit")
"""Tools it may use without asking (no one is there to ask): files and commands, which ruflo's
sandbox confines to the attempt's worktree. Not WebFetch / WebSearch: there is no network."""

QUIET_ENV = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_BUG_COMMAND": "1",
    "DISABLE_NON_ESSENTIAL_MODEL_CALLS": "1",
    "CLAUDE_CODE_DISABLE_TERMINAL_TITLE": "1",
}
"""Telemetry, error reports, update checks and side calls off."""


class ClaudeCode(Preset):
    def argv(self, program: str, setup: Setup) -> list[str]:
        config = setup.config
        tools = config.get("allowed_tools") or list(ALLOWED_TOOLS)
        # In ruflo's sandbox nothing outside the worktree can be reached, so it may act without
        # asking (acceptEdits alone still asks for paths it deems sensitive — and a worktree
        # lives under the repository's .git folder). Unconfined, it only accepts edits.
        mode = config.get("permission_mode") or (
            "bypassPermissions" if setup.confined else "acceptEdits")
        argv = [program, "-p", "--output-format", "stream-json", "--verbose",
                "--model", setup.model, "--permission-mode", str(mode),
                "--allowedTools", ",".join(str(t) for t in tools)]
        if config.get("max_turns") is not None:
            argv += ["--max-turns", str(int(config["max_turns"]))]
        return [*argv, "--", setup.prompt]

    def env(self, setup: Setup) -> dict[str, str]:
        return {**QUIET_ENV,
                "CLAUDE_CONFIG_DIR": str(setup.home / ".claude"),
                "ANTHROPIC_MODEL": setup.model,
                "ANTHROPIC_SMALL_FAST_MODEL": setup.model,
                "ANTHROPIC_DEFAULT_HAIKU_MODEL": setup.model,
                # bypassPermissions is refused to root unless it is told it runs in a sandbox
                **({"IS_SANDBOX": "1"} if setup.confined else {})}

    def reader(self) -> Reader:
        return StreamJson()


class StreamJson(JsonLines):
    """`--output-format stream-json --verbose`: one JSON object a line — `system` (init),
    `assistant` (a message: text and tool_use blocks, one block a line as they stream, all with
    the message's id), `user` (tool_result blocks), `result` (the final answer, is_error,
    num_turns, usage). A turn is written once its message is whole."""

    def __init__(self) -> None:
        super().__init__()
        self.message: dict[str, Any] | None = None
        """The assistant message being received (its blocks so far)."""

    def event(self, event: dict[str, Any], line: str) -> list[Event]:
        kind = event.get("type")
        if kind == "assistant":
            return self.assistant(event.get("message") or {})
        done = self.finish()
        if kind == "user":
            return done + self.results(event.get("message") or {})
        if kind == "result":
            self.final = str(event.get("result") or "") or self.final
            if event.get("is_error"):
                self.error = str(event.get("result") or event.get("subtype") or "error")
            self.turns = int(event.get("num_turns") or self.turns)
            self.usage = {k: v for k, v in (event.get("usage") or {}).items()
                          if isinstance(v, int)}
            return done
        if kind == "system":
            return done  # init: the session, tools and model; nothing the transcript needs
        return done + self.plain(line)

    def assistant(self, message: dict[str, Any]) -> list[Event]:
        held = self.message
        if held is not None and held.get("id") == message.get("id"):
            held["content"] = [*held.get("content", []), *(message.get("content") or [])]
            return []
        done = self.finish()
        self.message = {**message, "content": list(message.get("content") or [])}
        return done

    def finish(self) -> list[Event]:
        message, self.message = self.message, None
        if message is None:
            return []
        self.turns += 1
        blocks = [b for b in message.get("content") or [] if isinstance(b, dict)]
        text = "".join(str(b.get("text") or "") for b in blocks if b.get("type") == "text")
        calls = [b for b in blocks if b.get("type") == "tool_use"]
        usage = message.get("usage") or {}
        if text:
            self.final = text
        events: list[Event] = [(EventKind.AGENT_TURN, {
            "turn": self.turns, "content": text, "model": message.get("model") or "",
            "tool_calls": [{"name": c.get("name"), "arguments": c.get("input")} for c in calls],
            "prompt_tokens": usage.get("input_tokens")})]
        return events + [(EventKind.TOOL_CALL, {
            "turn": self.turns, "call_id": c.get("id"), "name": c.get("name"),
            "arguments": c.get("input")}) for c in calls]

    def results(self, message: dict[str, Any]) -> list[Event]:
        content = message.get("content")
        blocks = [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []
        return [(EventKind.TOOL_RESULT, {"turn": self.turns, "call_id": b.get("tool_use_id"),
                                         "ok": not b.get("is_error"),
                                         "content": block_text(b.get("content"))})
                for b in blocks if b.get("type") == "tool_result"]


def block_text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


PRESET = ClaudeCode(name="claude-code", program="claude",
                    package="npm:@anthropic-ai/claude-code@2.1.332")
