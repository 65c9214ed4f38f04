"""The web UI in a real browser (Debian's Chromium through Playwright) against a real server and
the ScriptedGateway: chat with a streamed answer, a swarm hive started from the page running to
done live, an approval decided in a company hive, the gateway banners, and axe scans."""

from __future__ import annotations

import re
from typing import Any

import pytest
from ui_harness import Servers, axe_violations, closed_port, describe, expect, shoot

from ruflo.model import Approval, ApprovalKind, ApprovalStatus, HiveStatus, Mode, TaskState, new_id

pytestmark = pytest.mark.browser


def test_chat_streams_an_answer_and_keeps_the_conversation(servers: Servers, page: Any) -> None:
    gateway = servers.scripted()
    served = servers.start(gateway_url=gateway.base_url)
    page.goto(served.url + "/")
    expect()(page.locator("#model option[value='scripted-large']")).to_have_count(1)
    assert page.locator("#gateway-banner").is_hidden()

    prompt = page.get_by_label("Message")
    prompt.fill("hello swarm")
    prompt.press("Shift+Enter")
    prompt.type("second line")
    assert page.locator("#thread .message").count() == 0, "Shift+Enter must not send"
    prompt.press("Enter")

    answer = page.locator("#thread .message.assistant .message-body")
    expect()(answer).to_have_text("Hello there! The swarm is ready when you are.")
    expect()(page.locator("#thread .message.user .message-body")).to_have_text(
        "hello swarm\nsecond line")
    expect()(page.locator("#thread-title")).to_have_text("hello swarm second line")
    expect()(page.locator("#conversation-list a")).to_have_text(["hello swarm second line"])
    assert re.fullmatch(r".*/conversation/[0-9a-f]{24}", page.url)
    assert page.get_by_role("button", name="Send").is_enabled()
    shoot(page, "chat-answer")

    (conversation,) = served.store.list_conversations("local")
    stored = [m for m in served.store.messages(conversation.id) if m.role != "system"]
    assert [m.role for m in stored] == ["user", "assistant"]
    assert stored[1].content == "Hello there! The swarm is ready when you are."
    (asked,) = gateway.requests
    assert asked["stream"] is True
    assert asked["model"] == "gpt-4o-mini"
    assert asked["messages"][-1] == {"role": "user", "content": "hello swarm\nsecond line"}

    # The conversation survives a reload and can be renamed from the keyboard.
    page.reload()
    expect()(page.locator("#thread .message.assistant .message-body")).to_have_text(
        "Hello there! The swarm is ready when you are.")
    page.get_by_role("button", name="Rename").click()
    page.get_by_label("New title").fill("Greetings")
    page.get_by_label("New title").press("Enter")
    expect()(page.locator("#conversation-list a")).to_have_text(["Greetings"])
    assert served.store.get_conversation(conversation.id).title == "Greetings"

    violations = axe_violations(page)
    assert not violations, describe(violations)


def test_stop_button_ends_a_long_answer_and_keeps_what_was_written(
        servers: Servers, page: Any) -> None:
    gateway = servers.scripted()
    served = servers.start(gateway_url=gateway.base_url)
    page.goto(served.url + "/")
    page.get_by_label("Message").fill("tell me a long story")
    page.get_by_role("button", name="Send").click()
    body = page.locator("#thread .message.assistant .message-body")
    expect()(body).to_contain_text("once upon a time")
    page.get_by_role("button", name="Stop").click()
    expect()(page.locator("#thread .message.assistant .note")).to_have_text(
        "stopped before the end")
    expect()(page.get_by_role("button", name="Stop")).to_be_hidden()
    shown = body.text_content()
    (conversation,) = served.store.list_conversations("local")
    (answer,) = [m for m in served.store.messages(conversation.id) if m.role == "assistant"]
    assert answer.interrupted
    assert 0 < len(answer.content) < len("once upon a time " * 4000)
    # Shown as Markdown: one paragraph, whose trailing space Markdown drops.
    assert shown is not None
    assert shown.strip() == answer.content.strip()


def test_a_swarm_hive_started_from_the_page_reaches_done_live(servers: Servers,
                                                             page: Any) -> None:
    gateway = servers.scripted()
    served = servers.start(gateway_url=gateway.base_url, live=True)
    page.goto(served.url + "/hives")
    expect()(page.locator("#hives-empty")).to_be_visible()
    page.get_by_label("Objective").fill("Ship the greeting feature")
    page.get_by_label("Mode", exact=True).select_option("swarm")
    page.get_by_label("Agents", exact=True).fill("3")
    page.get_by_label("First tasks (optional, one a line)").fill(
        "write the greeting\nwrite its test\nupdate the docs\nreview the change")
    page.get_by_role("button", name="Start the hive").click()

    page.wait_for_url(re.compile(r".*/hives/[0-9a-f]{32}$"))
    hive_id = page.url.rsplit("/", 1)[1]
    loaded_at = page.evaluate("performance.timeOrigin")
    expect()(page.locator("#live-state")).to_have_text(re.compile("Live"))
    # Every task reaches the done column without the page being loaded again.
    expect()(page.locator("#tasks-done li")).to_have_count(4, timeout=60_000)
    expect()(page.locator("#hive-status")).to_have_text("done", timeout=30_000)
    assert page.evaluate("performance.timeOrigin") == loaded_at, "the page was reloaded"
    for state in ("open", "claimed", "blocked", "failed", "cancelled"):
        expect()(page.locator(f"#count-{state}")).to_have_text("0")
    expect()(page.locator("#agents tr")).to_have_count(3)
    expect()(page.locator("#events li[data-kind='task_done']")).to_have_count(4)
    expect()(page.locator("#timeline .bar.done")).to_have_count(4)
    expect()(page.locator("#cost-text")).to_contain_text("4 gateway calls")
    shoot(page, "hive-swarm-done")

    tasks = served.store.list_tasks(hive_id)
    assert {t.state for t in tasks} == {TaskState.DONE}
    assert served.store.get_hive(hive_id).status is HiveStatus.DONE
    shown_titles = page.locator("#tasks-done .task-title").all_text_contents()
    assert sorted(shown_titles) == sorted(t.title for t in tasks)

    violations = axe_violations(page)
    assert not violations, describe(violations)


