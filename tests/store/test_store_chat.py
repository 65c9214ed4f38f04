"""Conversations with message trees, per-user isolation and paging; user settings; tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ruflo.errors import Conflict, NotFound
from ruflo.model import Conversation, Message, new_id


def conversation(user: str, i: int, when: datetime) -> Conversation:
    return Conversation(id=new_id()[:24], user_id=user, title=f"chat {i}", model="m",
                        created_at=when, updated_at=when)


def test_paging_is_newest_first_and_per_user(store: Any) -> None:
    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    mine = [store.create_conversation(conversation("alice", i, t0 + timedelta(minutes=i)))
            for i in range(7)]
    store.create_conversation(conversation("bob", 99, t0))
    first = store.list_conversations("alice", limit=3)
    second = store.list_conversations("alice", limit=3, offset=3)
    third = store.list_conversations("alice", limit=3, offset=6)
    assert [c.title for c in first] == ["chat 6", "chat 5", "chat 4"]
    assert [c.title for c in second] == ["chat 3", "chat 2", "chat 1"]
    assert [c.title for c in third] == ["chat 0"]
    assert store.count_conversations("alice") == 7
    assert store.count_conversations() == 8
    with pytest.raises(NotFound):
        store.get_conversation(mine[0].id, user_id="bob")
    with pytest.raises(NotFound):
        store.delete_conversation(mine[0].id, user_id="bob")
    assert store.get_conversation(mine[0].id, user_id="alice").title == "chat 0"
    assert store.delete_conversations("bob") == 1
    assert store.count_conversations("alice") == 7
    assert store.user_ids() == ["alice"]


def test_message_tree_and_updates(store: Any) -> None:
    chat = store.create_conversation(conversation("u", 0, datetime(2020, 1, 1, tzinfo=UTC)), [
        Message(id="m1", conversation_id="", role="system", content="be brief"),
    ])
    assert store.messages(chat.id)[0].conversation_id == chat.id
    store.add_message(Message(id="m2", conversation_id=chat.id, role="user", content="hi",
                              parent_id="m1"))
    store.add_message(Message(id="m3", conversation_id=chat.id, role="assistant",
                              content="hello", parent_id="m2", data={"reasoning": "r"}))
    # An edit branches: a second child of m1.
    store.add_message(Message(id="m2b", conversation_id=chat.id, role="user", content="hey",
                              parent_id="m1"))
    listed = store.messages(chat.id)
    assert [m.id for m in listed] == ["m1", "m2", "m3", "m2b"]
    assert {m.id: m.parent_id for m in listed} == {"m1": None, "m2": "m1", "m3": "m2",
                                                    "m2b": "m1"}
    assert listed[2].data == {"reasoning": "r"}
    bumped = store.get_conversation(chat.id)
    assert bumped.updated_at > chat.updated_at, "a new message bumps the conversation"
    edited = store.update_message("m3", content="hello!", interrupted=True)
    assert edited.content == "hello!"
    assert edited.interrupted
    renamed = store.update_conversation(chat.id, title="renamed", root_message_id="m1")
    assert renamed.title == "renamed"
    assert renamed.root_message_id == "m1"
    with pytest.raises(NotFound):
        store.add_message(Message(id="x", conversation_id="missing", role="user", content=""))
    with pytest.raises(Conflict):
        store.add_message(Message(id="m1", conversation_id=chat.id, role="user", content=""))
    store.delete_conversation(chat.id)
    assert store.messages(chat.id) == []


def test_user_settings_and_users(store: Any) -> None:
    assert store.get_user_settings("u") == {}
    store.put_user_settings("u", {"activeModel": "a", "customPrompts": {"a": "x"}})
    store.put_user_settings("u", {"activeModel": "b"})
    assert store.get_user_settings("u") == {"activeModel": "b"}
    store.put_user("v", {"username": "vee"})
    assert store.get_user("v") == {"username": "vee"}
    assert store.user_ids() == ["u", "v"]


def test_tokens_store_only_hashes(store: Any) -> None:
    made = store.create_token(token_id="t1", name="ci", user_id="u", token_hash="h" * 64)
    assert made["id"] == "t1"
    assert made["revoked_at"] is None
    assert "token_hash" not in made
    assert store.find_token("h" * 64)["user_id"] == "u"
    assert store.find_token("other") is None
    store.revoke_token("t1")
    assert store.find_token("h" * 64) is None
    assert store.list_tokens()[0]["revoked_at"] is not None
    with pytest.raises(NotFound):
        store.revoke_token("nope")
    with pytest.raises(Conflict):
        store.create_token(token_id="t2", name="dup", user_id="u", token_hash="h" * 64)
