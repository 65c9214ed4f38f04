"""ruflo's tools in the chat page (Debian's Chromium, a real server with the live engine, the
ScriptedGateway as both the chat model and the hive's agents): the model asks to start a hive,
the call waits for the person, runs on Allow, and the hive's card in the conversation follows it
to done without a reload; Deny runs nothing; the per-tool policies are set in settings."""

from __future__ import annotations

import re
from typing import Any

import pytest
from ui_harness import GATEWAY_KEY, Servers, ask, axe_violations, describe, expect, shoot

from ruflo.model import HiveStatus

pytestmark = pytest.mark.browser

START = {"objective": "Greet the world", "agents": 2,
         "tasks": [{"title": "write the greeting"}, {"title": "review it"}]}
SCRIPT: dict[str, Any] = {
    "models": ["gpt-4o-mini"], "keys": [GATEWAY_KEY], "cost": 0.0003,
    "rules": [
        {"name": "agent-completes", "match": {"system": "in a hive of agents"}, "delay": 0.4,
         "reply": {"tool_calls": [{"name": "complete", "arguments": {"result": "done"}}]}},
        {"name": "start", "match": {"last_user": "(?i)start a hive", "last_role": "user"},
         "reply": {"content": "I will start a hive for that.", "tool_calls": [
             {"name": "ruflo_start_hive", "arguments": START}]}},
        {"name": "started", "match": {"last_role": "tool", "last_tool": "\"hive\""},
         "reply": {"content": "The hive is **running**; its card below follows it."}},
        {"name": "declined", "match": {"last_role": "tool"},
         "reply": {"content": "Understood, nothing was started."}},
    ],
    "default": {"content": "ok"},
}


def test_a_hive_started_from_the_chat_after_confirmation_runs_to_done_on_its_card(
        servers: Servers, page: Any) -> None:
    served = servers.start(gateway_url=servers.scripted(SCRIPT).base_url, live=True)
    page.goto(served.url + "/")
    loaded_at = page.evaluate("performance.timeOrigin")
    ask(page, "Please start a hive that greets the world")

    call = page.get_by_role("group", name="Tool call: Start a hive")
    expect()(call.locator(".tool-call-status")).to_have_text("(waits for you)")
    assert served.store.list_hives() == []  # nothing runs before the person says so
    call.get_by_text("Arguments").click()
    expect()(call.locator("pre")).to_contain_text('"objective": "Greet the world"')
    violations = axe_violations(page)
    assert not violations, describe(violations)
    call.get_by_role("button", name="Allow Start a hive").click()

    card = page.locator(".hive-card")
    expect()(card.get_by_role("link", name="Greet the world")).to_have_attribute(
        "href", re.compile(r"^/hives/[0-9a-f]{32}$"))
    expect()(page.locator("#thread .message.assistant .message-body strong")).to_have_text(
        "running")
    # The card follows the hive to its end while the page stays as it is.
    expect()(card.locator(".hive-card-status")).to_have_text("done", timeout=60_000)
    expect()(card.locator(".hive-card-tasks")).to_have_text("2 done")
    expect()(card.locator(".hive-card-spend")).to_contain_text("tokens, $")
    assert page.evaluate("performance.timeOrigin") == loaded_at, "the page was reloaded"
    (hive,) = served.store.list_hives()
    assert hive.status is HiveStatus.DONE
    shoot(page, "chat-hive-card")
    violations = axe_violations(page)
    assert not violations, describe(violations)

    page.reload()  # the call, its result and the card come back from the store
    stored = page.get_by_role("group", name="Tool call: Start a hive")
    expect()(stored.locator(".tool-call-status")).to_have_text("(done)")
    expect()(page.locator(".hive-card .hive-card-status")).to_have_text("done")


def test_deny_runs_nothing_and_policies_are_set_in_settings(servers: Servers,
                                                            page: Any) -> None:
    served = servers.start(gateway_url=servers.scripted(SCRIPT).base_url)
    page.goto(served.url + "/")
    ask(page, "start a hive please")
    call = page.get_by_role("group", name="Tool call: Start a hive")
    call.get_by_role("button", name="Deny Start a hive").click()
    expect()(call.locator(".tool-call-status")).to_have_text("(declined)")
    expect()(page.locator("#thread .message.assistant .message-body")).to_contain_text(
        "nothing was started")
    assert served.store.list_hives() == []

    page.get_by_role("button", name="Settings").click()
    start = page.get_by_label("Start a hive (changes things)")
    expect()(start).to_have_value("ask")
    expect()(page.get_by_label("Show a hive's board")).to_have_value("allow")
    start.select_option("off")
    violations = axe_violations(page)
    assert not violations, describe(violations)
    page.get_by_role("button", name="Save").click()
    expect()(page.locator("#settings")).to_be_hidden()
    tools = {t["name"]: t["policy"] for t in served.http.get("/api/v2/tools").json()["tools"]}
    assert tools["ruflo_start_hive"] == "off"
    assert tools["ruflo_pause_hive"] == "ask"


def test_an_mcp_server_added_in_settings_has_a_tool_called_from_the_chat(
        servers: Servers, page: Any, tmp_path: Any) -> None:
    from ruflo.store import open_store
    from ruflo_mcp_http import ruflo_mcp_http

    gateway = servers.scripted({"models": ["gpt-4o-mini"], "keys": [GATEWAY_KEY], "rules": [
        {"match": {"last_user": "(?i)desk", "last_role": "user"}, "reply": {"tool_calls": [
            {"name": "desk__create_hive", "arguments": {"name": "via-mcp",
                                                        "objective": "ship"}}]}},
        {"match": {"last_role": "tool"}, "reply": {"content": "Made it over MCP."}}],
        "default": {"content": "ok"}})
    served = servers.start(gateway_url=gateway.base_url)
    with ruflo_mcp_http(tmp_path) as (url, data):
        page.goto(served.url + "/")
        page.get_by_role("button", name="Settings").click()
        page.get_by_label("Name", exact=True).fill("desk")
        page.get_by_label("Streamable HTTP URL").fill(url)
        page.get_by_role("button", name="Add the server").click()
        expect()(page.locator("#mcp-servers li[data-server='desk'] .mcp-state")).to_have_text(
            re.compile(r"^\d+ tools$"))
        policy = page.get_by_label("create_hive (desk) (changes things)")
        expect()(policy).to_have_value("ask")
        violations = axe_violations(page)
        assert not violations, describe(violations)
        page.get_by_role("button", name="Save").click()
        expect()(page.locator("#settings")).to_be_hidden()

        ask(page, "use the desk")
        call = page.get_by_role("group", name="Tool call: create_hive (desk)")
        expect()(call.locator(".tool-call-status")).to_have_text("(waits for you)")
        call.get_by_role("button", name="Allow create_hive (desk)").click()
        expect()(call.locator(".tool-call-status")).to_have_text("(done)")
        expect()(page.locator("#thread .message.assistant .message-body").last).to_have_text(
            "Made it over MCP.")
        store = open_store(f"sqlite:///{data / 'ruflo.db'}")
        try:
            assert [h.name for h in store.list_hives()] == ["via-mcp"]
        finally:
            store.close()
