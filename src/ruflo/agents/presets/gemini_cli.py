"""The Gemini CLI preset (`adapter: gemini-cli`): `gemini -p` headless, its stream-json events
read into turns, tool calls and results. Depends on the preset types.

Gemini CLI speaks Google's Gemini API (`POST /v1beta/models/MODEL:streamGenerateContent`) to
GOOGLE_GEMINI_BASE_URL with GEMINI_API_KEY (sent as `x-goog-api-key`): both name the model relay
and the attempt's token, and the relay carries that protocol to the gateway (LiteLLM serves it).
`~/.gemini/settings.json`, written into the attempt's private home, picks the API-key auth (the
base URL alone would select a "gateway" auth that headless mode refuses), and turns usage
statistics, telemetry and update checks off. Inside ruflo's sandbox every tool is approved
(`--approval-mode yolo`: bubblewrap confines it to the worktree); unconfined it keeps
`auto_edit` (file edits only). Overrides in the agent's adapter config: `approval_mode`.
"""

from __future__ import annotations

import json
from typing import Any

from ruflo.agents.presets.base import Event, JsonLines, Preset, Reader, Setup
from ruflo.event_kinds import EventKind

SETTINGS: dict[str, Any] = {
    "security": {"auth": {"selectedType": "gemini-api-key"}},
    "privacy": {"usageStatisticsEnabled": False},
    "telemetry": {"enabled": False},
    "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False},
}
"""API-key auth against GOOGLE_GEMINI_BASE_URL; usage statistics, telemetry, updates off."""


class GeminiCli(Preset):
    def argv(self, program: str, setup: Setup) -> list[str]:
        mode = setup.config.get("approval_mode") or ("yolo" if setup.confined else "auto_edit")
        # --prompt=TEXT: a prompt that starts with a dash stays the prompt.
        return [program, "--model", setup.model, "--output-format", "stream-json",
                "--approval-mode", str(mode), "--skip-trust", f"--prompt={setup.prompt}"]

    def env(self, setup: Setup) -> dict[str, str]:
        folder = setup.home / ".gemini"
        folder.mkdir(exist_ok=True)
        (folder / "settings.json").write_text(json.dumps(SETTINGS, indent=2))
        token = setup.env.get("GEMINI_API_KEY") or setup.env.get("OPENAI_API_KEY", "")
        return {"GEMINI_API_KEY": token, "GEMINI_CLI_TRUST_WORKSPACE": "true",
                "GEMINI_CLI_NO_RELAUNCH": "1", "NO_COLOR": "1", "NO_BROWSER": "1"}

    def reader(self) -> Reader:
        return StreamJson()


class StreamJson(JsonLines):
    """`--output-format stream-json`: one JSON event a line — init, message (the user's, then
    the assistant's text in `delta` pieces), tool_use, tool_result, error, result (status,
    stats). The assistant's text pieces and the calls it made become one turn (and its tool
    calls) when a tool's result, an error or the result comes."""

    def __init__(self) -> None:
        super().__init__()
        self.text = ""
        self.calls: list[dict[str, Any]] = []

    def event(self, event: dict[str, Any], line: str) -> list[Event]:
        kind = event.get("type")
        if kind == "message":
            if event.get("role") == "assistant":
                self.text += str(event.get("content") or "")
            return []
        if kind == "tool_use":
            self.calls.append({"call_id": event.get("tool_id"), "name": event.get("tool_name"),
                               "arguments": event.get("parameters")})
            return []
        if kind == "tool_result":
            events = self.turn()
            error = event.get("error")
            content = event.get("output")
            if content is None and isinstance(error, dict):
                content = error.get("message")
            return [*events, (EventKind.TOOL_RESULT, {
                "turn": self.turns, "call_id": event.get("tool_id"),
                "ok": event.get("status") == "success", "content": str(content or "")})]
        if kind == "error":
            return [*self.turn(), (EventKind.PROCESS_OUTPUT, {
                "text": f"gemini: {event.get('message') or event.get('severity') or line}"})]
        if kind == "result":
            events = self.turn()
            stats = event.get("stats")
            if isinstance(stats, dict):
                self.usage = {k: stats[k] for k in ("input_tokens", "output_tokens",
                                                    "total_tokens") if k in stats}
            if event.get("status") != "success":
                error = event.get("error")
                self.error = str(error.get("message") if isinstance(error, dict)
                                 else error or event.get("status") or "error")
            return events
        if kind == "init":
            return []
        return self.plain(line)

    def finish(self) -> list[Event]:
        return self.turn()  # output that ended mid-turn (the program was stopped)

    def turn(self) -> list[Event]:
        """The assistant's turn gathered so far (its text and the calls it made), if any."""
        if not self.text and not self.calls:
            return []
        self.turns += 1
        if self.text:
            self.final = self.text
        events: list[Event] = [(EventKind.AGENT_TURN, {
            "turn": self.turns, "content": self.text,
            "tool_calls": [{"name": c["name"], "arguments": c["arguments"]} for c in self.calls]})]
        events += [(EventKind.TOOL_CALL, {"turn": self.turns, **c}) for c in self.calls]
        self.text, self.calls = "", []
        return events


PRESET = GeminiCli(name="gemini-cli", program="gemini", package="npm:@google/gemini-cli@0.61.0")
