"""Deciding an agent's action from Telegram: the approval's message carries Approve/Reject
buttons; a press comes back through getUpdates (no inbound connection) and is answered with
answerCallbackQuery. Against a local stand-in of the Bot API (bot_api.py), with the built-in agent
parked on the approval (real store, real GatewayClient, ScriptedGateway as the model)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from bot_api import CHAT, TOKEN, BotApi

from ruflo.agents import Limits, OutcomeKind, RunContext
from ruflo.agents.loop import LLMExecutor
from ruflo.commands.serve import hive_notifications
from ruflo.config import load_settings
from ruflo.engine.control import cancel_task
from ruflo.gateway.client import GatewayClient
from ruflo.gateway.scripted import ScriptedGateway
from ruflo.model import Agent, ApprovalStatus, Hive, Mode, Task
from ruflo.notify.telegram_buttons import read_press
from ruflo.store import open_store
from waiting import stays, until

WIPE = "rm -rf build"
SCRIPT = {"keys": ["sk-test"], "rules": [
    {"match": {"turn": 1}, "reply": {"tool_calls": [
        {"name": "run_command", "arguments": {"command": WIPE}}]}},
    {"match": {"turn": 2, "last_tool": "exit code 0"}, "reply": {"tool_calls": [
        {"name": "complete", "arguments": {"result": "wiped"}}]}},
    {"match": {"turn": 2, "last_tool": "rejected"}, "reply": {"tool_calls": [
        {"name": "abstain", "arguments": {"reason": "not allowed"}}]}},
]}


@dataclass
class Setup:
    bot: BotApi
    gateway: ScriptedGateway
    client: GatewayClient
    store: Any
    hive: Hive
    agent: Agent
    task: Task
    workspace: Path
    settings: Any


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    bot = BotApi()
    bot.start()
    gateway = ScriptedGateway(SCRIPT)
    gateway.start()
    settings = load_settings({"RUFLO_DATA_DIR": str(tmp_path / "data"), "RUFLO_CONFIG": "",
                              "RUFLO_TELEGRAM_BOT_TOKEN": TOKEN, "RUFLO_TELEGRAM_CHAT_ID": CHAT,
                              "RUFLO_TELEGRAM_API_BASE": bot.url})
    store = open_store(settings)
    workspace = tmp_path / "work"
    (workspace / "build").mkdir(parents=True)
    hive = Hive(id="h1", name="tidy", mode=Mode.SWARM, objective="tidy", workspace=str(workspace))
    agent = Agent(id="a1", hive_id="h1", name="ada")
    task = Task(id="t1", hive_id="h1", title="Clean the build")
    store.create_hive(hive, agents=[agent], tasks=[task])
    claimed = store.claim_task("h1", "a1", lease_seconds=300, task_id="t1")
    client = GatewayClient(gateway.base_url, "sk-test", store=store)
    yield Setup(bot, gateway, client, store, hive, agent, claimed, workspace, settings)
    await client.aclose()
    store.close()
    gateway.stop()
    bot.stop()


async def parked(setup: Setup) -> tuple[asyncio.Task[Any], dict[str, Any]]:
    """The attempt waits on `rm -rf build`; the approval's message with buttons was sent."""
    ctx = RunContext(store=setup.store, workspace=setup.workspace, gateway=setup.client,
                     limits=Limits(approval_poll=0.1))
    attempt = asyncio.create_task(LLMExecutor().run(setup.task, setup.agent, setup.hive, ctx))
    message = await until(lambda: next(iter(setup.bot.sent), None),
                          what="no Telegram message was sent")
    approval = setup.store.list_approvals(hive_id="h1")[0]
    assert str(message["chat_id"]) == CHAT
    assert WIPE in message["text"]
    buttons = message["reply_markup"]["inline_keyboard"][0]
    assert [read_press(b["callback_data"]) for b in buttons] == [(approval.id, True),
                                                                 (approval.id, False)]
    await stays(lambda: len(setup.gateway.requests) == 1 and not attempt.done(),
                what="a gateway call was made while waiting")
    return attempt, message


async def test_approve_button_runs_the_command_and_the_attempt_goes_on(setup: Setup) -> None:
    with hive_notifications(setup.settings, setup.store, echo=lambda _: None):
        attempt, message = await parked(setup)
        setup.bot.press(message, 0, user="ops")
        outcome = await asyncio.wait_for(attempt, 60)
        await until(lambda: setup.bot.answers, what="the press was never answered")

    assert outcome.kind is OutcomeKind.COMPLETE
    assert outcome.turns == 2
    assert not (setup.workspace / "build").exists()
    approval = setup.store.list_approvals(hive_id="h1")[0]
    assert approval.status is ApprovalStatus.APPROVED
    assert approval.decided_by == "telegram:ops"
    assert setup.bot.answers[0]["callback_query_id"] == "cq1000"
    assert setup.bot.answers[0]["text"].startswith("approved: ada wants to run `rm -rf build`")


