"""MCP servers in chat, over real HTTP with real MCP servers: `ruflo mcp` over streamable HTTP (a
subprocess with its own store) and `mcp-server-time` from PyPI over stdio (in the command
sandbox). Their tools are offered to the model, an `ask` call waits for the person, results are
stored with the answer; a broken server shows its error and the chat goes on without it; a stdio
command needs an operator; header values are never shown back."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from server_harness import GATEWAY_KEY, Served

from ruflo.store import open_store
from ruflo_mcp_http import BIN, free_port, ruflo_mcp_http


@pytest.fixture
def ruflo_mcp(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    with ruflo_mcp_http(tmp_path) as served:
        yield served


def served_with(make_server: Callable[..., Served], *rules: dict[str, Any]) -> Served:
    return make_server(script={"keys": [GATEWAY_KEY], "rules": [*rules, {
        "name": "after", "match": {"last_role": "tool"}, "reply": {"content": "Done."}}],
        "default": {"content": "plain answer"}})


def call_rule(trigger: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"name": trigger, "match": {"last_user": trigger, "last_role": "user"},
            "reply": {"tool_calls": [{"id": f"call-{trigger}", "name": name,
                                      "arguments": arguments}]}}


def chat(served: Served, text: str, decide: str | None = None) -> list[dict[str, Any]]:
    conversation = served.client.post("/api/v2/conversations",
                                      json={"model": "gpt-4o-mini"}).json()["conversationId"]

    def until(frames: list[dict[str, Any]]) -> bool:
        update = frames[-1]["data"]
        if decide and update["type"] == "tool" and update["call"]["status"] == "asking":
            answer = served.client.post(f"/api/v2/conversations/{conversation}/tool-calls/"
                                        f"{update['call']['id']}", json={"decision": decide})
            assert answer.status_code == 200
        return False

    frames = served.sse(f"/api/v2/conversations/{conversation}/messages", method="POST",
                        json_body={"inputs": text}, until=until, timeout=60)
    return [f["data"] for f in frames]


def calls(updates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [u["call"] for u in updates if u["type"] == "tool"]


def test_ruflo_mcp_over_http_is_a_chat_tool_and_ask_waits_for_the_person(
        make_server: Callable[..., Served], ruflo_mcp: tuple[str, Path]) -> None:
    url, data = ruflo_mcp
    served = served_with(make_server, call_rule("make it", "desk__create_hive",
                                                {"name": "from-chat", "objective": "ship"}))
    added = served.client.post("/api/v2/mcp-servers", json={
        "name": "desk", "url": url, "headers": {"X-Secret": "s3cret"}})
    assert added.status_code == 201, added.text
    assert added.json()["headers"] == {"X-Secret": "•••"}
    checked = served.client.post("/api/v2/mcp-servers/desk/check").json()
    assert checked["state"] == "ok", checked
    assert "create_hive" in {t["name"] for t in checked["tools"]}
    assert "s3cret" not in served.client.get("/api/v2/user/settings").text
    assert "s3cret" not in served.client.get("/api/v2/mcp-servers").text
    tools = {t["name"]: t for t in served.client.get("/api/v2/tools").json()["tools"]}
    assert tools["desk__create_hive"]["policy"] == "ask"
    assert tools["desk__create_hive"]["source"] == "desk"

    updates = chat(served, "make it please", decide="allow")
    assert [c["status"] for c in calls(updates)] == ["asking", "running", "done"]
    result = calls(updates)[-1]["result"]
    assert "from-chat" in " ".join(result["content"])
    store = open_store(f"sqlite:///{data / 'ruflo.db'}")
    try:
        assert [h.name for h in store.list_hives()] == ["from-chat"]
    finally:
        store.close()
    offered = {t["function"]["name"] for t in served.gateway.requests[0]["tools"]}
    assert {"desk__create_hive", "ruflo_start_hive"} <= offered


def test_a_registry_stdio_server_runs_sandboxed_and_its_answer_is_stored(
        make_server: Callable[..., Served]) -> None:
    served = served_with(make_server, call_rule("what time", "clock__get_current_time",
                                                {"timezone": "UTC"}))
    added = served.client.post("/api/v2/mcp-servers", json={
        "name": "clock", "command": [str(BIN / "mcp-server-time")]})
    assert added.status_code == 201, added.text
    served.client.post("/api/v2/user/settings",
                       json={"toolPolicies": {"clock__get_current_time": "allow"}})
    updates = chat(served, "what time is it?")
    (call,) = calls(updates)[-1:]
    assert call["status"] == "done", call
    assert "UTC" in " ".join(call["result"]["content"])
    conversation = served.store.list_conversations("local")[0]
    answer = served.store.messages(conversation.id)[-1]
    assert answer.data["tools"][0]["result"] == call["result"]
    assert answer.content == "Done."


def test_a_broken_server_shows_its_error_and_the_chat_goes_on(
        make_server: Callable[..., Served]) -> None:
    served = served_with(make_server)
    port = free_port()  # nothing listens there
    served.client.post("/api/v2/mcp-servers",
                       json={"name": "gone", "url": f"http://127.0.0.1:{port}/mcp"})
    checked = served.client.post("/api/v2/mcp-servers/gone/check").json()
    assert checked["state"] == "error"
    assert checked["error"]
    listed = served.client.get("/api/v2/mcp-servers").json()["servers"]
    assert listed[0]["state"] == "error"
    updates = chat(served, "hello")
    assert next(u for u in updates if u["type"] == "finalAnswer")["text"] == "plain answer"
    assert calls(updates) == []

    served.client.post("/api/v2/mcp-servers", json={"name": "nothing",
                                                     "command": ["/no/such/program"]})
    checked = served.client.post("/api/v2/mcp-servers/nothing/check").json()
    assert checked["state"] == "error"
    assert served.client.delete("/api/v2/mcp-servers/nothing").json() == {"deleted": True}
    assert served.client.delete("/api/v2/mcp-servers/nothing").status_code == 404


def test_bad_definitions_and_a_stdio_command_from_a_non_operator_are_refused(
        make_server: Callable[..., Served]) -> None:
    from ruflo.server.auth import hash_token

    served = make_server(auth="token")
    served.store.create_token(token_id="t1", name="t", user_id="ana",
                              token_hash=hash_token("rfl_plain"))
    ana = {"Authorization": "Bearer rfl_plain"}
    refused = served.client.post("/api/v2/mcp-servers", headers=ana,
                                 json={"name": "sh", "command": ["sh", "-c", "id"]})
    assert refused.status_code == 403
    assert "operator" in refused.json()["message"]
    for body in ({"name": "x"}, {"name": "x", "url": "file:///etc/passwd"},
                 {"name": "Bad Name", "url": "http://127.0.0.1:1/mcp"},
                 {"name": "x", "url": "http://127.0.0.1:1/mcp", "command": ["true"]}):
        answer = served.client.post("/api/v2/mcp-servers", headers=ana, json=body)
        assert answer.status_code == 422, body
    allowed = served.client.post("/api/v2/mcp-servers", headers=ana,
                                 json={"name": "web", "url": "http://127.0.0.1:1/mcp"})
    assert allowed.status_code == 201
    assert served.client.get("/api/v2/mcp-servers", headers=ana).json()["servers"][0][
        "name"] == "web"
