"""The OpenCode preset (`adapter: opencode`): `opencode run --format json` headless, its JSON
events read into turns, tool calls and results. Depends on the preset types.

OpenCode speaks OpenAI Chat Completions (streamed, through its bundled
`@ai-sdk/openai-compatible` provider) to a provider named in a config file written into the
attempt's private home (OPENCODE_CONFIG): baseURL the model relay, the key read from
OPENAI_API_KEY (the attempt's token). The model is `ruflo/MODEL` (its small model for titles the
same). Edits and commands are allowed without asking (no one is there to ask; ruflo's sandbox
confines them to the worktree), web fetches denied; the models.dev fetch, update checks, LSP
downloads and sharing are off. Overrides in the agent's adapter config: `permission` (OpenCode's
own permission mapping), `agent` (its agent, default `build`).
"""

from __future__ import annotations

import json
from typing import Any

from ruflo.agents.presets.base import Event, JsonLines, Preset, Reader, Setup
from ruflo.event_kinds import EventKind

PROVIDER = "ruflo"
"""The provider's name in the config file: models are `ruflo/MODEL`."""

PERMISSION = {"edit": "allow", "bash": "allow", "webfetch": "deny"}
"""Files and commands without asking (the sandbox confines them); no web fetches."""

QUIET_ENV = {
    "OPENCODE_DISABLE_MODELS_FETCH": "1",
    "OPENCODE_DISABLE_AUTOUPDATE": "1",
    "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
    "OPENCODE_DISABLE_SHARE": "1",
    "OPENCODE_DISABLE_TERMINAL_TITLE": "1",
    "NO_COLOR": "1",
}
"""No models.dev fetch, update check, language-server download or sharing."""


class OpenCode(Preset):
    def argv(self, program: str, setup: Setup) -> list[str]:
        argv = [program, "run", "--format", "json", "--model", f"{PROVIDER}/{setup.model}"]
        if setup.config.get("agent"):
            argv += ["--agent", str(setup.config["agent"])]
        return [*argv, "--", setup.prompt]

    def env(self, setup: Setup) -> dict[str, str]:
        model = f"{PROVIDER}/{setup.model}"
        config = {
            "$schema": "https://opencode.ai/config.json",
            "provider": {PROVIDER: {
                "npm": "@ai-sdk/openai-compatible", "name": "ruflo model relay",
                "options": {"baseURL": setup.env.get("OPENAI_BASE_URL", ""),
                            "apiKey": "{env:OPENAI_API_KEY}"},
                "models": {setup.model: {"name": setup.model}}}},
            "model": model, "small_model": model,
            "autoupdate": False, "share": "disabled",
            "permission": setup.config.get("permission") or PERMISSION,
        }
        path = setup.home / "opencode.json"
        path.write_text(json.dumps(config, indent=2))
        return {**QUIET_ENV, "OPENCODE_CONFIG": str(path)}

    def reader(self) -> Reader:
        return RunJson()


class RunJson(JsonLines):
    """`run --format json`: one JSON event a line — step_start (a model turn begins), text
    (its answer), tool_use (a tool with its input, status and output), step_finish (the turn's
    tokens and why it ended), error."""

    def event(self, event: dict[str, Any], line: str) -> list[Event]:
        kind = event.get("type")
        part = mapping(event.get("part"))
        if kind == "step_start":
            self.turns += 1
            return []
        if kind == "text":
            self.final = str(part.get("text") or "")
            return [(EventKind.AGENT_TURN, {"turn": self.turns, "content": self.final,
                                            "tool_calls": []})]
        if kind == "tool_use":
            return self.tool(part)
        if kind == "step_finish":
            tokens = mapping(part.get("tokens"))
            for key, name in (("input", "input_tokens"), ("output", "output_tokens")):
                if isinstance(tokens.get(key), int):
                    self.usage[name] = self.usage.get(name, 0) + tokens[key]
            return [(EventKind.AGENT_TURN, {
                "turn": self.turns, "content": "", "tool_calls": [],
                "finish": part.get("reason"), "prompt_tokens": tokens.get("input"),
                "completion_tokens": tokens.get("output")})]
        if kind == "error":
            self.error = error_text(event.get("error"))
            return [(EventKind.PROCESS_OUTPUT, {"text": f"opencode: {self.error}"})]
        return self.plain(line)

    def tool(self, part: dict[str, Any]) -> list[Event]:
        state = mapping(part.get("state"))
        name, call_id = part.get("tool"), part.get("callID")
        done = state.get("status") in ("completed", "error")
        events: list[Event] = [(EventKind.TOOL_CALL, {"turn": self.turns, "call_id": call_id,
                                                      "name": name,
                                                      "arguments": state.get("input")})]
        if done:
            ok = state.get("status") == "completed"
            events.append((EventKind.TOOL_RESULT, {
                "turn": self.turns, "call_id": call_id, "name": name, "ok": ok,
                "content": str(state.get("output") if ok else state.get("error") or "")}))
        return events


def mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def error_text(error: Any) -> str:
    if isinstance(error, dict):
        data = error.get("data")
        if isinstance(data, dict) and data.get("message"):
            return str(data["message"])
        return str(error.get("message") or error.get("name") or error)
    return str(error or "error")


PRESET = OpenCode(name="opencode", program="opencode", package="npm:opencode-ai@1.18.33")