async def test_reject_button_reaches_the_model_and_a_second_press_changes_nothing(
        setup: Setup) -> None:
    with hive_notifications(setup.settings, setup.store, echo=lambda _: None):
        attempt, message = await parked(setup)
        setup.bot.press(message, 1, user="ops")
        outcome = await asyncio.wait_for(attempt, 60)
        setup.bot.press(message, 0, user="late")
        await until(lambda: len(setup.bot.answers) == 2, what="a press was never answered")

    assert outcome.kind is OutcomeKind.ABSTAIN
    assert (setup.workspace / "build").exists()
    tool = setup.gateway.requests[1]["messages"][-1]
    assert tool["role"] == "tool"
    assert "rejected" in tool["content"]
    assert "telegram:ops" in tool["content"]
    assert "already rejected by telegram:ops; nothing was changed" in setup.bot.answers[1]["text"]
    assert setup.store.list_approvals(hive_id="h1")[0].status is ApprovalStatus.REJECTED


async def test_a_press_on_an_approval_whose_task_was_cancelled_changes_nothing(
        setup: Setup) -> None:
    with hive_notifications(setup.settings, setup.store, echo=lambda _: None):
        attempt, message = await parked(setup)
        cancel_task(setup.store, "t1")
        outcome = await asyncio.wait_for(attempt, 60)
        setup.bot.press(message, 0, user="late")
        await until(lambda: setup.bot.answers, what="the press was never answered")

    assert outcome.kind is OutcomeKind.FAILED
    assert len(setup.gateway.requests) == 1
    assert (setup.workspace / "build").exists()
    approval = setup.store.list_approvals(hive_id="h1")[0]
    assert approval.status is ApprovalStatus.CANCELLED
    assert setup.bot.answers[0]["text"] == (
        f"approval {approval.id} was cancelled (the task is cancelled): it can no longer be "
        "decided; nothing was changed")


async def test_presses_from_another_chat_decide_nothing(setup: Setup) -> None:
    with hive_notifications(setup.settings, setup.store, echo=lambda _: None):
        attempt, message = await parked(setup)
        setup.bot.press(message, 0, chat="666")
        setup.bot.press(message, 0, data="ruflo:approve:no-such-approval")
        setup.bot.press(message, 0, data="ruflo:approve:" + "x" * 40 + ":extra")
        await until(lambda: len(setup.bot.answers) == 3, what="a press was never answered")
        assert "nothing was decided" in setup.bot.answers[0]["text"]
        assert setup.bot.answers[1]["text"] == \
            "no approval no-such-approval: nothing was decided"
        assert "nothing was decided" in setup.bot.answers[2]["text"]
        assert setup.store.list_approvals(hive_id="h1")[0].status is ApprovalStatus.PENDING
        attempt.cancel()
        with pytest.raises(asyncio.CancelledError):
            await attempt


def answers_to_replies(setup: Setup) -> list[dict[str, Any]]:
    return [m for m in setup.bot.sent if "reply_parameters" in m]


@pytest.mark.parametrize("keyboard", [True, False], ids=["buttons", "text-only"])
async def test_a_reply_rejects_with_the_reason_the_model_reads(setup: Setup,
                                                               keyboard: bool) -> None:
    """A person replies "reject ..." to the approval's message; the words after the first reach
    the model. The approval is found from the replied-to message's buttons or, without them,
    from the command its text names."""
    with hive_notifications(setup.settings, setup.store, echo=lambda _: None):
        attempt, message = await parked(setup)
        assert message["text"].endswith("to tell the agent your reason.")
        setup.bot.reply(message, "Reject: build/ holds the release notes", keyboard=keyboard)
        outcome = await asyncio.wait_for(attempt, 60)
        answer = await until(lambda: next(iter(answers_to_replies(setup)), None),
                             what="the reply was never answered")

    assert outcome.kind is OutcomeKind.ABSTAIN
    assert (setup.workspace / "build").exists()
    tool = setup.gateway.requests[1]["messages"][-1]
    assert "build/ holds the release notes" in tool["content"]
    approval = setup.store.list_approvals(hive_id="h1")[0]
    assert approval.status is ApprovalStatus.REJECTED
    assert approval.decided_by == "telegram:ops"
    assert answer["text"].startswith("rejected: ada wants to run `rm -rf build`")
    assert answer["text"].endswith("(because: build/ holds the release notes)")
    assert answer["reply_parameters"]["message_id"] == 500 + 1000


async def test_a_reply_without_a_decision_word_or_to_another_message_decides_nothing(
        setup: Setup) -> None:
    with hive_notifications(setup.settings, setup.store, echo=lambda _: None):
        attempt, message = await parked(setup)
        setup.bot.reply(message, "hmm, what is in build?")
        answer = await until(lambda: next(iter(answers_to_replies(setup)), None),
                             what="the reply was never answered")
        setup.bot.reply({"message_id": 9, "text": "lunch?"}, "reject")
        setup.bot.reply(message, "reject", chat="666")
        await stays(lambda: len(answers_to_replies(setup)) == 1,
                    what="a reply not ruflo's was answered")
        assert answer["text"] == ("start the reply with approve or reject, then why (not "
                                  "'hmm,'); nothing was decided")
        assert setup.store.list_approvals(hive_id="h1")[0].status is ApprovalStatus.PENDING
        attempt.cancel()
        with pytest.raises(asyncio.CancelledError):
            await attempt
