"""Per-action approvals in the built-in agent's loop: "ask" parks the attempt before the tool runs
(no gateway call while it waits) until a person decides from the CLI (a real `ruflo approval`
subprocess); "deny" refuses at once. Real SQLite store, real GatewayClient, ScriptedGateway."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ruflo.agents import Limits, OutcomeKind
from ruflo.agents.loop import LLMExecutor
from ruflo.model import Agent, Approval, ApprovalKind, ApprovalStatus
from waiting import stays, until, wait_for_event

RUFLO = Path(sys.executable).parent / "ruflo"
WIPE = "rm -rf build"


def call(name: str, **arguments: object) -> dict[str, object]:
    return {"tool_calls": [{"name": name, "arguments": arguments}]}


SCRIPT = {"rules": [
    {"match": {"turn": 1}, "reply": call("run_command", command=WIPE)},
    {"match": {"turn": 2, "last_tool": "exit code 0"},
     "reply": call("complete", result="wiped the build folder")},
    {"match": {"turn": 2, "last_tool": "rejected"},
     "reply": call("abstain", reason="may not wipe the build folder")},
    {"match": {"turn": 2, "last_tool": "denied by policy"},
     "reply": call("abstain", reason="denied")},
], "default": {"content": "lost"}}

LIMITS = Limits(approval_poll=0.1)


async def ask_and_wait(board, server):
    """Start the attempt; return its task once the approval is open."""
    (board.workspace / "build").mkdir()
    (board.workspace / "build" / "out.o").write_text("object")
    gateway = board.gateway
    attempt = asyncio.create_task(LLMExecutor().run(board.task, board.agent, board.hive,
                                                    board.context(gateway, limits=LIMITS)))
    requested = await wait_for_event(board.store, board.hive.id, "approval_requested")
    approval = board.store.get_approval(requested.data["approval_id"])
    assert approval.kind is ApprovalKind.ACTION
    assert approval.data["subject"] == WIPE
    assert approval.data["turn"] == 1
    assert WIPE in approval.subject
    assert "rm -rf" in approval.data["rule"]
    # Parked before the tool: the folder is still there and no second gateway call is made.
    assert len(server.requests) == 1
    await stays(lambda: len(server.requests) == 1 and not attempt.done(),
                what="the parked attempt called the gateway or ended")
    assert (board.workspace / "build" / "out.o").exists()
    return attempt, approval


@pytest.fixture
def board(make_board, scripted, gateway_for, tmp_path):
    made = make_board(title="Clean the build")
    made.server = scripted(SCRIPT)
    made.gateway = gateway_for(made.server, made.store)
    made.data_dir = tmp_path / "data0"
    return made


def cli(board, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUFLO_", "DATABASE_"))}
    env["RUFLO_DATA_DIR"] = str(board.data_dir)
    return subprocess.run([str(RUFLO), *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


async def test_ask_waits_without_gateway_calls_and_cli_approval_runs_the_command(board):
    attempt, approval = await ask_and_wait(board, board.server)

    done = await asyncio.to_thread(cli, board, "approval", "approve", approval.id[:10],
                                   "--by", "person:ops")
    assert done.returncode == 0, done.stderr
    assert "approved" in done.stdout
    outcome = await asyncio.wait_for(attempt, 60)

    assert outcome.kind is OutcomeKind.COMPLETE
    assert outcome.turns == 2  # resumed at the same turn: no call was repeated
    assert not (board.workspace / "build").exists()
    second = board.server.requests[1]["messages"]
    assert second[-1]["role"] == "tool"
    assert "exit code 0" in second[-1]["content"]
    assert board.store.get_approval(approval.id).decided_by == "person:ops"


async def test_rejection_reaches_the_model_as_a_tool_error_with_the_reason(board):
    attempt, approval = await ask_and_wait(board, board.server)

    done = await asyncio.to_thread(cli, board, "approval", "reject", approval.id, "--reason",
                                   "keep the build cache", "--json")
    assert done.returncode == 0, done.stderr
    outcome = await asyncio.wait_for(attempt, 60)

    assert outcome.kind is OutcomeKind.ABSTAIN
    assert (board.workspace / "build" / "out.o").exists()
    tool_message = board.server.requests[1]["messages"][-1]
    assert tool_message["role"] == "tool"
    assert "rejected" in tool_message["content"]
    assert "keep the build cache" in tool_message["content"]
    result = board.transcript("tool_result")[0].data
    assert result["ok"] is False


async def test_deny_refuses_at_once_without_an_approval(make_board, scripted, gateway_for):
    agent = Agent(id="a1", hive_id="h1", name="ada", skills=("python",),
                  adapter_config={"actions": {"run_command": {"rules": [
                      {"glob": "rm *", "decision": "deny"}]}}})
    board = make_board(agent=agent)
    server = scripted(SCRIPT)
    outcome = await LLMExecutor().run(board.task, board.agent, board.hive,
                                      board.context(gateway_for(server, board.store),
                                                    limits=LIMITS))
    assert outcome.kind is OutcomeKind.ABSTAIN
    assert board.store.list_approvals(hive_id=board.hive.id) == []
    assert "denied by policy" in server.requests[1]["messages"][-1]["content"]
    assert "the agent's rule pattern 'rm *'" in server.requests[1]["messages"][-1]["content"]


async def test_an_open_approval_is_found_again_by_a_new_attempt(board):
    """The process died while waiting: the next attempt waits on the same approval, or finds it
    decided, and never opens a second one."""
    attempt, approval = await ask_and_wait(board, board.server)
    attempt.cancel()
    with pytest.raises(asyncio.CancelledError):
        await attempt
    board.store.decide_approval(approval.id, ApprovalStatus.APPROVED, decided_by="person:ops")

    board.server.reset_counts()
    outcome = await LLMExecutor().run(board.task, board.agent, board.hive,
                                      board.context(board.gateway, limits=LIMITS))
    assert outcome.kind is OutcomeKind.COMPLETE
    assert [a.id for a in board.store.list_approvals(hive_id=board.hive.id)] == [approval.id]
    assert not (board.workspace / "build").exists()


async def test_an_edit_the_hive_asks_about_shows_its_diff(make_board, scripted, gateway_for):
    board = make_board()
    hive = board.store.update_hive(board.hive.id, config={"actions": {"edit": "ask"}})
    (board.workspace / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    server = scripted({"rules": [
        {"match": {"turn": 1}, "reply": call("edit_file", path="calc.py", old="a - b",
                                             new="a + b")},
        {"match": {"turn": 2}, "reply": call("complete", result="fixed")}]})
    attempt = asyncio.create_task(LLMExecutor().run(
        board.task, board.agent, hive, board.context(gateway_for(server, board.store),
                                                     limits=LIMITS)))
    requested = await wait_for_event(board.store, hive.id, "approval_requested")
    approval = board.store.get_approval(requested.data["approval_id"])
    assert approval.data["diff"] == ("--- a/calc.py\n+++ b/calc.py\n@@ -1,2 +1,2 @@\n"
                                     " def add(a, b):\n-    return a - b\n+    return a + b\n")
    assert "the hive's policy for edit says ask" in approval.subject
    assert (board.workspace / "calc.py").read_text().endswith("a - b\n")
    board.store.decide_approval(approval.id, ApprovalStatus.APPROVED, decided_by="person:ops")
    outcome = await asyncio.wait_for(attempt, 60)
    assert outcome.kind is OutcomeKind.COMPLETE
    assert (board.workspace / "calc.py").read_text().endswith("a + b\n")


@pytest.mark.parametrize("earlier", [ApprovalStatus.APPROVED, ApprovalStatus.REJECTED])
async def test_an_attempt_that_starts_over_is_asked_afresh(board, earlier):
    """An earlier attempt's decision is not the next attempt's: when the attempt starts over (its
    journal was closed: here the task changed) and the model asks for the same action at the
    same turn, a new approval opens and the attempt waits on it."""
    attempt, approval = await ask_and_wait(board, board.server)
    attempt.cancel()
    with pytest.raises(asyncio.CancelledError):
        await attempt
    board.store.decide_approval(approval.id, earlier, decided_by="person:ops",
                                reason="that was for the old task")
    task = board.store.update_task(board.task.id, description="keep the build cache this time")

    board.server.reset_counts()
    again = asyncio.create_task(LLMExecutor().run(task, board.agent, board.hive,
                                                  board.context(board.gateway, limits=LIMITS)))

    def others() -> list[Approval]:
        return [a for a in board.store.list_approvals(hive_id=board.hive.id)
                if a.id != approval.id]

    await until(lambda: again.done() or others(), what="no approval and no outcome")
    assert not again.done(), f"the earlier {earlier} decision was taken again: {again.result()}"
    [fresh] = others()
    await stays(lambda: len(board.server.requests) == 1 and not again.done(),
                what="the attempt that started over did not wait for its own approval")
    assert (board.workspace / "build" / "out.o").exists()
    assert fresh.status is ApprovalStatus.PENDING
    assert fresh.data["journal_id"] != approval.data["journal_id"]
    board.store.decide_approval(fresh.id, ApprovalStatus.REJECTED, decided_by="person:ops",
                                reason="not now")
    outcome = await asyncio.wait_for(again, 60)
    assert outcome.kind is OutcomeKind.ABSTAIN
    assert "not now" in board.server.requests[1]["messages"][-1]["content"]
    assert (board.workspace / "build" / "out.o").exists()


async def test_a_task_cancelled_while_its_action_waits_cancels_the_approval(board):
    """`ruflo task cancel` while a person is asked: the approval is cancelled (with an event
    saying why), the waiting attempt stops without running the command or calling the gateway,
    `ruflo approval list` no longer shows it, and approving it afterwards is refused."""
    attempt, approval = await ask_and_wait(board, board.server)

    done = await asyncio.to_thread(cli, board, "task", "cancel", board.task.id)
    assert done.returncode == 0, done.stderr
    outcome = await asyncio.wait_for(attempt, 60)

    assert outcome.kind is OutcomeKind.FAILED
    assert "its approval was cancelled (the task is cancelled)" in (outcome.reason or "")
    assert len(board.server.requests) == 1
    assert (board.workspace / "build" / "out.o").exists()
    cancelled = board.store.get_approval(approval.id)
    assert cancelled.status is ApprovalStatus.CANCELLED
    assert cancelled.decided_by == "ruflo"
    [event] = board.store.events(board.hive.id, kinds=["approval_cancelled"])
    assert event.data == {"approval_id": approval.id, "kind": "action",
                          "reason": "the task is cancelled"}

    listed = await asyncio.to_thread(cli, board, "approval", "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.strip() == "no approvals waiting"
    refused = await asyncio.to_thread(cli, board, "approval", "approve", approval.id[:10])
    assert refused.returncode == 2
    said = refused.stderr.strip()
    assert said.count("\n") == 0, said
    assert f"approval {approval.id} was cancelled (the task is cancelled)" in said
    assert "nothing was changed" in said
    assert board.store.get_approval(approval.id).status is ApprovalStatus.CANCELLED
    assert (board.workspace / "build" / "out.o").exists()
