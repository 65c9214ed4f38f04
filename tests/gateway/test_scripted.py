"""The ScriptedGateway server itself, over plain HTTP: rules, the OpenAI/LiteLLM wire format,
faults, the admin API, script files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from ruflo.errors import ConfigError
from ruflo.gateway.scripted import Script, ScriptedGateway

AUTH = {"Authorization": "Bearer sk-test"}


def ask(url: str, messages: list[dict[str, Any]], **extra: Any) -> httpx.Response:
    return httpx.post(f"{url}/chat/completions", headers=AUTH,
                      json={"model": extra.pop("model", "m"), "messages": messages, **extra})


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def test_rules_match_the_conversation_in_order(gateway: ScriptedGateway) -> None:
    gateway.set_rules([
        {"name": "once", "match": {"last_user": "^hello$"}, "reply": {"content": "first"},
         "times": 1},
        {"name": "hello", "match": {"last_user": "(?i)hello"}, "reply": {"content": "hi"}},
        {"name": "sys", "match": {"system": "pirate"}, "reply": {"content": "arr"}},
        {"name": "tool", "match": {"last_tool": "exit code 1", "last_role": "tool"},
         "reply": {"content": "fix it"}},
        {"name": "turn", "match": {"turn": [2, 3]}, "reply": {"content": "later turn"}},
        {"name": "model", "match": {"model": "big-.*"}, "reply": {"content": "big"}},
        {"name": "any", "match": {"any": "secret"}, "reply": {"content": "found"}},
        {"name": "echo", "match": {"last_user": "^echo"}, "reply": {"echo": True}},
    ])
    url = gateway.base_url

    def said(response: httpx.Response) -> str:
        assert response.status_code == 200, response.text
        return str(response.json()["choices"][0]["message"]["content"])

    assert said(ask(url, user("hello"))) == "first"
    assert said(ask(url, user("hello"))) == "hi"
    assert said(ask(url, user("HELLO there"))) == "hi"
    assert said(ask(url, [{"role": "system", "content": "you are a pirate"},
                          *user("talk")])) == "arr"
    assert said(ask(url, [*user("run it"), {"role": "assistant", "content": None,
                                            "tool_calls": []},
                          {"role": "tool", "tool_call_id": "c", "content": "exit code 1"}])) \
        == "fix it"
    assert said(ask(url, [*user("a"), {"role": "assistant", "content": "b"},
                          *user("c")])) == "later turn"
    assert said(ask(url, user("x"), model="big-model")) == "big"
    assert said(ask(url, [{"role": "user", "content": [{"type": "text",
                                                        "text": "a secret"}]}])) == "found"
    assert said(ask(url, user("echo this back"))) == "echo this back"
    assert [r["rule"] for r in gateway.requests][:2] == ["once", "hello"]
    stats = httpx.get(url.removesuffix("/v1") + "/_scripted/stats").json()
    assert stats["chat"] == 9
    assert {r["name"]: r["used"] for r in stats["rules"]}["once"] == 1


def test_no_matching_rule_is_a_loud_400(gateway: ScriptedGateway) -> None:
    gateway.reset({"rules": [{"match": {"last_user": "only this"}, "reply": "x"}]})
    response = ask(gateway.base_url, user("something else"))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "scripted_no_rule"
    assert "something else" in error["message"]


def test_the_wire_format_is_litellm_shaped(gateway: ScriptedGateway) -> None:
    gateway.reset({"cost": 0.25, "rules": [
        {"reply": {"content": "hi", "usage": {"prompt_tokens": 7, "completion_tokens": 2}}}]})
    response = ask(gateway.base_url, user("x"))
    assert response.headers["x-litellm-response-cost"] == "0.25"
    assert response.headers["x-litellm-call-id"] == gateway.requests[-1]["call_id"]
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["usage"] == {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}
    assert body["choices"][0]["finish_reason"] == "stop"
    models = httpx.get(gateway.base_url.removesuffix("/v1") + "/models", headers=AUTH).json()
    assert models["object"] == "list"
    assert {m["object"] for m in models["data"]} == {"model"}


def _events(response: httpx.Response) -> list[dict[str, Any]]:
    events = [line.removeprefix("data: ") for line in response.text.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def test_streaming_is_sse_with_usage_and_done_and_the_cost_in_the_last_chunk(
        gateway: ScriptedGateway) -> None:
    # As LiteLLM does: a stream's headers leave before its cost is known, so there is no cost
    # header; the cost comes in usage.cost of the last chunk, whose one choice has an empty delta.
    gateway.set_rules([{"reply": {"content": "abcdefghij", "chunk": 3, "cost": 0.25}}])
    response = ask(gateway.base_url, user("x"), stream=True,
                   stream_options={"include_usage": True})
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "x-litellm-response-cost" not in response.headers
    chunks = _events(response)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks
                   if c["choices"])
    assert text == "abcdefghij"
    assert chunks[-1]["choices"] == [{"index": 0, "delta": {}}]
    assert chunks[-1]["usage"]["total_tokens"] > 0
    assert chunks[-1]["usage"]["cost"] == 0.25
    assert all("usage" not in c for c in chunks[:-1])


def test_a_stream_without_include_usage_reports_neither_usage_nor_cost(
        gateway: ScriptedGateway) -> None:
    gateway.set_rules([{"reply": {"content": "abcdefghij", "cost": 0.25}}])
    response = ask(gateway.base_url, user("x"), stream=True)
    assert "x-litellm-response-cost" not in response.headers
    assert all("usage" not in c for c in _events(response))
    assert gateway.served.calls == 1, "served all the same"


@pytest.mark.parametrize(("reply", "limit", "kept"), [
    ({"content": "x" * 400}, 10, 40),
    ({"content": "y" * 41}, 10, 40),
    ({"content": "short"}, 10, 5),
    ({"tool_calls": [{"name": "write_file", "arguments": {"text": "z" * 400}}]}, 5, 20),
])
@pytest.mark.parametrize("stream", [False, True])
def test_max_tokens_cuts_the_answer_like_a_real_model(
        gateway: ScriptedGateway, reply: dict[str, Any], limit: int, kept: int,
        stream: bool) -> None:
    gateway.set_rules([{"reply": reply}])
    response = ask(gateway.base_url, user("x"), stream=stream, max_tokens=limit,
                   stream_options={"include_usage": True} if stream else None)
    if stream:
        chunks = _events(response)
        deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
        text = "".join(d.get("content") or "" for d in deltas)
        text += "".join(call["function"].get("arguments") or ""
                        for d in deltas for call in d.get("tool_calls") or [])
        finish = next(c["choices"][0]["finish_reason"] for c in chunks
                      if c["choices"] and c["choices"][0].get("finish_reason"))
        usage = chunks[-1]["usage"]
    else:
        body = response.json()
        message = body["choices"][0]["message"]
        text = (message["content"] or "") + "".join(
            c["function"]["arguments"] for c in message.get("tool_calls") or [])
        finish, usage = body["choices"][0]["finish_reason"], body["usage"]
    assert len(text) == kept
    assert usage["completion_tokens"] <= limit
    cut = kept < len(reply.get("content") or "") or bool(reply.get("tool_calls"))
    assert finish == ("length" if cut else "stop")
    served = gateway.served
    assert (served.calls, served.completion_tokens) == (1, usage["completion_tokens"])
    assert served.prompt_tokens == usage["prompt_tokens"]


def test_explicit_usage_is_capped_by_max_tokens_too(gateway: ScriptedGateway) -> None:
    gateway.set_rules([{"reply": {"content": "ok", "usage": {"prompt_tokens": 9,
                                                              "completion_tokens": 5000}}}])
    body = ask(gateway.base_url, user("x"), max_tokens=64).json()
    assert body["usage"]["completion_tokens"] == 64
    assert body["choices"][0]["finish_reason"] == "length"
    assert gateway.served.total_tokens == 9 + 64


def test_keys_can_be_refused_and_revoked(gateway: ScriptedGateway) -> None:
    assert ask(gateway.base_url, user("x")).status_code == 200
    no_key = httpx.post(f"{gateway.base_url}/chat/completions",
                        json={"model": "m", "messages": user("x")})
    assert no_key.status_code == 401
    wrong = httpx.post(f"{gateway.base_url}/chat/completions", json={
        "model": "m", "messages": user("x")}, headers={"Authorization": "Bearer sk-other"})
    assert wrong.json()["error"]["type"] == "token_not_found_in_db"
    admin = gateway.base_url.removesuffix("/v1") + "/_scripted"
    httpx.post(f"{admin}/keys", json={"revoke": ["sk-test"]})
    assert ask(gateway.base_url, user("x")).status_code == 401
    httpx.post(f"{admin}/keys", json={"allow": ["sk-test"]})
    assert ask(gateway.base_url, user("x")).status_code == 200


def test_the_admin_api_switches_faults_and_rules(gateway: ScriptedGateway) -> None:
    admin = gateway.base_url.removesuffix("/v1") + "/_scripted"
    assert httpx.post(f"{admin}/fault", json={"fault": "rate_limited"}).status_code == 200
    limited = ask(gateway.base_url, user("x"))
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "1"
    httpx.post(f"{admin}/fault", json={"fault": None})
    httpx.post(f"{admin}/rules", json={"rules": [{"reply": {"content": "added"}}]})
    assert ask(gateway.base_url, user("x")).json()["choices"][0]["message"]["content"] == \
        "added"
    assert httpx.post(f"{admin}/fault", json={"fault": "nonsense"}).status_code == 400
    assert httpx.post(f"{admin}/rules", json={"rules": [{"match": {}}]}).status_code == 400
    assert httpx.post(f"{admin}/fault", content=b"not json").status_code == 400
    before = gateway.request_count
    assert httpx.get(f"{admin}/requests").json()[-1]["rule"] == ""
    httpx.post(f"{admin}/reset")
    assert gateway.request_count == 0
    assert before > 0


def test_hostile_requests_get_errors_not_crashes(gateway: ScriptedGateway) -> None:
    url = f"{gateway.base_url}/chat/completions"
    for body in (b"not json", b"[]", b'{"messages": "nope"}', b'{"messages": [1, null]}'):
        response = httpx.post(url, content=body, headers=AUTH)
        assert response.status_code in (200, 400), body
    gateway.reset({"rules": [{"match": {"any": "x"}, "reply": "y"}]})
    for body in (b'{"messages": [1, null, {"content": 5}]}', b'{"messages": [1]}',
                 b'{"messages": []}', b'{"messages": [{"role": "user", "content": {"a": 1}}]}'):
        response = httpx.post(url, content=body, headers=AUTH)
        assert response.json()["error"]["type"] == "scripted_no_rule", body


def test_a_script_file_loads_from_yaml_and_json(tmp_path: Path) -> None:
    yaml_file = tmp_path / "script.yaml"
    yaml_file.write_text("models: [a]\ncost: 0.5\nrules:\n  - match: {last_user: hi}\n"
                         "    reply: {content: hello}\n    times: 2\n")
    script = Script.load(yaml_file)
    assert script.models == ("a",)
    assert script.rules[0].times == 2
    json_file = tmp_path / "script.json"
    json_file.write_text(json.dumps({"rules": [{"fault": "key_refused"}]}))
    assert Script.load(json_file).rules[0].fault is not None
    with ScriptedGateway.from_file(yaml_file) as url:
        answer = httpx.post(f"{url}/chat/completions", headers=AUTH,
                            json={"model": "a", "messages": user("hi")})
        assert answer.json()["choices"][0]["message"]["content"] == "hello"


@pytest.mark.parametrize(("text", "problem"), [
    ("rules: [{match: {last_user: '('}, reply: x}]", "bad regex"),
    ("rules: [{match: {colour: red}, reply: x}]", "unknown match keys"),
    ("rules: [{reply: {content: x, sparkle: 1}}]", "unknown reply fields"),
    ("rules: [{fault: meteor}]", "unknown scripted fault"),
    ("rules: [{match: {}}]", "needs a reply or a fault"),
    ("rulez: []", "unknown script fields"),
    ("- just a list", "must be a mapping"),
    ("rules: [{reply: {tool_calls: [{arguments: {}}]}}]", "needs a name"),
    ("rules: [: bad", "not valid YAML"),
])
def test_a_bad_script_is_a_config_error(tmp_path: Path, text: str, problem: str) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text(text)
    with pytest.raises(ConfigError, match=problem):
        Script.load(file)


def test_a_missing_script_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        Script.load(tmp_path / "absent.yaml")
