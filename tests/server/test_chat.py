"""The ruvocal-shaped chat API over real HTTP, with the ScriptedGateway as the model."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from server_harness import Served

from ruflo.model import CostKind
from waiting import wait_until


def new_conversation(served: Served, **body: Any) -> str:
    answer = served.client.post("/api/v2/conversations", json=body)
    assert answer.status_code == 201, answer.text
    conversation_id = answer.json()["conversationId"]
    assert len(conversation_id) == 24
    assert int(conversation_id, 16) >= 0
    return str(conversation_id)


def send(served: Served, conversation_id: str, **body: Any) -> list[dict[str, Any]]:
    return [frame["data"] for frame in served.sse(
        f"/api/v2/conversations/{conversation_id}/messages", method="POST", json_body=body)]


def test_models_come_from_the_gateway(served: Served) -> None:
    answer = served.client.get("/api/v2/models")
    assert answer.status_code == 200
    assert answer.headers["x-gateway-status"] == "ok"
    models = answer.json()
    assert [m["id"] for m in models] == ["gpt-4o-mini", "scripted"]
    assert {"id", "name", "displayName", "description", "multimodal", "supportsTools",
            "unlisted"} <= set(models[0])
    refreshed = served.client.post("/api/v2/models/refresh").json()
    assert refreshed["gateway"]["status"] == "ok"
    assert len(refreshed["models"]) == 2
    assert served.client.get("/api/v2/gateway").json()["status"] == "ok"


def test_models_while_the_gateway_is_down_answer_empty_with_a_status(
        make_server: Callable[..., Served]) -> None:
    served = make_server(gateway_url="http://127.0.0.1:9/v1")
    answer = served.client.get("/api/v2/models")
    assert answer.status_code == 200
    assert answer.json() == []
    assert answer.headers["x-gateway-status"] == "unreachable"
    state = served.client.get("/api/v2/gateway").json()
    assert state["status"] == "unreachable"
    assert state["message"]
    refreshed = served.client.post("/api/v2/models/refresh")
    assert refreshed.status_code == 200
    assert refreshed.json()["models"] == []


def test_models_when_the_gateway_refuses_the_key(served: Served) -> None:
    served.gateway.revoke_key("sk-test")
    answer = served.client.get("/api/v2/models")
    assert answer.status_code == 200
    assert answer.json() == []
    assert answer.headers["x-gateway-status"] == "refused"
    flags = served.client.get("/api/v2/feature-flags")
    assert flags.status_code == 200
    assert flags.json()["enableAssistants"] is False
    ready = served.client.get("/readyz").json()
    assert ready["status"] == "ready"
    assert ready["gateway"]["status"] == "refused"


def test_stream_an_answer_and_keep_the_tree(served: Served) -> None:
    conversation_id = new_conversation(served, preprompt="Be brief.")
    updates = send(served, conversation_id, inputs="hello world")
    kinds = [u["type"] for u in updates]
    assert kinds[0] == "status"
    assert updates[0]["status"] == "started"
    tokens = [u["token"] for u in updates if u["type"] == "stream"]
    assert len(tokens) > 1, "the answer should arrive in pieces"
    assert "".join(tokens) == "Hello there, how can I help?"
    final = next(u for u in updates if u["type"] == "finalAnswer")
    assert final == {"type": "finalAnswer", "text": "Hello there, how can I help?",
                     "html": "<p>Hello there, how can I help?</p>\n", "interrupted": False}
    # While it streams, the answer so far also comes as sanitized HTML, with the length of
    # the text it covers (the page shows the rest as plain text after it).
    rendered = [u for u in updates if u["type"] == "rendered"]
    assert rendered
    assert rendered[0]["html"] == f"<p>{tokens[0]}</p>\n"
    assert rendered[0]["length"] == len(tokens[0])
    title = next(u for u in updates if u["type"] == "title")
    assert title["title"] == "hello world"
    # The model saw the preprompt and the question.
    sent = served.gateway.requests[-1]["messages"]
    assert sent == [{"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "hello world"}]

    conversation = served.client.get(f"/api/v2/conversations/{conversation_id}").json()
    assert conversation["title"] == "hello world"
    root, question, answer = conversation["messages"]
    assert conversation["rootMessageId"] == root["id"]
    assert root["from"] == "system"
    assert question["from"] == "user"
    assert question["ancestors"] == [root["id"]]
    assert answer["from"] == "assistant"
    assert answer["parentId"] == question["id"]
    assert answer["ancestors"] == [root["id"], question["id"]]
    assert answer["html"] == "<p>Hello there, how can I help?</p>\n"
    assert "html" not in question
    assert question["children"] == [answer["id"]]
    assert answer["content"] == "Hello there, how can I help?"
    assert not answer["interrupted"]
    # Metered as chat spend.
    spend = served.store.spend(kind=CostKind.CHAT)
    assert spend.calls == 1
    assert spend.cost > 0

    # A follow-up carries the branch's history; an edit branches from the question's parent.
    send(served, conversation_id, inputs="and again")
    assert served.gateway.requests[-1]["messages"][-3:] == [
        {"role": "user", "content": "hello world"},
        {"role": "assistant", "content": "Hello there, how can I help?"},
        {"role": "user", "content": "and again"}]
    send(served, conversation_id, inputs="hello edited", id=root["id"])
    assert served.gateway.requests[-1]["messages"] == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello edited"}]
    tree = served.client.get(f"/api/v2/conversations/{conversation_id}").json()["messages"]
    assert len([m for m in tree if m["parentId"] == root["id"]]) == 2

    # Retry answers the same question again as a sibling answer.
    retry = send(served, conversation_id, id=question["id"], is_retry=True)
    assert next(u for u in retry if u["type"] == "finalAnswer")["text"].startswith("Hello")
    tree = served.client.get(f"/api/v2/conversations/{conversation_id}").json()["messages"]
    assert len(next(m for m in tree if m["id"] == question["id"])["children"]) == 2


def test_title_from_task_model(make_server: Callable[..., Served]) -> None:
    served = make_server(task_model="scripted")
    conversation_id = new_conversation(served)
    updates = send(served, conversation_id, inputs="hello, tell me about bees")
    assert {"type": "title", "title": "Greetings Exchange"} in updates
    title_calls = [r for r in served.gateway.requests if r["model"] == "scripted"]
    assert len(title_calls) == 1
    assert served.client.get(
        f"/api/v2/conversations/{conversation_id}").json()["title"] == "Greetings Exchange"


def test_stop_generating_keeps_the_partial_answer(served: Served) -> None:
    conversation_id = new_conversation(served)
    stopped: dict[str, Any] = {}

    def stop_after_first_token(frames: list[dict[str, Any]]) -> bool:
        if not stopped and any(f["data"]["type"] == "stream" for f in frames):
            stopper = threading.Thread(target=lambda: stopped.update(
                served.client.post(
                    f"/api/v2/conversations/{conversation_id}/stop-generating").json()))
            stopper.start()
            stopped["thread"] = stopper
        return False

    frames = served.sse(f"/api/v2/conversations/{conversation_id}/messages", method="POST",
                        json_body={"inputs": "tell me a long story"},
                        until=stop_after_first_token)
    stopped["thread"].join(10)
    assert stopped["stopped"] is True
    final = next(f["data"] for f in frames if f["data"]["type"] == "finalAnswer")
    assert final["interrupted"] is True
    full = "once upon a time " * 3000
    assert 0 < len(final["text"]) < len(full)
    assert full.startswith(final["text"])
    messages = served.client.get(f"/api/v2/conversations/{conversation_id}").json()["messages"]
    answer = messages[-1]
    assert answer["from"] == "assistant"
    assert answer["interrupted"] is True
    assert answer["content"] == final["text"]
    again = served.client.post(f"/api/v2/conversations/{conversation_id}/stop-generating")
    assert again.json() == {"stopped": False}
    # The gateway served what was shown before the stop: that is in the ledger, marked as an
    # estimate (the stream was closed before the gateway could report its usage).
    [entry] = [e for e in served.store.ledger() if e.kind is CostKind.CHAT
               and e.cost_source == "estimate"]
    assert entry.cost is None
    assert entry.completion_tokens == len(final["text"]) // 4


def test_client_going_away_stores_the_partial_answer(served: Served) -> None:
    conversation_id = new_conversation(served)
    served.sse(f"/api/v2/conversations/{conversation_id}/messages", method="POST",
               json_body={"inputs": "a long story please"},
               until=lambda frames: sum(f["data"]["type"] == "stream" for f in frames) >= 3)
    def last_answer() -> dict[str, Any]:
        messages = served.client.get(f"/api/v2/conversations/{conversation_id}").json()
        answer: dict[str, Any] = messages["messages"][-1]
        return answer

    wait_until(lambda: last_answer()["interrupted"], what="the answer was not interrupted")
    answer = last_answer()
    assert answer["interrupted"] is True
    assert answer["content"]


def test_a_chat_answer_when_the_gateway_refuses_the_key(served: Served) -> None:
    conversation_id = new_conversation(served)
    served.gateway.revoke_key("sk-test")
    updates = send(served, conversation_id, inputs="hello?")
    error = next(u for u in updates if u["type"] == "status" and u["status"] == "error")
    assert "key" in error["message"].lower()
    assert updates[-2]["type"] == "finalAnswer"
    assert updates[-2]["interrupted"] is True


def test_conversations_paging_patch_delete(served: Served) -> None:
    ids = [new_conversation(served, title=f"chat {n}") for n in range(53)]
    first = served.client.get("/api/v2/conversations").json()
    assert len(first["conversations"]) == 50
    assert first["hasMore"] is True
    assert first["conversations"][0]["id"] == ids[-1], "newest first"
    assert set(first["conversations"][0]) == {"id", "title", "updatedAt", "model"}
    second = served.client.get("/api/v2/conversations", params={"p": 1}).json()
    assert len(second["conversations"]) == 3
    assert second["hasMore"] is False
    assert {c["id"] for c in first["conversations"] + second["conversations"]} == set(ids)

    patched = served.client.patch(f"/api/v2/conversations/{ids[0]}",
                                  json={"title": "  renamed  ", "model": "scripted"})
    assert patched.status_code == 200
    assert patched.json()["title"] == "renamed"
    assert patched.json()["model"] == "scripted"
    too_long = served.client.patch(f"/api/v2/conversations/{ids[0]}", json={"title": "x" * 101})
    assert too_long.status_code == 422
    assert too_long.json()["error"] == "invalid_request"
    assert "title" in too_long.json()["message"]
    assert served.client.patch(f"/api/v2/conversations/{ids[0]}", json={}).status_code == 422

    assert served.client.delete(f"/api/v2/conversations/{ids[0]}").json() == {"deleted": True}
    gone = served.client.get(f"/api/v2/conversations/{ids[0]}")
    assert gone.status_code == 404
    assert gone.json()["error"] == "not_found"
    assert served.client.delete("/api/v2/conversations").json() == {"deleted": 52}
    assert served.client.get("/api/v2/conversations").json() == {"conversations": [],
                                                                 "hasMore": False}


def test_user_settings_and_export(served: Served) -> None:
    settings = served.client.get("/api/v2/user/settings").json()
    assert settings["activeModel"] == "gpt-4o-mini"
    assert settings["customPrompts"] == {}
    changed = served.client.post("/api/v2/user/settings",
                                 json={"activeModel": "scripted",
                                       "customPrompts": {"scripted": "Speak like a pirate."}})
    assert changed.status_code == 200
    assert changed.json()["activeModel"] == "scripted"
    again = served.client.post("/api/v2/user/settings", json={"hidePromptExamples": {"a": True}})
    assert again.json()["activeModel"] == "scripted", "settings not given keep their value"
    bad = served.client.post("/api/v2/user/settings", json={"activeModel": 5, "typo": 1})
    assert bad.status_code == 422
    assert {tuple(d["loc"]) for d in bad.json()["details"]} >= {
        ("body", "typo")}
    # A new conversation takes the active model.
    conversation_id = new_conversation(served)
    send(served, conversation_id, inputs="hello export")
    exported = served.client.get("/api/v2/export").json()
    assert exported["user"] == "local"
    assert exported["settings"]["activeModel"] == "scripted"
    (conversation,) = exported["conversations"]
    assert conversation["model"] == "scripted"
    assert [m["from"] for m in conversation["messages"]] == ["system", "user", "assistant"]


def test_hostile_chat_inputs(served: Served) -> None:
    conversation_id = new_conversation(served)
    base = f"/api/v2/conversations/{conversation_id}"
    assert served.client.get("/api/v2/conversations/not-an-id").status_code == 404
    assert served.client.get("/api/v2/conversations/" + "0" * 24).status_code == 404
    not_json = served.client.post(f"{base}/messages", content=b"{nope",
                                  headers={"content-type": "application/json"})
    assert not_json.status_code == 422
    assert not_json.json()["message"].startswith("invalid")
    empty = served.client.post(f"{base}/messages", json={"inputs": "   "})
    assert empty.status_code == 422
    unknown_parent = served.client.post(f"{base}/messages", json={"inputs": "hi", "id": "zzz"})
    assert unknown_parent.status_code == 404
    retry_without_id = served.client.post(f"{base}/messages", json={"is_retry": True})
    assert retry_without_id.status_code == 422
    assert served.client.get("/api/v2/conversations", params={"p": -1}).status_code == 422
    assert served.client.post("/api/v2/conversations", json={"title": ""}).status_code == 422
    # Nothing above added a message.
    assert len(served.client.get(base).json()["messages"]) == 1


def test_another_users_conversation_is_not_found(make_server: Callable[..., Served]) -> None:
    # Bound to 127.0.0.2, the client connects from 127.0.0.1 (the trusted proxy), not from the
    # server's own address, whose user headers are refused.
    served = make_server(auth="forward", trusted_proxies="127.0.0.1", bind="127.0.0.2")
    alice = {"X-authentik-username": "alice"}
    bob = {"Remote-User": "bob"}
    created = served.client.post("/api/v2/conversations", json={}, headers=alice)
    conversation_id = created.json()["conversationId"]
    assert served.client.get(f"/api/v2/conversations/{conversation_id}",
                             headers=alice).status_code == 200
    for method in ("GET", "DELETE"):
        answer = served.client.request(method, f"/api/v2/conversations/{conversation_id}",
                                       headers=bob)
        assert answer.status_code == 404, method
    assert served.client.patch(f"/api/v2/conversations/{conversation_id}", json={"title": "x"},
                               headers=bob).status_code == 404
    assert served.client.post(f"/api/v2/conversations/{conversation_id}/messages",
                              json={"inputs": "hi"}, headers=bob).status_code == 404
    assert served.client.get("/api/v2/conversations", headers=bob).json()["conversations"] == []
    assert served.client.delete("/api/v2/conversations", headers=bob).json() == {"deleted": 0}
    assert served.client.get("/api/v2/export", headers=bob).json()["conversations"] == []
    assert served.client.get(f"/api/v2/conversations/{conversation_id}",
                             headers=alice).status_code == 200
