"""The agent CLI presets without running a CLI: `adapter: claude-code | codex | ...` in workload
and org files, `--agent-cli`, finding the program, a clear failure when it is missing, and how
each preset reads its CLI's structured output into the transcript."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from ruflo.agents import OutcomeKind, executor_for
from ruflo.agents.commands import command_env
from ruflo.agents.presets import find_program, preset_for
from ruflo.agents.presets.claude_code import StreamJson
from ruflo.agents.presets.codex import ExecJson
from ruflo.commands.orchestrate import agent_cli_adapter, hive_agents
from ruflo.errors import ConfigError, PolicyError
from ruflo.event_kinds import EventKind
from ruflo.model import AdapterKind, Agent
from ruflo.workload import parse_org, parse_workload

WORKLOAD = """
name: mixed
objective: fix it
tasks: [{id: t1, title: Fix add}]
agents:
  - {name: claude, adapter: claude-code, config: {model: sonnet, args: [--max-turns, "5"]}}
  - {name: codex, adapter: codex}
  - {name: builtin}
"""


def test_workload_and_org_files_name_agent_clis_as_adapters() -> None:
    loaded = parse_workload(WORKLOAD)
    assert [a.adapter for a in loaded.agents] == [AdapterKind.CLAUDE_CODE, AdapterKind.CODEX,
                                                 AdapterKind.LLM]
    assert loaded.agents[0].adapter_config == {"model": "sonnet", "args": ["--max-turns", "5"]}
    org = parse_org("name: o\nagents:\n  - {name: boss, role: ceo}\n"
                    "  - {name: dev, reports_to: boss, adapter: codex}\n")
    assert {a.name: a.adapter for a in org.agents}["dev"] is AdapterKind.CODEX


def test_an_unknown_adapter_is_refused_naming_the_choices() -> None:
    with pytest.raises(PolicyError) as caught:
        parse_workload(WORKLOAD.replace("adapter: codex", "adapter: codx"))
    assert "agents[1] ('codex').adapter" in str(caught.value)
    assert "'claude-code', 'codex', 'gemini-cli', 'opencode' or 'aider'" in str(caught.value)
    assert "nothing was run" in str(caught.value)


def test_agent_cli_option_makes_the_generated_agents_run_that_cli() -> None:
    adapter = agent_cli_adapter("codex", None, None)
    crew = hive_agents("h1", (), 2, adapter)
    assert [a.adapter for a in crew] == [AdapterKind.CODEX, AdapterKind.CODEX]
    assert agent_cli_adapter(None, None, None) is None
    with pytest.raises(ConfigError, match="not an agent CLI ruflo knows; choose one of aider"):
        agent_cli_adapter("cursor", None, None)
    with pytest.raises(ConfigError, match="declares its agents"):
        agent_cli_adapter("codex", parse_workload(WORKLOAD), None)


def test_preset_for_refuses_adapters_that_are_not_agent_clis() -> None:
    with pytest.raises(ConfigError, match="process is not an agent CLI"):
        preset_for("process")
    assert preset_for(AdapterKind.CLAUDE_CODE).program == "claude"
    assert preset_for("codex").package == "npm:@openai/codex@0.171.0"


def test_the_program_setting_wins_and_bad_ones_are_said_plainly(tmp_path: Path) -> None:
    preset = preset_for("codex")
    mine = tmp_path / "my-codex"
    mine.write_text("#!/bin/sh\n")
    mine.chmod(0o755)
    assert find_program(preset, {"program": str(mine)}, "/nonexistent") == str(mine)
    assert find_program(preset, {"program": "my-codex"}, str(tmp_path)) == str(mine)
    mine.chmod(0o644)
    assert find_program(preset, {"program": str(mine)}, "/nonexistent") is None
    with pytest.raises(ConfigError, match="program must be a path or a program name"):
        find_program(preset, {"program": ["codex"]}, None)


async def test_a_missing_program_fails_the_attempt_with_the_install_hint(
        make_board, tmp_path: Path) -> None:
    agent = Agent(id="a1", hive_id="h1", name="cc", adapter=AdapterKind.CLAUDE_CODE,
                  adapter_config={"program": str(tmp_path / "no-such-claude")})
    board = make_board(agent=agent)
    outcome = await executor_for(agent).run(board.task, agent, board.hive,
                                            board.context(env=command_env()))
    assert outcome.kind is OutcomeKind.FAILED
    assert "not found" in (outcome.reason or "")
    assert "npm:@anthropic-ai/claude-code@2.1.332" in (outcome.reason or "")
    [exited] = board.transcript("process_exited")
    assert exited.data["exit_code"] is None


async def test_bad_overrides_are_refused_before_anything_runs(make_board) -> None:
    agent = Agent(id="a1", hive_id="h1", name="cc", adapter=AdapterKind.CODEX,
                  adapter_config={"program": "/bin/true", "args": "--fast"})
    board = make_board(agent=agent)
    with pytest.raises(ConfigError, match="adapter args must be a list of strings"):
        await executor_for(agent).run(board.task, agent, board.hive,
                                      board.context(env=command_env()))
    assert not board.transcript("process_started")


CLAUDE_LINES = [
    {"type": "system", "subtype": "init", "session_id": "s", "tools": ["Read"]},
    {"type": "assistant", "message": {"id": "m1", "model": "m", "content": [
        {"type": "text", "text": "Let me look."}], "usage": {"input_tokens": 10}}},
    {"type": "assistant", "message": {"id": "m1", "model": "m", "content": [
        {"type": "tool_use", "id": "tu1", "name": "Read", "input": {"file_path": "a.py"}}]}},
    {"type": "user", "message": {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "tu1", "content": "1\tx = 1"}]}},
    {"type": "assistant", "message": {"id": "m2", "model": "m", "content": [
        {"type": "text", "text": "Done."}]}},
    {"type": "result", "subtype": "success", "is_error": False, "result": "Done.",
     "num_turns": 2, "usage": {"input_tokens": 30, "output_tokens": 5}},
]


def test_claude_codes_stream_json_reads_as_turns_tool_calls_and_results() -> None:
    reader = StreamJson()
    events = [e for line in CLAUDE_LINES for e in reader.read(json.dumps(line))]
    events += reader.read("[claude-code:unrecognized_model] {}") + reader.finish()
    kinds = [kind for kind, _ in events]
    assert kinds == [EventKind.AGENT_TURN, EventKind.TOOL_CALL, EventKind.TOOL_RESULT,
                     EventKind.AGENT_TURN, EventKind.PROCESS_OUTPUT]
    first = events[0][1]
    assert first["content"] == "Let me look."
    assert first["tool_calls"] == [{"name": "Read", "arguments": {"file_path": "a.py"}}]
    assert events[2][1] == {"turn": 1, "call_id": "tu1", "ok": True, "content": "1\tx = 1"}
    assert (reader.final, reader.turns, reader.error) == ("Done.", 2, None)
    assert reader.usage == {"input_tokens": 30, "output_tokens": 5}


def test_a_claude_code_error_result_is_kept_as_the_clis_error() -> None:
    reader = StreamJson()
    reader.read(json.dumps({"type": "result", "subtype": "error_max_turns", "is_error": True,
                            "num_turns": 5}))
    assert reader.error == "error_max_turns"


CODEX_LINES = [
    {"type": "thread.started", "thread_id": "t"},
    {"type": "item.completed", "item": {"id": "i0", "type": "error",
                                        "message": "Model metadata for `m` not found."}},
    {"type": "turn.started"},
    {"type": "item.started", "item": {"id": "i1", "type": "command_execution",
                                      "command": "bash -lc 'cat a.py'", "status": "in_progress"}},
    {"type": "item.completed", "item": {"id": "i1", "type": "command_execution",
                                        "command": "bash -lc 'cat a.py'",
                                        "aggregated_output": "x = 1\n", "exit_code": 0}},
    {"type": "item.started", "item": {"id": "i2", "type": "file_change", "changes": [
        {"path": "/w/a.py", "kind": "update"}]}},
    {"type": "item.completed", "item": {"id": "i2", "type": "file_change", "status": "completed",
                                        "changes": [{"path": "/w/a.py", "kind": "update"}]}},
    {"type": "item.completed", "item": {"id": "i3", "type": "agent_message", "text": "Fixed."}},
    {"type": "turn.completed", "usage": {"input_tokens": 100, "output_tokens": 7}},
]


def test_codex_exec_json_reads_as_commands_patches_and_its_answer() -> None:
    reader = ExecJson()
    events = [e for line in CODEX_LINES for e in reader.read(json.dumps(line))]
    assert [(k, d.get("name")) for k, d in events] == [
        (EventKind.PROCESS_OUTPUT, None),
        (EventKind.TOOL_CALL, "shell"), (EventKind.TOOL_RESULT, "shell"),
        (EventKind.TOOL_CALL, "apply_patch"), (EventKind.TOOL_RESULT, "apply_patch"),
        (EventKind.AGENT_TURN, None)]
    assert events[2][1]["content"] == "x = 1\n"
    assert events[2][1]["ok"] is True
    assert (reader.final, reader.turns) == ("Fixed.", 1)
    assert reader.usage == {"input_tokens": 100, "output_tokens": 7}
    reader.read(json.dumps({"type": "turn.failed", "error": {"message": "stream error"}}))
    assert reader.error == "stream error"


def test_the_codex_config_names_the_relay_in_the_private_home(tmp_path: Path) -> None:
    from ruflo.agents.presets.base import Setup

    preset = preset_for("codex")
    setup = Setup(prompt="p", workspace=tmp_path, home=tmp_path / "home", model="gpt-x",
                  env={"OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "OPENAI_API_KEY": "tok"})
    (tmp_path / "home").mkdir()
    env = preset.env(setup)
    config = (tmp_path / "home" / ".codex" / "config.toml").read_text()
    assert env["CODEX_HOME"] == str(tmp_path / "home" / ".codex")
    assert 'base_url = "http://127.0.0.1:9/v1"' in config
    assert 'env_key = "OPENAI_API_KEY"' in config
    assert "tok" not in config, "the token stays in the environment"
    argv = preset.argv("codex", setup)
    assert "--dangerously-bypass-approvals-and-sandbox" in argv
    unconfined = preset.argv("codex", dataclasses.replace(setup, confined=False))
    assert "--dangerously-bypass-approvals-and-sandbox" not in unconfined
    assert unconfined[-4:] == ["--sandbox", "workspace-write", "--", "p"]