def test_an_approval_in_a_company_hive_is_decided_from_the_page(servers: Servers,
                                                               page: Any) -> None:
    gateway = servers.scripted()
    served = servers.start(gateway_url=gateway.base_url)
    page.goto(served.url + "/hives")
    page.get_by_label("Objective").fill("Plan the quarter")
    page.get_by_label("Mode", exact=True).select_option("company")
    expect()(page.get_by_label("Org chart")).to_be_visible()
    expect()(page.get_by_label("Agents", exact=True)).to_be_hidden()
    shoot(page, "hives-start-company")
    violations = axe_violations(page)
    assert not violations, describe(violations)
    page.get_by_role("button", name="Start the hive").click()
    page.wait_for_url(re.compile(r".*/hives/[0-9a-f]{32}$"))
    hive_id = page.url.rsplit("/", 1)[1]
    hive = served.store.get_hive(hive_id)
    assert hive.mode is Mode.COMPANY
    agents = {a.name: a for a in served.store.list_agents(hive_id)}
    assert agents["dev-1"].reports_to == agents["lead"].id
    expect()(page.locator("#agents tr")).to_have_count(3)
    dev_2 = page.locator(f"#agents tr[data-agent-id='{agents['dev-2'].id}'] td")
    expect()(dev_2.nth(2)).to_have_text("tester · reports to lead")
    assert page.locator("#approvals-section").is_hidden()

    # The approval is asked while the page is open: it appears without a reload.
    asked = served.store.create_approval(Approval(
        id=new_id(), hive_id=hive_id, kind=ApprovalKind.HIRE, agent_id=agents["lead"].id,
        subject="Hire a second tester", data={"role": "tester"}))
    button = page.get_by_role("button", name="Approve: Hire a second tester")
    expect()(button).to_be_visible()
    expect()(page.locator("#approvals")).to_contain_text("asked by lead")
    shoot(page, "hive-company-approval")
    violations = axe_violations(page)
    assert not violations, describe(violations)

    button.click()
    expect()(page.locator("#approvals-section")).to_be_hidden()
    decided = served.store.get_approval(asked.id)
    assert decided.status is ApprovalStatus.APPROVED
    assert decided.decided_by == "local"
    expect()(page.locator("#events li[data-kind='approval_decided']")).to_have_count(1)


@pytest.mark.parametrize(("trouble", "banner"), [
    ("down", "can't be reached|unreachable|connect"),
    ("refused", "refused"),
])
def test_chat_page_shows_a_banner_when_the_gateway_is_in_trouble(
        servers: Servers, page: Any, trouble: str, banner: str) -> None:
    if trouble == "down":
        served = servers.start(gateway_url=f"http://127.0.0.1:{closed_port()}/v1")
        advice = "Check that the gateway is running"
    else:
        gateway = servers.scripted()
        served = servers.start(gateway_url=gateway.base_url, key="sk-revoked")
        advice = "LiteLLM virtual key"
    answer = page.goto(served.url + "/")
    assert answer is not None
    assert answer.status == 200
    shown = page.locator("#gateway-banner")
    expect()(shown).to_be_visible()
    expect()(shown.locator(".banner-what")).to_have_text(re.compile(banner, re.I))
    expect()(shown.locator(".banner-todo")).to_contain_text(advice)
    assert shown.get_attribute("data-status") == ("unreachable" if trouble == "down"
                                                   else "refused")
    # The page still works around the trouble: the composer is there, no models to offer.
    expect()(page.locator("#model-note")).to_have_text("the gateway offers no models right now")
    expect()(page.get_by_label("Message")).to_be_editable()
    shoot(page, f"chat-gateway-{trouble}")


def test_narrow_screen_keeps_the_chat_usable(servers: Servers, browser: Any) -> None:
    gateway = servers.scripted()
    served = servers.start(gateway_url=gateway.base_url)
    context = browser.new_context(viewport={"width": 390, "height": 780})
    try:
        page = context.new_page()
        page.goto(served.url + "/")
        toggle = page.get_by_role("button", name="Conversations")
        expect()(toggle).to_be_visible()
        expect()(page.locator("#conversations")).to_be_hidden()
        toggle.click()
        expect()(page.locator("#conversations")).to_be_visible()
        assert toggle.get_attribute("aria-expanded") == "true"
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the page scrolls sideways ({width} px)"
        shoot(page, "chat-narrow")
    finally:
        context.close()
