"""Hostile values over real HTTP, on SQLite and Postgres: free-form JSON nested too deep or too
big, NUL characters in text, rows written straight into the store that can't be read whole, and
Last-Event-ID values that are no seq. Each is refused (422, naming the field, nothing stored) or
shown with a marker; none breaks the service."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from server_harness import Served

HIVES = "/api/v2/hives"


@pytest.fixture
def served_on(make_server: Callable[..., Served], store_url: str) -> Served:
    return make_server(database_url=store_url)


def nested(depth: int, leaf: Any = 1, *, as_list: bool = False) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value] if as_list else {"a": value}
    return value


def hive_count(served: Served) -> int:
    answer = served.client.get(HIVES, params={"limit": 200})
    assert answer.status_code == 200, answer.text
    return len(answer.json()["hives"])


def refused(answer: httpx.Response, field: str) -> str:
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["error"] == "invalid_request"
    assert field in body["message"], body["message"]
    message: str = body["message"]
    return message


# -- item 4: free-form JSON is checked at the edge, before anything is stored --------------------

HOSTILE_CONFIGS = {
    "dict nested 60 deep": nested(60),
    "list nested 60 deep": {"a": nested(60, as_list=True)},
    "one level over the limit": nested(33),
    "a megabyte of text": {"text": "x" * 1_000_000},
    "too many keys": {f"k{n}": n for n in range(20_000)},
    "a key of 10k characters": {"k" * 10_000: 1},
}


@pytest.mark.parametrize("config", HOSTILE_CONFIGS.values(), ids=HOSTILE_CONFIGS.keys())
def test_hostile_config_is_refused_and_nothing_is_stored(served_on: Served, config: Any) -> None:
    message = refused(served_on.client.post(HIVES, json={"objective": "deep", "config": config}),
                      "config")
    assert "nothing was stored" in message
    assert hive_count(served_on) == 0
    agents = [{"name": "a", "adapter_config": config}]
    refused(served_on.client.post(HIVES, json={"objective": "deep", "agents": agents}),
            "adapter_config")
    assert hive_count(served_on) == 0


@pytest.mark.parametrize("config", [nested(300), {"a": nested(300, as_list=True)}],
                         ids=["dict", "list"])
def test_config_nested_300_deep_is_refused_unparsed(served_on: Served, config: Any) -> None:
    # Past the body's own depth limit (server/guard.py) the request is refused before parsing,
    # so the answer can't name the field; what matters is that nothing is stored or broken.
    for body in ({"objective": "deep", "config": config},
                 {"objective": "deep", "agents": [{"name": "a", "adapter_config": config}]}):
        answer = served_on.client.post(HIVES, json=body)
        assert answer.status_code == 422, answer.text
        assert "nothing was stored" in answer.json()["message"]
    assert hive_count(served_on) == 0
    assert served_on.client.get(HIVES).status_code == 200


def test_not_finite_numbers_in_config_are_refused(served_on: Served) -> None:
    for literal in (b"NaN", b"Infinity", b"-Infinity"):
        body = b'{"objective": "nan", "config": {"x": [1, ' + literal + b"]}}"
        answer = served_on.client.post(HIVES, content=body,
                                       headers={"content-type": "application/json"})
        refused(answer, "config")
    assert hive_count(served_on) == 0


def test_config_within_the_limits_is_kept_as_given(served_on: Served) -> None:
    config = {"deep": nested(30), "list": list(range(1000)), "text": "é" * 10_000,
              "ok": None, "pi": math.pi}
    answer = served_on.client.post(HIVES, json={"objective": "fine", "config": config})
    assert answer.status_code == 201, answer.text
    assert given(answer.json()["config"]) == config
    assert given(served_on.client.get(HIVES).json()["hives"][0]["config"]) == config


def given(config: dict[str, Any]) -> dict[str, Any]:
    """A stored config without what ruflo adds when the hive starts (its isolation)."""
    return {k: v for k, v in config.items() if k not in ("isolation", "start_commit")}


# -- item 4: listing survives any stored row -----------------------------------------------------

def raw_execute(store_url: str, sql: str, params: tuple[Any, ...]) -> None:
    """Write straight into the store's tables, past ruflo, as a broken writer or a hand edit
    would."""
    if store_url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(store_url.removeprefix("sqlite:///"))
        with conn:
            conn.execute(sql, params)
        conn.close()
        return
    import psycopg

    with psycopg.connect(store_url, autocommit=True) as pg:
        pg.execute(sql.replace("?", "%s"), params)  # type: ignore[arg-type]


HOSTILE_ROWS: dict[str, tuple[str, Any]] = {
    "config nested 300 deep": ("config", json.dumps(nested(300))),
    "config nested 252 deep": ("config", json.dumps(nested(252))),  # under writers' limits alone
    "config nested 100k deep": ("config", '{"a":' * 100_000 + "1" + "}" * 100_000),
    "config not JSON": ("config", "{not json"),
    "config holding NaN": ("config", '{"x": NaN}'),
    "config not an object": ("config", "[1, 2]"),
    "unknown mode": ("mode", "telepathy"),
    "unknown status": ("status", "sleeping"),
}


def test_listing_survives_any_stored_row_also_after_a_restart(
        make_server: Callable[..., Served], store_url: str) -> None:
    served = make_server(database_url=store_url)
    healthy = served.client.post(HIVES, json={"objective": "healthy", "config": {"k": 1}}).json()
    bad: dict[str, str] = {}
    for label, (column, value) in HOSTILE_ROWS.items():
        created = served.client.post(HIVES, json={"objective": label})
        assert created.status_code == 201, created.text
        bad[created.json()["id"]] = label
        raw_execute(store_url, f"UPDATE hives SET {column} = ? WHERE id = ?",
                    (value, created.json()["id"]))

    def check(server: Served) -> None:
        answer = server.client.get(HIVES, params={"limit": 200})
        assert answer.status_code == 200, answer.text
        shown = {hive["id"]: hive for hive in answer.json()["hives"]}
        assert set(shown) == {healthy["id"], *bad}
        assert shown[healthy["id"]]["damage"] is None
        assert given(shown[healthy["id"]]["config"]) == {"k": 1}
        for hive_id, label in bad.items():
            assert shown[hive_id]["damage"], label
            assert shown[hive_id]["objective"] == label
            one = server.client.get(f"{HIVES}/{hive_id}")
            assert one.status_code == 200, (label, one.text)
            assert one.json()["damage"], label

    check(served)
    again = make_server(database_url=store_url)  # a second server on the same store: a restart
    check(again)
    # A damaged hive can still be stopped, so nobody has to edit the store by hand.
    for hive_id, label in bad.items():
        cancelled = again.client.post(f"{HIVES}/{hive_id}/cancel")
        assert cancelled.status_code == 200, (label, cancelled.text)
        assert cancelled.json()["status"] == "cancelled"


# -- item 5: NUL characters are refused at the edge, naming the field ----------------------------

NUL = "a\x00b"


def test_nul_in_hive_and_task_fields_is_refused_naming_the_field(served_on: Served) -> None:
    client = served_on.client
    bodies = {
        "objective": {"objective": NUL},
        "name": {"objective": "o", "name": NUL},
        "0.name": {"objective": "o", "agents": [{"name": NUL}]},
        "0.skills.0": {"objective": "o", "agents": [{"name": "n", "skills": [NUL]}]},
        "tasks.0.title": {"objective": "o", "tasks": [{"title": NUL}]},
        "tasks.0.description": {"objective": "o", "tasks": [{"title": "t", "description": NUL}]},
        "tasks.0.verify": {"objective": "o", "tasks": [{"title": "t", "verify": NUL}]},
        "config.k": {"objective": "o", "config": {"k": NUL}},
        "config": {"objective": "o", "config": {NUL: 1}},
    }
    for field, body in bodies.items():
        refused(client.post(HIVES, json=body), field)
    assert hive_count(served_on) == 0

    hive = client.post(HIVES, json={"objective": "o", "agents": 1}).json()
    tasks = f"{HIVES}/{hive['id']}/tasks"
    board = client.get(tasks).json()["tasks"]
    for field, body in {"title": {"title": NUL}, "description": {"title": "t", "description": NUL},
                        "skills.1": {"title": "t", "skills": ["x", NUL]},
                        "depends_on.0": {"title": "t", "depends_on": [NUL]}}.items():
        refused(client.post(tasks, json=body), field)
    assert client.get(tasks).json()["tasks"] == board
    refused(client.post(f"{tasks}/claim", json={"agent": NUL}), "agent")
    refused(client.post(f"{HIVES}/{hive['id']}/pause", json={"reason": NUL}), "reason")
    assert client.get(f"{HIVES}/{hive['id']}").json()["status"] == "running"

    posted = client.post(tasks, json={"title": "t", "priority": 1000}).json()
    claimed = client.post(f"{tasks}/claim", json={"agent": "rest-1"}).json()
    assert claimed["task"]["id"] == posted["id"]
    refused(client.post(f"{tasks}/{posted['id']}/complete",
                        json={"agent": "rest-1", "result": NUL}), "result")
    refused(client.post(f"{tasks}/{posted['id']}/release",
                        json={"agent": "rest-1", "reason": NUL}), "reason")
    assert client.get(f"{tasks}/{posted['id']}").json()["state"] == "claimed"


def test_nul_in_chat_fields_is_refused_naming_the_field(served_on: Served) -> None:
    client = served_on.client
    for field, body in {"title": {"title": NUL}, "preprompt": {"preprompt": NUL},
                        "model": {"model": NUL}}.items():
        refused(client.post("/api/v2/conversations", json=body), field)
    assert client.get("/api/v2/conversations").json()["conversations"] == []
    conversation = client.post("/api/v2/conversations", json={"title": "t"}).json()
    base = f"/api/v2/conversations/{conversation['conversationId']}"
    before = client.get(base).json()
    refused(client.post(f"{base}/messages", json={"inputs": NUL}), "inputs")
    refused(client.patch(base, json={"title": NUL}), "title")
    assert client.get(base).json() == before
    refused(client.post("/api/v2/user/settings", json={"customPrompts": {"m": NUL}}),
            "customPrompts.m")


def test_ids_holding_nul_are_not_found_on_both_stores(served_on: Served) -> None:
    client = served_on.client
    hive = client.post(HIVES, json={"objective": "o", "agents": 1}).json()
    for path in (f"{HIVES}/a%00b", f"{HIVES}/{hive['id']}/tasks/a%00b",
                 "/api/v2/conversations/a%00b"):
        answer = client.get(path)
        assert answer.status_code == 404, (path, answer.text)
        assert answer.json()["error"] == "not_found"


# -- item 5: Last-Event-ID that is no seq --------------------------------------------------------

@pytest.mark.parametrize("value", [str(2**63), str(2**64), "9" * 30, "-1", "-0x10", "abc", "1.5",
                                   "1_000", "1e3", "9" * 41])
def test_last_event_id_that_is_no_seq_is_refused_before_the_stream(served_on: Served,
                                                                   value: str) -> None:
    hive = served_on.client.post(HIVES, json={"objective": "o", "agents": 1}).json()
    answer = served_on.client.get(f"{HIVES}/{hive['id']}/stream",
                                  headers={"last-event-id": value})
    assert answer.status_code == 422, answer.text
    assert "Last-Event-ID" in answer.json()["message"] or "last-event-id" in answer.text


def test_the_largest_last_event_id_streams_nothing_and_stays_open(served_on: Served) -> None:
    hive = served_on.client.post(HIVES, json={"objective": "o", "agents": 1}).json()
    with served_on.client.stream("GET", f"{HIVES}/{hive['id']}/stream",
                                 headers={"last-event-id": str(2**62)}) as answer:
        assert answer.status_code == 200
        first = next(answer.iter_lines())
        assert first == "retry: 2000"
    # The server is still well: a normal resume streams the hive's events.
    frames = served_on.sse(f"{HIVES}/{hive['id']}/stream", headers={"last-event-id": "0"},
                           until=lambda got: len(got) >= 2)
    assert frames[0]["data"]["kind"] == "hive_created"


def test_a_hive_stored_but_not_started_is_answered_truly(served_on: Served,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    async def refuse(hive_id: str) -> None:
        raise RuntimeError("the runner is broken")

    monkeypatch.setattr(served_on.ctx.runner, "start", refuse)
    answer = served_on.client.post(HIVES, json={"objective": "stored, not started"})
    assert answer.status_code == 500, answer.text
    message = answer.json()["message"]
    assert "was stored but could not be started" in message
    assert "the runner is broken" in message
    assert "nothing was changed" not in message
    (hive,) = served_on.client.get(HIVES).json()["hives"]
    assert hive["id"] in message


@pytest.mark.parametrize(("field", "value"), [
    ("customPrompts", {f"m{n}": "p" for n in range(201)}),
    ("hidePromptExamples", {f"m{n}": True for n in range(1001)}),
    ("toolsOverrides", {f"t{n}": False for n in range(1001)}),
])
def test_user_settings_maps_are_capped(served_on: Served, field: str, value: Any) -> None:
    before = served_on.client.get("/api/v2/user/settings").json()
    refused(served_on.client.post("/api/v2/user/settings", json={field: value}), field)
    assert served_on.client.get("/api/v2/user/settings").json() == before


@pytest.mark.parametrize("value", [str(2**63), str(2**62 + 1), "-1", "abc", "9" * 400])
def test_after_that_is_no_seq_is_refused_before_the_stream(served_on: Served, value: str) -> None:
    hive = served_on.client.post(HIVES, json={"objective": "o", "agents": 1}).json()
    for path in ("stream", "events"):
        answer = served_on.client.get(f"{HIVES}/{hive['id']}/{path}", params={"after": value})
        assert answer.status_code == 422, answer.text
        assert "after" in answer.json()["message"]
