"""An agent's action waiting on a person, decided from the hive page in Chromium: the page shows
the exact command and where the attempt waits; Approve runs it and the attempt goes on at that
turn; Reject (with a reason) reaches the model as a tool error. A real server running the live
engine, the ScriptedGateway as the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ui_harness import Servers, expect, shoot

from ruflo.model import ApprovalStatus, TaskState
from waiting import stays_sync, wait_until

pytestmark = pytest.mark.browser

WIPE = "rm -rf build"


def call(name: str, **arguments: object) -> dict[str, object]:
    return {"tool_calls": [{"name": name, "arguments": arguments}]}


SCRIPT = {"keys": ["sk-test"], "rules": [
    {"match": {"turn": 1}, "reply": call("run_command", command=WIPE)},
    {"match": {"turn": 2, "last_tool": "exit code 0"},
     "reply": call("complete", result="wiped the build folder")},
    {"match": {"turn": 2, "last_tool": "rejected"},
     "reply": call("abstain", reason="may not wipe the build folder")},
], "default": {"content": "lost"}}


def waiting_hive(servers: Servers, page: Any) -> tuple[Any, Any, str, Path]:
    """A hive whose agent waits to run `rm -rf build`, its page open on the approval."""
    gateway = servers.scripted(SCRIPT)
    served = servers.start(gateway_url=gateway.base_url, key="sk-test", live=True)
    answer = served.http.post("/api/v2/hives", json={
        "objective": "Clean the build", "agents": [{"name": "ada"}],
        "tasks": [{"title": "Clean the build"}],
        # The agent works in the hive's folder itself, so the test can put `build` there while
        # the command waits (under git isolation it works in a worktree cut at claim time).
        "isolation": "none"})
    assert answer.status_code == 201, answer.text
    hive_id = answer.json()["id"]
    approval = wait_until(lambda: next(iter(served.store.list_approvals(hive_id=hive_id)), None),
                          what="no approval was opened")
    workspace = Path(str(served.store.get_hive(hive_id).workspace))
    (workspace / "build").mkdir(exist_ok=True)
    page.goto(f"{served.url}/hives/{hive_id}")
    item = page.locator(f"li.approval[data-approval-id='{approval.id}']")
    expect()(item.locator("pre.approval-action")).to_have_text(f"run_command: {WIPE}")
    expect()(item).to_contain_text("waits at turn 1 of task Clean the build")
    expect()(page.locator("#safe-defaults")).to_contain_text("rm -rf")
    # Parked before the tool: one gateway call (turn 1), and no other while the page is open.
    stays_sync(lambda: len(gateway.requests) == 1, what="a gateway call was made while waiting")
    return served, gateway, hive_id, workspace


def test_approving_on_the_hive_page_runs_the_command_and_the_attempt_goes_on(
        servers: Servers, page: Any) -> None:
    served, gateway, hive_id, workspace = waiting_hive(servers, page)
    shoot(page, "action-approval")
    # While it waits the task stays claimed: the engine keeps renewing its lease.
    claimed = next(t for t in served.store.list_tasks(hive_id) if t.state is TaskState.CLAIMED)
    assert claimed.lease_until is not None
    wait_until(lambda: (served.store.get_task(claimed.id).lease_until or claimed.lease_until)
               > claimed.lease_until, what="the lease was not renewed while the action waited")
    assert served.store.get_task(claimed.id).state is TaskState.CLAIMED
    assert len(gateway.requests) == 1
    page.get_by_role("button", name=f"Approve: ada wants to run `{WIPE}`", exact=False).click()

    task = wait_until(lambda: next((t for t in served.store.list_tasks(hive_id)
                                    if t.state is TaskState.DONE), None),
                      what="the task never finished")
    assert task.result == "wiped the build folder"
    assert not (workspace / "build").exists()
    assert len(gateway.requests) == 2
    assert "exit code 0" in gateway.requests[1]["messages"][-1]["content"]
    decided = served.store.list_approvals(hive_id=hive_id)[0]
    assert decided.status is ApprovalStatus.APPROVED
    expect()(page.locator("#approvals-section")).to_be_hidden()


def test_rejecting_on_the_hive_page_sends_the_reason_to_the_model(
        servers: Servers, page: Any) -> None:
    _served, gateway, _hive_id, workspace = waiting_hive(servers, page)
    page.get_by_role("textbox", name="Reason for:", exact=False).fill("the cache is precious")
    page.get_by_role("button", name="Reject: ", exact=False).click()

    wait_until(lambda: len(gateway.requests) >= 2, what="the attempt never went on")
    tool = gateway.requests[1]["messages"][-1]
    assert tool["role"] == "tool"
    assert "rejected" in tool["content"]
    assert "the cache is precious" in tool["content"]
    assert (workspace / "build").exists()
