"""The a2a adapter against a real remote A2A agent (a2a-sdk's server on loopback, tests/
a2a_remote.py): the task goes out with its prompt, the remote messages land in the transcript,
artifact files land in the workspace (never outside it), and the task's verify decides; a remote
agent that fails, hangs (cancelled at the timeout) or can't be reached is a failed attempt."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from a2a_remote import Remote, remote_agent
from agents.conftest import Board
from ruflo.agents import OutcomeKind, executor_for
from ruflo.agents.a2a import card_location
from ruflo.errors import ConfigError
from ruflo.model import AdapterKind, Agent


def a2a_agent(url: str, **config: Any) -> Agent:
    return Agent(id="a1", hive_id="h1", name="far", adapter=AdapterKind.A2A,
                 adapter_config={"url": url, **config})


async def test_a_remote_agent_does_the_task_and_verify_decides(
        make_board: Callable[..., Board]) -> None:
    with remote_agent("write") as url:
        board = make_board(agent=a2a_agent(url), title="Write calc",
                           verify="grep -qx ok calc.txt")
        outcome = await executor_for(board.agent).run(board.task, board.agent, board.hive,
                                                      board.context())

    assert outcome.kind is OutcomeKind.COMPLETE
    assert outcome.verified is True
    assert outcome.result == "wrote calc.txt"
    assert "Task: Write calc" in Remote.prompts[0]
    assert (board.workspace / "calc.txt").read_text() == "ok\n"
    assert not (board.workspace.parent / "outside.txt").exists()
    states = [e.data["state"] for e in board.transcript("a2a_status")]
    assert "TASK_STATE_WORKING" in states
    files = {e.data["path"]: e.data["note"] for e in board.transcript("a2a_file")}
    assert files["calc.txt"].startswith("wrote")
    assert files["../outside.txt"].startswith("refused")


async def test_the_card_url_itself_may_be_given(make_board: Callable[..., Board]) -> None:
    with remote_agent("write") as url:
        board = make_board(agent=a2a_agent(f"{url}/.well-known/agent-card.json"))
        outcome = await executor_for(board.agent).run(board.task, board.agent, board.hive,
                                                      board.context())
    assert outcome.kind is OutcomeKind.COMPLETE
    assert card_location("http://h/x/.well-known/agent-card.json") == (
        "http://h/x", "/.well-known/agent-card.json")
    assert card_location("http://h/agent/") == ("http://h/agent", None)


async def test_a_remote_agent_that_fails_fails_the_attempt(
        make_board: Callable[..., Board]) -> None:
    with remote_agent("fail") as url:
        board = make_board(agent=a2a_agent(url), verify="true")
        outcome = await executor_for(board.agent).run(board.task, board.agent, board.hive,
                                                      board.context())
    assert outcome.kind is OutcomeKind.FAILED
    assert outcome.reason == "the A2A agent ended failed: the disk is full"


@pytest.mark.timeout(60)
async def test_a_remote_agent_that_hangs_is_cancelled_at_the_timeout(
        make_board: Callable[..., Board]) -> None:
    with remote_agent("hang") as url:
        board = make_board(agent=a2a_agent(url, timeout=1))
        outcome = await executor_for(board.agent).run(board.task, board.agent, board.hive,
                                                      board.context())
        cancelled = list(Remote.cancelled)
    assert outcome.kind is OutcomeKind.FAILED
    assert outcome.reason == f"the A2A agent at {url} did not finish within 1 s"
    (cancel,) = board.transcript("a2a_cancel")
    assert cancel.data["state"] == "TASK_STATE_CANCELED"
    assert cancelled == [cancel.data["task_id"]]


async def test_an_unreachable_remote_agent_or_a_bad_config(
        make_board: Callable[..., Board]) -> None:
    board = make_board(agent=a2a_agent("http://127.0.0.1:9"))
    outcome = await executor_for(board.agent).run(board.task, board.agent, board.hive,
                                                  board.context())
    assert outcome.kind is OutcomeKind.FAILED
    assert "the A2A agent at http://127.0.0.1:9 " in (outcome.reason or "")

    bad = make_board(agent=a2a_agent("ftp://nowhere"))
    with pytest.raises(ConfigError, match="no http"):
        await executor_for(bad.agent).run(bad.task, bad.agent, bad.hive, bad.context())
