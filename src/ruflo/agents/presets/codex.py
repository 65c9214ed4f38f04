"""The Codex preset (`adapter: codex`): `codex exec --json` headless, its JSONL events read into
turns, command runs, file changes and results. Depends on the preset types.

Codex speaks OpenAI Responses (`POST /v1/responses`, streamed) to a model provider named in
`$CODEX_HOME/config.toml`, written into the attempt's private home: base_url the model relay,
the key read from OPENAI_API_KEY (the attempt's token). Inside ruflo's sandbox its own sandbox
and approvals stand down (bubblewrap already confines it to the worktree, and its nested
sandbox can't be built there); unconfined it keeps `--sandbox workspace-write`.
"""

from __future__ import annotations

import json
from typing import Any

from ruflo.agents.presets.base import Event, JsonLines, Preset, Reader, Setup
from ruflo.event_kinds import EventKind


def toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


class Codex(Preset):
    def argv(self, program: str, setup: Setup) -> list[str]:
        confine = (["--dangerously-bypass-approvals-and-sandbox"] if setup.confined
                   else ["--sandbox", "workspace-write"])
        return [program, "exec", "--json", "--skip-git-repo-check", "--cd",
                str(setup.workspace), "--model", setup.model, *confine, "--", setup.prompt]

    def env(self, setup: Setup) -> dict[str, str]:
        codex_home = setup.home / ".codex"
        codex_home.mkdir(exist_ok=True)
        provider = setup.config.get("wire_api") or "responses"
        (codex_home / "config.toml").write_text("\n".join([
            f"model = {toml_string(setup.model)}",
            'model_provider = "ruflo"',
            "check_for_update_on_startup = false",
            "[analytics]",
            "enabled = false",
            "[model_providers.ruflo]",
            'name = "ruflo model relay"',
            f"base_url = {toml_string(setup.env.get('OPENAI_BASE_URL', ''))}",
            'env_key = "OPENAI_API_KEY"',
            f"wire_api = {toml_string(str(provider))}",
            "request_max_retries = 1",
            "stream_max_retries = 1",
            ""]))
        return {"CODEX_HOME": str(codex_home), "NO_COLOR": "1"}

    def reader(self) -> Reader:
        return ExecJson()


class ExecJson(JsonLines):
    """`codex exec --json`: one JSON event a line — thread.started, turn.started,
    item.started / item.completed (agent_message, reasoning, command_execution, file_change,
    mcp_tool_call, ...), turn.completed (usage), turn.failed, error."""

    def event(self, event: dict[str, Any], line: str) -> list[Event]:
        kind = event.get("type")
        if kind == "turn.started":
            self.turns += 1
            return []
        if kind in ("item.started", "item.completed"):
            return self.item(event.get("item") or {}, done=kind == "item.completed")
        if kind == "turn.completed":
            for name, value in (event.get("usage") or {}).items():
                if isinstance(value, int):
                    self.usage[name] = self.usage.get(name, 0) + value
            return []
        if kind in ("turn.failed", "error"):
            error = event.get("error") if kind == "turn.failed" else event
            self.error = str((error or {}).get("message") or "error")
            return [(EventKind.PROCESS_OUTPUT, {"text": f"codex: {self.error}"})]
        if kind in ("thread.started", "item.updated"):
            return []
        return self.plain(line)

    def item(self, item: dict[str, Any], *, done: bool) -> list[Event]:
        kind, call_id = item.get("type"), item.get("id")
        if kind == "agent_message":
            if not done:
                return []
            self.final = str(item.get("text") or "")
            return [(EventKind.AGENT_TURN, {"turn": self.turns, "content": self.final,
                                            "tool_calls": []})]
        if kind == "reasoning":
            return []
        if kind == "command_execution":
            if not done:
                return [(EventKind.TOOL_CALL, {"turn": self.turns, "call_id": call_id,
                                               "name": "shell",
                                               "arguments": {"command": item.get("command")}})]
            return [(EventKind.TOOL_RESULT, {"turn": self.turns, "call_id": call_id,
                                             "name": "shell",
                                             "ok": item.get("exit_code") == 0,
                                             "content": str(item.get("aggregated_output") or "")})]
        if kind == "file_change":
            changes = [{"path": c.get("path"), "kind": c.get("kind")}
                       for c in item.get("changes") or [] if isinstance(c, dict)]
            if not done:
                return [(EventKind.TOOL_CALL, {"turn": self.turns, "call_id": call_id,
                                               "name": "apply_patch",
                                               "arguments": {"changes": changes}})]
            return [(EventKind.TOOL_RESULT, {"turn": self.turns, "call_id": call_id,
                                             "name": "apply_patch",
                                             "ok": item.get("status") == "completed",
                                             "content": json.dumps(changes)})]
        if kind == "error":
            return [(EventKind.PROCESS_OUTPUT, {"text": f"codex: {item.get('message')}"})]
        if not done:
            return [(EventKind.TOOL_CALL, {"turn": self.turns, "call_id": call_id,
                                           "name": str(kind), "arguments": item})]
        return [(EventKind.TOOL_RESULT, {"turn": self.turns, "call_id": call_id,
                                         "name": str(kind), "ok": item.get("status") != "failed",
                                         "content": json.dumps(item)[:4000]})]


PRESET = Codex(name="codex", program="codex", package="npm:@openai/codex@0.171.0")
