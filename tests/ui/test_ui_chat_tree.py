"""The message tree in the chat page (Debian's Chromium, a real server, the ScriptedGateway):
editing a sent message makes a new branch, retrying an answer makes a sibling, and the versions
can be switched; the next message follows the branch shown; a reload shows the same tree."""

from __future__ import annotations

from typing import Any

import pytest
from ui_harness import GATEWAY_KEY, Servers, axe_violations, describe, expect, shoot
from ui_harness import ask as send

pytestmark = pytest.mark.browser

SCRIPT: dict[str, Any] = {
    "models": ["gpt-4o-mini"], "keys": [GATEWAY_KEY],
    # The first answer to "colour" is red, the next ones blue: a retry answers differently.
    "rules": [{"name": "first", "match": {"last_user": "colour"}, "times": 1,
               "reply": {"content": "Red."}},
              {"name": "again", "match": {"last_user": "colour"}, "reply": {"content": "Blue."}}],
    "default": {"echo": True},
}


def ask(page: Any, text: str) -> None:
    """Send `text` and wait until its answer is complete and the box takes the next."""
    send(page, text)
    expect()(page.locator("#thread .message.assistant.streaming")).to_have_count(0)
    expect()(page.get_by_role("button", name="Send")).to_be_enabled()


def bodies(page: Any) -> list[str]:
    return [text.strip() for text in
            page.locator("#thread .message .message-body").all_text_contents()]


def test_edit_and_retry_make_branches_that_can_be_switched(servers: Servers,
                                                           page: Any) -> None:
    gateway = servers.scripted(SCRIPT)
    served = servers.start(gateway_url=gateway.base_url)
    page.goto(served.url + "/")
    ask(page, "first question")
    ask(page, "which colour?")
    expect()(page.locator("#thread .message-body")).to_have_text(
        ["first question", "first question", "which colour?", "Red."])

    # Retry: the answer gets a sibling, shown at once, and the old one stays reachable.
    page.get_by_role("button", name="Retry this answer").last.click()
    expect()(page.locator("#thread .message-body").last).to_have_text("Blue.")
    expect()(page.get_by_role("button", name="Send")).to_be_enabled()
    answer = page.locator("#thread .message.assistant").last
    expect()(answer.locator(".version-count")).to_have_text("2 / 2")
    answer.get_by_role("button", name="Previous version").click()
    expect()(page.locator("#thread .message-body").last).to_have_text("Red.")
    expect()(page.locator("#thread .message.assistant").last.locator(".version-count")
             ).to_have_text("1 / 2")

    # Edit the first question: a new branch from the root, without the later messages.
    first = page.locator("#thread .message.user").first
    first.get_by_role("button", name="Edit this message").click()
    box = page.get_by_role("textbox", name="Edit your message")
    expect()(box).to_have_value("first question")
    violations = axe_violations(page)
    assert not violations, describe(violations)
    box.fill("edited question")
    page.get_by_role("button", name="Send the edit").click()
    expect()(page.locator("#thread .message-body")).to_have_text(
        ["edited question", "edited question"])
    expect()(page.get_by_role("button", name="Send")).to_be_enabled()
    user = page.locator("#thread .message.user").first
    expect()(user.locator(".version-count")).to_have_text("2 / 2")

    # The next message goes below the branch shown (the edited one).
    ask(page, "after the edit")
    expect()(page.locator("#thread .message-body")).to_have_text(
        ["edited question", "edited question", "after the edit", "after the edit"])

    # Back to the first version: its whole branch, with the answer chosen before.
    page.locator("#thread .message.user").first.get_by_role(
        "button", name="Previous version").click()
    expect()(page.locator("#thread .message-body")).to_have_text(
        ["first question", "first question", "which colour?", "Red."])
    shoot(page, "chat-tree")
    violations = axe_violations(page)
    assert not violations, describe(violations)

    page.reload()  # the tree is the store's: the newest branch is shown again
    expect()(page.locator("#thread .message-body")).to_have_text(
        ["edited question", "edited question", "after the edit", "after the edit"])
    (conversation,) = served.store.list_conversations("local")
    messages = served.store.messages(conversation.id)
    assert sorted(m.content for m in messages if m.role == "user") == sorted(
        ["first question", "which colour?", "edited question", "after the edit"])
    assert [m.content for m in messages if m.role == "assistant"].count("Blue.") == 1


def test_an_attached_text_file_goes_with_the_message_and_shows_in_the_thread(
        servers: Servers, page: Any) -> None:
    gateway = servers.scripted(SCRIPT)
    served = servers.start(gateway_url=gateway.base_url)
    page.goto(served.url + "/")
    page.get_by_label("Attach text files").set_input_files(
        [{"name": "todo.md", "mimeType": "text/markdown", "buffer": b"- ship it\n"}])
    expect()(page.get_by_role("list", name="Attached files")).to_contain_text("todo.md")
    violations = axe_violations(page)
    assert not violations, describe(violations)
    ask(page, "read the file")
    question = page.locator("#thread .message.user")
    expect()(question.locator(".message-files li")).to_have_text(["todo.md (10 characters)"])
    expect()(page.locator("#attached li")).to_have_count(0)
    sent = gateway.requests[-1]["messages"][-1]["content"]
    assert sent == 'read the file\n\n<file name="todo.md">\n- ship it\n\n</file>'
    page.reload()
    expect()(page.locator("#thread .message.user .message-files li")).to_have_text(
        ["todo.md (10 characters)"])
