"""The Gemini CLI, OpenCode and aider presets without running them: their headless commands, the
config each reads written into the private home (the relay named, the token kept out of files),
their output read into the transcript — and the sandbox fact that makes aider run without git."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from git_repos import ready_hive_repo
from ruflo.agents.commands import command_env, run_command
from ruflo.agents.gitwork import git
from ruflo.agents.presets import preset_for
from ruflo.agents.presets.aider import Plain, count
from ruflo.agents.presets.base import Setup, find_program, installation
from ruflo.agents.presets.gemini_cli import StreamJson
from ruflo.agents.presets.opencode import RunJson
from ruflo.agents.sandbox import sandbox_for
from ruflo.config import load_settings
from ruflo.errors import ConfigError
from ruflo.event_kinds import EventKind

RELAY = {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "OPENAI_API_KEY": "rly-token",
         "GOOGLE_GEMINI_BASE_URL": "http://127.0.0.1:9", "GEMINI_API_KEY": "rly-token"}


def setup_in(tmp_path: Path, **config: object) -> Setup:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return Setup(prompt="-fix calc.py", workspace=tmp_path, home=home, env=RELAY,
                 model="gpt-x", config=config)


def test_gemini_cli_runs_headless_with_api_key_auth_on_the_relay(tmp_path: Path) -> None:
    preset = preset_for("gemini-cli")
    setup = setup_in(tmp_path)
    env = preset.env(setup)
    settings = json.loads((setup.home / ".gemini" / "settings.json").read_text())
    assert settings["security"]["auth"]["selectedType"] == "gemini-api-key"
    assert settings["privacy"]["usageStatisticsEnabled"] is False
    assert settings["general"]["enableAutoUpdate"] is False
    assert "rly-token" not in json.dumps(settings), "the token stays in the environment"
    assert env["GEMINI_API_KEY"] == "rly-token"
    assert env["GEMINI_CLI_TRUST_WORKSPACE"] == "true"
    argv = preset.argv("gemini", setup)
    assert argv[-1] == "--prompt=-fix calc.py", "a prompt starting with a dash stays the prompt"
    assert argv[argv.index("--approval-mode") + 1] == "yolo"
    assert argv[argv.index("--output-format") + 1] == "stream-json"
    unconfined = preset.argv("gemini", dataclasses.replace(setup, confined=False))
    assert unconfined[unconfined.index("--approval-mode") + 1] == "auto_edit"


GEMINI_LINES = [
    {"type": "init", "session_id": "s", "model": "m"},
    {"type": "message", "role": "user", "content": "fix it"},
    {"type": "message", "role": "assistant", "content": "Let me ", "delta": True},
    {"type": "message", "role": "assistant", "content": "look.", "delta": True},
    {"type": "tool_use", "tool_name": "read_file", "tool_id": "r1",
     "parameters": {"file_path": "calc.py"}},
    {"type": "tool_result", "tool_id": "r1", "status": "success", "output": ""},
    {"type": "tool_use", "tool_name": "replace", "tool_id": "e1", "parameters": {}},
    {"type": "tool_result", "tool_id": "e1", "status": "error",
     "error": {"type": "edit", "message": "0 occurrences found"}},
    {"type": "message", "role": "assistant", "content": "Fixed.", "delta": True},
    {"type": "result", "status": "success",
     "stats": {"total_tokens": 30, "input_tokens": 25, "output_tokens": 5}},
]


def test_gemini_clis_stream_json_reads_as_turns_tool_calls_and_results() -> None:
    reader = StreamJson()
    events = [e for line in GEMINI_LINES for e in reader.read(json.dumps(line))]
    events += reader.read("Ripgrep is not available.") + reader.finish()
    assert [(k, d.get("name")) for k, d in events] == [
        (EventKind.AGENT_TURN, None), (EventKind.TOOL_CALL, "read_file"),
        (EventKind.TOOL_RESULT, None), (EventKind.AGENT_TURN, None),
        (EventKind.TOOL_CALL, "replace"), (EventKind.TOOL_RESULT, None),
        (EventKind.AGENT_TURN, None), (EventKind.PROCESS_OUTPUT, None)]
    assert events[0][1]["content"] == "Let me look."
    assert events[0][1]["tool_calls"] == [{"name": "read_file",
                                           "arguments": {"file_path": "calc.py"}}]
    assert events[5][1]["ok"] is False
    assert events[5][1]["content"] == "0 occurrences found"
    assert (reader.final, reader.turns, reader.error) == ("Fixed.", 3, None)
    assert reader.usage == {"input_tokens": 25, "output_tokens": 5, "total_tokens": 30}
    failed = StreamJson()
    failed.read(json.dumps({"type": "result", "status": "error",
                            "error": {"type": "Error", "message": "Not Found"}}))
    assert failed.error == "Not Found"
    cut = StreamJson()
    cut.read(json.dumps({"type": "message", "role": "assistant", "content": "half"}))
    assert [k for k, _ in cut.finish()] == [EventKind.AGENT_TURN], "a stopped run's last words"


def test_opencode_config_names_the_relay_and_allows_what_no_one_can_approve(
        tmp_path: Path) -> None:
    preset = preset_for("opencode")
    setup = setup_in(tmp_path, agent="plan")
    env = preset.env(setup)
    config = json.loads(Path(env["OPENCODE_CONFIG"]).read_text())
    provider = config["provider"]["ruflo"]
    assert provider["npm"] == "@ai-sdk/openai-compatible"
    assert provider["options"] == {"baseURL": "http://127.0.0.1:9/v1",
                                   "apiKey": "{env:OPENAI_API_KEY}"}
    assert config["model"] == config["small_model"] == "ruflo/gpt-x"
    assert config["permission"] == {"edit": "allow", "bash": "allow", "webfetch": "deny"}
    assert "rly-token" not in Path(env["OPENCODE_CONFIG"]).read_text()
    assert Path(env["OPENCODE_CONFIG"]).is_relative_to(setup.home)
    assert env["OPENCODE_DISABLE_MODELS_FETCH"] == env["OPENCODE_DISABLE_AUTOUPDATE"] == "1"
    argv = preset.argv("opencode", setup)
    assert argv[:6] == ["opencode", "run", "--format", "json", "--model", "ruflo/gpt-x"]
    assert argv[-4:] == ["--agent", "plan", "--", "-fix calc.py"]


OPENCODE_LINES = [
    {"type": "step_start", "part": {"type": "step-start"}},
    {"type": "tool_use", "part": {"type": "tool", "tool": "read", "callID": "c1", "state": {
        "status": "completed", "input": {"filePath": "calc.py"}, "output": "1: x = 1"}}},
    {"type": "step_finish", "part": {"reason": "tool-calls",
                                     "tokens": {"input": 20, "output": 3}}},
    {"type": "step_start", "part": {"type": "step-start"}},
    {"type": "tool_use", "part": {"type": "tool", "tool": "edit", "callID": "c2", "state": {
        "status": "error", "input": {"filePath": "calc.py"}, "error": "oldString not found"}}},
    {"type": "text", "part": {"type": "text", "text": "Done."}},
    {"type": "step_finish", "part": {"reason": "stop", "tokens": {"input": 30, "output": 2}}},
]


def test_opencodes_json_events_read_as_turns_tool_calls_and_results() -> None:
    reader = RunJson()
    events = [e for line in OPENCODE_LINES for e in reader.read(json.dumps(line))]
    assert [(k, d.get("name")) for k, d in events] == [
        (EventKind.TOOL_CALL, "read"), (EventKind.TOOL_RESULT, "read"),
        (EventKind.AGENT_TURN, None), (EventKind.TOOL_CALL, "edit"),
        (EventKind.TOOL_RESULT, "edit"), (EventKind.AGENT_TURN, None),
        (EventKind.AGENT_TURN, None)]
    assert events[1][1]["content"] == "1: x = 1"
    assert events[4][1]["ok"] is False
    assert events[4][1]["content"] == "oldString not found"
    assert events[2][1]["prompt_tokens"] == 20
    assert (reader.final, reader.turns) == ("Done.", 2)
    assert reader.usage == {"input_tokens": 50, "output_tokens": 5}
    reader.read(json.dumps({"type": "error", "error": {
        "name": "APIError", "data": {"message": "unknown or expired relay token"}}}))
    assert reader.error == "unknown or expired relay token"


def test_aider_runs_once_without_asking_committing_or_fetching(tmp_path: Path) -> None:
    preset = preset_for("aider")
    setup = setup_in(tmp_path, files=["calc.py"])
    env = preset.env(setup)
    assert env["OPENAI_API_BASE"] == "http://127.0.0.1:9/v1"
    assert "OPENAI_API_KEY" not in env, "the relay's token variable is left as it is"
    metadata = json.loads((setup.home / "model-metadata.json").read_text())
    assert metadata["openai/gpt-x"]["max_input_tokens"] > 0
    assert "[user]" in (setup.home / ".gitconfig").read_text()
    argv = preset.argv("aider", setup)
    for flag in ("--yes-always", "--no-auto-commits", "--no-gitignore", "--no-check-update",
                 "--analytics-disable", "--no-git"):
        assert flag in argv
    assert argv[argv.index("--model") + 1] == "openai/gpt-x"
    assert argv[argv.index("--edit-format") + 1] == "diff"
    assert argv[argv.index("--map-tokens") + 1] == "0"
    assert argv[-2:] == ["--message=-fix calc.py", "calc.py"]
    assert argv[argv.index("--chat-history-file") + 1].startswith(str(setup.home))
    unconfined = preset.argv("aider", dataclasses.replace(setup, confined=False))
    assert "--no-git" not in unconfined
    with pytest.raises(ConfigError, match="files must be a list of paths"):
        preset.argv("aider", setup_in(tmp_path, files="calc.py"))


AIDER_OUTPUT = """Aider v0.86.2
Model: openai/gpt-x with diff edit format
Added calc.py to the chat.

