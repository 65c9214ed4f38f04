"""ruflo's own tools in chat, over real HTTP with the ScriptedGateway as the model: the model is
offered them, a call that changes something waits for the person (ask) and runs only when
allowed, a denied call runs nothing, `off` tools are not offered, `allow` runs at once; calls
and results are stored with the answer; bad arguments and refusals come back as one line."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from server_harness import GATEWAY_KEY, Served

FAST = {"time_unit": 0.05, "lease_seconds": 2.0}


def start_rules(arguments: Any) -> list[dict[str, Any]]:
    return [
        {"name": "call", "match": {"last_user": "(?i)start a hive", "last_role": "user"},
         "reply": {"content": "Starting it.", "tool_calls": [
             {"id": "call-1", "name": "ruflo_start_hive", "arguments": arguments}]}},
        {"name": "after", "match": {"last_role": "tool", "last_tool": "hive"},
         "reply": {"content": "The hive is on its way.", "chunk": 6}},
        {"name": "refused", "match": {"last_role": "tool"},
         "reply": {"content": "That did not work."}},
    ]


def server(make_server: Callable[..., Served], arguments: Any) -> Served:
    return make_server(script={"keys": [GATEWAY_KEY], "rules": start_rules(arguments),
                               "default": {"content": "ok"}})


def conversation(served: Served) -> str:
    answer = served.client.post("/api/v2/conversations", json={"model": "gpt-4o-mini"})
    return str(answer.json()["conversationId"])


def ask(served: Served, conversation_id: str, decide: str | None = None) -> list[dict[str, Any]]:
    """Send the message; when a tool call asks, answer `decide` from beside the stream."""
    decided: list[int] = []

    def until(frames: list[dict[str, Any]]) -> bool:
        update = frames[-1]["data"]
        if decide and update["type"] == "tool" and update["call"]["status"] == "asking":
            answer = served.client.post(f"/api/v2/conversations/{conversation_id}/tool-calls/"
                                        f"{update['call']['id']}", json={"decision": decide})
            decided.append(answer.status_code)
        return False

    frames = served.sse(f"/api/v2/conversations/{conversation_id}/messages", method="POST",
                        json_body={"inputs": "please start a hive for t1"}, until=until)
    assert decided in ([], [200])
    return [f["data"] for f in frames]


def tool_updates(updates: list[dict[str, Any]]) -> list[str]:
    return [u["call"]["status"] for u in updates if u["type"] == "tool"]


def test_a_hive_starts_only_after_the_person_allows_it(
        make_server: Callable[..., Served]) -> None:
    served = server(make_server, {"objective": "t1", "agents": 1})
    conversation_id = conversation(served)
    offered = served.gateway.requests
    updates = ask(served, conversation_id, decide="allow")

    assert tool_updates(updates) == ["asking", "running", "done"]
    (hive,) = served.store.list_hives()
    assert hive.objective == "t1"
    assert hive.owner == "local"
    assert hive.config["isolation"] == "git", "a folder the server made: git isolation"
    done = [u["call"] for u in updates if u["type"] == "tool"][-1]
    assert done["result"]["hive"]["id"] == hive.id
    assert done["result"]["hive"]["url"] == f"/hives/{hive.id}"
    final = next(u for u in updates if u["type"] == "finalAnswer")
    assert final["text"] == "Starting it.\n\nThe hive is on its way."
    names = {tool["function"]["name"] for tool in offered[0]["tools"]}
    assert {"ruflo_start_hive", "ruflo_show_board", "ruflo_pause_hive",
            "ruflo_decide_approval"} <= names
    # The model saw its call and the tool's answer on the second turn.
    second = offered[-1]["messages"]
    assert second[-2]["tool_calls"][0]["function"]["name"] == "ruflo_start_hive"
    assert second[-1]["role"] == "tool"
    assert hive.id in second[-1]["content"]

    stored = served.client.get(f"/api/v2/conversations/{conversation_id}").json()
    answer = stored["messages"][-1]
    (call,) = answer["tools"]
    assert call["status"] == "done"
    assert call["arguments"] == {"objective": "t1", "agents": 1}
    assert call["result"]["hive"]["id"] == hive.id


def test_a_denied_call_runs_nothing(make_server: Callable[..., Served]) -> None:
    served = server(make_server, {"objective": "t1"})
    conversation_id = conversation(served)
    updates = ask(served, conversation_id, decide="deny")
    assert tool_updates(updates) == ["asking", "denied"]
    assert served.store.list_hives() == []
    assert "declined" in served.gateway.requests[-1]["messages"][-1]["content"]
    assert next(u for u in updates if u["type"] == "finalAnswer")["text"].endswith(
        "That did not work.")


def test_allow_runs_at_once_and_off_is_not_offered(make_server: Callable[..., Served]) -> None:
    served = server(make_server, {"objective": "t1", "agents": 1})
    conversation_id = conversation(served)
    settings = served.client.post("/api/v2/user/settings", json={"toolPolicies": {
        "ruflo_start_hive": "allow", "ruflo_cancel_hive": "off"}})
    assert settings.status_code == 200
    tools = {t["name"]: t for t in served.client.get("/api/v2/tools").json()["tools"]}
    assert tools["ruflo_start_hive"]["policy"] == "allow"
    assert tools["ruflo_cancel_hive"]["policy"] == "off"
    assert tools["ruflo_pause_hive"]["policy"] == "ask"
    assert tools["ruflo_show_board"]["policy"] == "allow"

    updates = ask(served, conversation_id)
    assert tool_updates(updates) == ["running", "done"]
    assert len(served.store.list_hives()) == 1
    names = {tool["function"]["name"] for tool in served.gateway.requests[0]["tools"]}
    assert "ruflo_cancel_hive" not in names
    refused = served.client.post("/api/v2/user/settings",
                                 json={"toolPolicies": {"ruflo_start_hive": "sometimes"}})
    assert refused.status_code == 422


def test_bad_arguments_and_refusals_are_one_line_for_the_model(
        make_server: Callable[..., Served]) -> None:
    served = server(make_server, "{not json")
    conversation_id = conversation(served)
    served.client.post("/api/v2/user/settings",
                       json={"toolPolicies": {"ruflo_start_hive": "allow"}})
    updates = ask(served, conversation_id)
    (call,) = [u["call"] for u in updates if u["type"] == "tool"]
    assert call["status"] == "error"
    assert call["error"].startswith("the arguments are not JSON")

    served = server(make_server, {"objective": "x", "agents": "many"})
    conversation_id = conversation(served)
    served.client.post("/api/v2/user/settings",
                       json={"toolPolicies": {"ruflo_start_hive": "allow"}})
    updates = ask(served, conversation_id)
    (call,) = [u["call"] for u in updates if u["type"] == "tool"][-1:]
    assert call["status"] == "error"
    assert call["error"].startswith("invalid arguments: agents")
    assert served.store.list_hives() == []

    served = server(make_server, {"objective": "x", "isolation": "sideways"})
    conversation_id = conversation(served)
    served.client.post("/api/v2/user/settings",
                       json={"toolPolicies": {"ruflo_start_hive": "allow"}})
    updates = ask(served, conversation_id)
    (call,) = [u["call"] for u in updates if u["type"] == "tool"][-1:]
    assert call["status"] == "error"
    assert call["error"].startswith("invalid arguments: isolation")
    assert served.store.list_hives() == []


def test_the_model_may_ask_for_a_shared_folder(make_server: Callable[..., Served]) -> None:
    served = server(make_server, {"objective": "t1", "agents": 1, "isolation": "none"})
    conversation_id = conversation(served)
    served.client.post("/api/v2/user/settings",
                       json={"toolPolicies": {"ruflo_start_hive": "allow"}})
    assert tool_updates(ask(served, conversation_id)) == ["running", "done"]
    (hive,) = served.store.list_hives()
    assert hive.config["isolation"] == "none"


def test_a_decision_for_no_waiting_call_is_a_404(make_server: Callable[..., Served]) -> None:
    served = server(make_server, {"objective": "t1"})
    conversation_id = conversation(served)
    answer = served.client.post(f"/api/v2/conversations/{conversation_id}/tool-calls/nope",
                                json={"decision": "allow"})
    assert answer.status_code == 404
    bad = served.client.post(f"/api/v2/conversations/{conversation_id}/tool-calls/nope",
                             json={"decision": "maybe"})
    assert bad.status_code == 422
