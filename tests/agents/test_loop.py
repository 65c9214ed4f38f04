"""The built-in agent end to end: a real store, a real GatewayClient and a ScriptedGateway
server; the agent fixes a failing test in a fixture repository and the verify command decides."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from ruflo.agents import COMPANY_TOOLS, Limits, OutcomeKind, Verified, store_outcome
from ruflo.agents.loop import LLMExecutor
from ruflo.errors import ConfigError
from ruflo.memory import Memory, hive_namespace
from ruflo.model import Agent, TaskState

BUGGY = "def add(a, b):\n    return a - b\n"
TEST = "from calc import add\nassert add(2, 3) == 5, 'add(2, 3) should be 5'\nprint('all tests pass')\n"
RUN_TESTS = f"{sys.executable} test_calc.py"


def fixture_repo(folder: Path) -> None:
    (folder / "calc.py").write_text(BUGGY)
    (folder / "test_calc.py").write_text(TEST)


def call(name: str, **arguments: object) -> dict[str, object]:
    return {"tool_calls": [{"name": name, "arguments": arguments}]}


FIX_SCRIPT = {"rules": [
    {"name": "read", "match": {"turn": 1}, "reply": call("read_file", path="calc.py")},
    {"name": "run-red", "match": {"turn": 2, "last_tool": "return a - b"},
     "reply": call("run_command", command=RUN_TESTS)},
    {"name": "edit", "match": {"turn": 3, "last_tool": "should be 5"},
     "reply": call("edit_file", path="calc.py", old="return a - b", new="return a + b")},
    {"name": "run-green", "match": {"turn": 4, "last_tool": "edited calc.py"},
     "reply": call("run_command", command=RUN_TESTS)},
    {"name": "done", "match": {"turn": 5, "last_tool": "exit code 0"},
     "reply": call("complete", result="add() subtracted; it now adds and the test passes")},
], "default": {"content": "I am lost"}}


async def test_agent_fixes_a_failing_test_and_verify_passes(make_board, scripted, gateway_for):
    board = make_board(verify=RUN_TESTS, description="test_calc.py fails: make it pass.")
    fixture_repo(board.workspace)
    gateway = gateway_for(scripted(FIX_SCRIPT), board.store)

    outcome = await Verified(LLMExecutor()).run(board.task, board.agent, board.hive,
                                                board.context(gateway))

    assert outcome.kind is OutcomeKind.COMPLETE
    assert outcome.verified is True
    assert outcome.turns == 5
    assert (board.workspace / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"
    finished = store_outcome(board.store, board.task, board.agent, outcome)
    assert finished is not None
    assert finished.state is TaskState.DONE
    assert finished.verified is True
    assert board.store.get_task(board.task.id).result == outcome.result

    # The transcript shows every step, in order.
    steps = [(e.kind, e.data.get("name")) for e in board.transcript(
        "agent_started", "agent_turn", "tool_call", "tool_result", "agent_outcome",
        "task_verified", "task_done")]
    tools = ["read_file", "run_command", "edit_file", "run_command", "complete"]
    expected = [("agent_started", None)]
    for tool in tools:
        expected += [("agent_turn", None), ("tool_call", tool), ("tool_result", tool)]
    expected += [("agent_outcome", None), ("task_verified", None), ("task_done", None)]
    assert steps == expected
    results = board.transcript("tool_result")
    assert "exit code 1" in results[1].data["content"]
    assert results[1].data["ok"] is False
    assert "exit code 0" in results[3].data["content"]
    verified = board.transcript("task_verified")[0].data
    assert verified["passed"] is True
    assert verified["exit_code"] == 0
    assert "all tests pass" in verified["output"]

    # The ledger has one metered call per turn, charged to the agent and the task.
    ledger = board.store.ledger(hive_id=board.hive.id)
    assert len(ledger) == 5
    assert {(e.agent_id, e.task_id) for e in ledger} == {(board.agent.id, board.task.id)}

    # What was learned is left in the hive's memory.
    note = Memory(board.store).get(hive_namespace(board.hive.id), f"task:{board.task.id}")
    assert "calc.py" in note.content
    assert "complete" in note.content


async def test_verify_overrules_the_agents_word(make_board, scripted, gateway_for):
    board = make_board(verify=RUN_TESTS)
    fixture_repo(board.workspace)
    script = {"rules": [{"match": {"turn": 1}, "reply": call("complete", result="all fixed")}]}
    gateway = gateway_for(scripted(script), board.store)

    outcome = await Verified(LLMExecutor()).run(board.task, board.agent, board.hive,
                                                board.context(gateway))

    assert outcome.kind is OutcomeKind.FAILED
    assert outcome.verified is False
    assert "exited with 1" in (outcome.reason or "")
    finished = store_outcome(board.store, board.task, board.agent, outcome)
    assert finished is not None
    assert finished.state is TaskState.FAILED
    assert finished.verified is False
    assert board.transcript("task_verified")[0].data["passed"] is False
    warning = Memory(board.store).get(hive_namespace(board.hive.id), f"verify:{board.task.id}")
    assert "should be 5" in warning.content


async def test_hostile_tool_calls_are_refused_and_the_loop_goes_on(make_board, scripted,
                                                                   gateway_for, tmp_path):
    board = make_board()
    outside = tmp_path / "secret.txt"
    outside.write_text("top secret")
    (board.workspace / "root").symlink_to("/")
    script = {"rules": [
        {"match": {"turn": 1}, "reply": call("read_file", path="../../etc/passwd")},
        {"match": {"turn": 2}, "reply": call("read_file", path=str(outside))},
        {"match": {"turn": 3}, "reply": call("read_file", path="root/etc/passwd")},
        {"match": {"turn": 4}, "reply": call("write_file", path="../secret.txt", content="x")},
        {"match": {"turn": 5}, "reply": {"tool_calls": [
            {"name": "write_file", "arguments": '{"path": "a.txt", "content": "unterminated'}]}},
        {"match": {"turn": 6}, "reply": call("no_such_tool")},
        {"match": {"turn": 7}, "reply": call("complete", result="gave up on escaping")},
    ]}
    server = scripted(script)
    gateway = gateway_for(server, board.store)

    outcome = await LLMExecutor().run(board.task, board.agent, board.hive,
                                      board.context(gateway))

    assert outcome.kind is OutcomeKind.COMPLETE
    results = [e.data for e in board.transcript("tool_result")]
    assert [r["ok"] for r in results] == [False] * 6 + [True]
    assert "contains '..'" in results[0]["content"]
    assert "absolute path" in results[1]["content"]
    assert "outside the workspace" in results[2]["content"]
    assert "contains '..'" in results[3]["content"]
    assert "not valid JSON" in results[4]["content"]
    assert "no tool named 'no_such_tool'" in results[5]["content"]
    assert outside.read_text() == "top secret"
    assert not (board.workspace / "a.txt").exists()
    assert all("root:" not in r["content"] for r in results)
    # The model was told each error: its last request carried the tool messages.
    last_request = server.requests[-1]["messages"]
    told = [m["content"] for m in last_request if m["role"] == "tool"]
    assert len(told) == 6
    assert "not valid JSON" in told[4]
    assert json.dumps(last_request).count("error:") >= 6


async def test_turn_limit_and_plain_text_answers(make_board, scripted, gateway_for):
    board = make_board()
    gateway = gateway_for(scripted({"default": {"content": "I think it is fine."}}), board.store)

    outcome = await LLMExecutor().run(board.task, board.agent, board.hive,
                                      board.context(gateway, limits=Limits(max_turns=3)))

    assert outcome.kind is OutcomeKind.FAILED
    assert "3 turns" in (outcome.reason or "")
    assert len(board.transcript("agent_turn")) == 3
    assert len(board.store.ledger(hive_id=board.hive.id)) == 3


async def test_every_call_asks_for_at_most_the_agents_max_tokens(
        make_board, scripted, gateway_for):
    # A model that would talk for 5,000 tokens: each answer is cut at max_tokens ("length").
    long = {"default": {"content": "blah " * 4000}}
    board = make_board()
    server = scripted(long)
    await LLMExecutor().run(board.task, board.agent, board.hive,
                            board.context(gateway_for(server, board.store),
                                          limits=Limits(max_turns=2)))
    assert [r["max_tokens"] for r in server.requests] == [Limits().completion_tokens] * 2

    capped = make_board(agent=Agent(id="a1", hive_id="h2", name="ada", skills=("python",),
                                    adapter_config={"max_tokens": 300}))
    server = scripted(long)
    await LLMExecutor().run(capped.task, capped.agent, capped.hive,
                            capped.context(gateway_for(server, capped.store),
                                           limits=Limits(max_turns=2)))
    assert [r["max_tokens"] for r in server.requests] == [300, 300]
    entries = capped.store.ledger(hive_id=capped.hive.id)
    assert [e.completion_tokens for e in entries] == [300, 300]
    assert [e.data["finish_reason"] for e in capped.transcript("agent_turn")] == ["length"] * 2


@pytest.mark.parametrize("bad", [0, -1, "4096", 2.5, True])
async def test_a_bad_max_tokens_setting_stops_before_any_call(
        make_board, scripted, gateway_for, bad):
    board = make_board(agent=Agent(id="a1", hive_id="h1", name="ada", skills=("python",),
                                   adapter_config={"max_tokens": bad}))
    server = scripted({"default": {"content": "hi"}})
    with pytest.raises(ConfigError, match="ada: max_tokens must be a whole number"):
        await LLMExecutor().run(board.task, board.agent, board.hive,
                                board.context(gateway_for(server, board.store)))
    assert server.chat_count == 0


async def test_tool_output_is_bounded_with_a_marker(make_board, scripted, gateway_for):
    board = make_board()
    (board.workspace / "big.txt").write_text("line\n" * 20_000)
    script = {"rules": [
        {"match": {"turn": 1}, "reply": call("read_file", path="big.txt")},
        {"match": {"turn": 2}, "reply": call("complete", result="read it")},
    ]}
    gateway = gateway_for(scripted(script), board.store)
    limits = Limits(tool_output_chars=1000, transcript_chars=300)

    await LLMExecutor().run(board.task, board.agent, board.hive,
                            board.context(gateway, limits=limits))

    result = board.transcript("tool_result")[0].data["content"]
    assert "characters cut" in result
    assert len(result) <= 300


async def test_decompose_and_company_tools(make_board, scripted, gateway_for):
    board = make_board()
    script = {"rules": [
        {"match": {"turn": 1, "tool": "delegate"}, "reply": call(
            "post_subtasks", subtasks=[
                {"title": "write the parser", "skills": ["python"]},
                {"title": "test the parser", "depends_on": [0]},
            ])},
    ]}
    gateway = gateway_for(scripted(script), board.store)

    outcome = await LLMExecutor().run(board.task, board.agent, board.hive,
                                      board.context(gateway, task_tools=COMPANY_TOOLS))

    assert outcome.kind is OutcomeKind.DECOMPOSE
    assert [s.title for s in outcome.subtasks] == ["write the parser", "test the parser"]
    assert outcome.subtasks[1].depends_on == ("0",)
    offered = board.transcript("agent_started")[0].data["tools"]
    assert {"complete", "abstain", "post_subtasks", "delegate", "escalate"} <= set(offered)


async def test_notes_are_read_before_the_task(make_board, scripted, gateway_for):
    board = make_board(title="Fix the calculator rounding")
    Memory(board.store).put(hive_namespace(board.hive.id), "rounding",
                            "The calculator rounding uses banker's rounding on purpose.")
    script = {"rules": [
        {"match": {"turn": 1, "last_user": "banker.s rounding"},
         "reply": call("abstain", reason="rounding is intended")},
    ]}
    gateway = gateway_for(scripted(script), board.store)

    outcome = await LLMExecutor().run(board.task, board.agent, board.hive,
                                      board.context(gateway))

    assert outcome.kind is OutcomeKind.ABSTAIN
    assert board.transcript("agent_started")[0].data["notes"] == [
        f"{hive_namespace(board.hive.id)}/rounding"]
    released = store_outcome(board.store, board.task, board.agent, outcome)
    assert released is not None
    assert released.state is TaskState.OPEN