Fixed add.

calc.py
Tokens: 1.2k sent, 15 received.
Applied edit to calc.py
litellm.AuthenticationError: AuthenticationError: OpenAIException - unknown relay token"""


def test_aiders_plain_output_reads_as_turns_and_applied_edits() -> None:
    reader = Plain()
    events = [e for line in AIDER_OUTPUT.splitlines() for e in reader.read(line)]
    found = [(k, d.get("name")) for k, d in events if k is not EventKind.PROCESS_OUTPUT]
    assert found == [(EventKind.AGENT_TURN, None), (EventKind.TOOL_CALL, "edit"),
                     (EventKind.TOOL_RESULT, "edit")]
    turn = next(d for k, d in events if k is EventKind.AGENT_TURN)
    assert turn["content"] == "Fixed add.\n\ncalc.py"
    assert (turn["prompt_tokens"], turn["completion_tokens"]) == (1200, 15)
    assert reader.final == "Fixed add.\n\ncalc.py"
    assert reader.usage == {"input_tokens": 1200, "output_tokens": 15}
    assert reader.error is not None
    assert reader.error.startswith("AuthenticationError: ")
    assert len([k for k, _ in events if k is EventKind.PROCESS_OUTPUT]) == 8  # not the blanks
    assert (count("747"), count("1,234"), count("12k")) == (747, 1234, 12000)


def test_a_python_clis_own_virtualenv_is_found_and_shown_whole(tmp_path: Path,
                                                                monkeypatch) -> None:
    clis = tmp_path / ".agent-clis"
    (clis / "node_modules" / ".bin").mkdir(parents=True)
    venv = clis / "venvs" / "aider"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    program = venv / "bin" / "aider"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    monkeypatch.setenv("RUFLO_AGENT_CLIS", str(clis))
    assert find_program(preset_for("aider"), {}, "/nonexistent") == str(program)
    assert installation(str(program)) == venv, "the sandbox shows the virtualenv, lib and all"


@pytest.mark.integration
async def test_git_reads_but_cannot_write_in_a_sandboxed_worktree(tmp_path: Path) -> None:
    """Why aider runs with --no-git inside the sandbox: an attempt's worktree keeps its git
    metadata in the repository's .git, which the sandbox shows read-only; aider's git use
    writes (config.lock, commits). Should the sandbox let it write one day, this fails, and the
    aider preset can keep git."""
    (tmp_path / "data").mkdir()
    sandbox = sandbox_for(load_settings({"RUFLO_CONFIG": "",
                                         "RUFLO_DATA_DIR": str(tmp_path / "data")}))
    assert sandbox.confines, sandbox.describe()
    hive = ready_hive_repo(tmp_path / "repo", {"calc.py": "x = 1\n"})
    tree = hive.open_attempt("h1-t1")
    outside = git("rev-parse", "--is-inside-work-tree", cwd=tree.path, check=False)
    assert outside.stdout.strip() == "true", outside.stderr
    inside = await run_command(["git", "rev-parse", "--is-inside-work-tree"], cwd=tree.path,
                               env=command_env(), sandbox=sandbox)
    assert inside.output.strip() == "true"
    for argv in (["git", "config", "user.name", "aider"],
                 ["git", "commit", "--allow-empty", "-qm", "x"]):
        written = await run_command(argv, cwd=tree.path, env=command_env(), sandbox=sandbox)
        assert not written.ok, argv
        assert "Read-only file system" in written.output
