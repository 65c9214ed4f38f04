"""ruflo as an A2A server, driven by a2a-sdk's own client over loopback against a real server
(live engine, ScriptedGateway as the model): the card is found, a message starts a swarm hive
whose progress streams, a budget approval shows as input-required and is answered on the task,
the verified summary arrives as the artifact; cancel ends the hive; bad input gets the protocol's
error, never a 5xx; a cross-site page can't start a hive; auth is as for the API."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from a2a.client import ClientConfig, create_client
from a2a.helpers.proto_helpers import (
    get_artifact_text,
    get_data_parts,
    new_data_part,
    new_text_part,
)
from a2a.types.a2a_pb2 import (
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    StreamResponse,
    TaskState,
)
from a2a.utils.errors import A2AError
from server_harness import Served

from agent_scripts import work_rules
from ruflo.model import Event

FAST = {"time_unit": 0.05, "lease_seconds": 2.0}
RPC = "/api/v2/a2a"


def message(*parts: Part, task_id: str = "", metadata: dict[str, Any] | None = None
            ) -> SendMessageRequest:
    sent = Message(role=Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=list(parts),
                   task_id=task_id)
    if metadata:
        sent.metadata.update(metadata)
    return SendMessageRequest(message=sent)


def hive_body(*names: str, **extra: Any) -> Part:
    crew = {} if "org" in extra else {"agents": 1}
    return new_data_part({**crew, "config": FAST, **extra, "tasks": [
        {"title": name, "verify": f"grep -qx {name} {name}.txt"} for name in names]})


async def collect(stream: AsyncIterator[StreamResponse]) -> list[StreamResponse]:
    return [item async for item in stream]


def states(items: list[StreamResponse]) -> list[int]:
    found = []
    for item in items:
        if item.HasField("task"):
            found.append(item.task.status.state)
        elif item.HasField("status_update"):
            found.append(item.status_update.status.state)
    return found


def task_id_of(items: list[StreamResponse]) -> str:
    return next(item.task.id for item in items if item.HasField("task"))


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=60.0) as client:
        yield client


async def test_the_sdk_client_starts_a_hive_follows_it_and_gets_the_verified_summary(
        live_server: Callable[..., Served], http: httpx.AsyncClient) -> None:
    served = live_server(*work_rules("t1"))
    client = await create_client(served.url, ClientConfig(httpx_client=http))
    items = await collect(client.send_message(message(new_text_part("write t1"),
                                                      hive_body("t1"))))

    found = states(items)
    assert found[0] == TaskState.TASK_STATE_SUBMITTED
    assert TaskState.TASK_STATE_WORKING in found
    assert found[-1] == TaskState.TASK_STATE_COMPLETED
    artifacts = [item.artifact_update.artifact for item in items
                 if item.HasField("artifact_update")]
    assert [a.name for a in artifacts] == ["summary", "diff"]
    text = get_artifact_text(artifacts[0])
    assert "done; objective verified" in text
    assert "- t1: done (verified)" in text
    (summary,) = get_data_parts(artifacts[0].parts)
    hive = served.store.get_hive(summary["hive_id"])
    assert hive.status.value == "done"
    assert summary["board"][0]["verified"] is True
    stored = await client.get_task(GetTaskRequest(id=task_id_of(items)))
    assert stored.status.state == TaskState.TASK_STATE_COMPLETED
    assert [a.name for a in stored.artifacts] == ["summary", "diff"]
    # The hive ran under git isolation (a folder the server made): its result is the diff of
    # its integration branch against the start, naming the file the agent wrote.
    (changes,) = get_data_parts(artifacts[1].parts)
    assert changes["branch"] == f"ruflo/{hive.id}"
    assert changes["start_commit"] == hive.config["start_commit"]
    assert changes["files"] == ["t1.txt"]
    assert changes["patch_truncated"] is False
    assert "+t1" in changes["patch"]
    diff = get_artifact_text(artifacts[1])
    assert diff.startswith(f"ruflo/{hive.id} against {hive.config['start_commit'][:12]}: "
                           "1 file(s) changed (t1.txt)")
    assert "diff --git a/t1.txt b/t1.txt" in diff


async def test_a_hive_sharing_its_folder_has_no_diff_artifact(
        live_server: Callable[..., Served], http: httpx.AsyncClient) -> None:
    served = live_server(*work_rules("t1"))
    client = await create_client(served.url, ClientConfig(httpx_client=http))
    items = await collect(client.send_message(message(new_text_part("write t1"),
                                                      hive_body("t1", isolation="none"))))
    assert states(items)[-1] == TaskState.TASK_STATE_COMPLETED
    artifacts = [item.artifact_update.artifact for item in items
                 if item.HasField("artifact_update")]
    assert [a.name for a in artifacts] == ["summary"]


async def test_a_bad_isolation_value_is_the_protocols_error(
        live_server: Callable[..., Served], http: httpx.AsyncClient) -> None:
    served = live_server(*work_rules("t1"))
    client = await create_client(served.url, ClientConfig(httpx_client=http))
    with pytest.raises(A2AError, match="isolation"):
        await collect(client.send_message(message(new_text_part("write t1"),
                                                  hive_body("t1", isolation="sideways"))))
    assert served.store.list_hives() == []


@pytest.mark.timeout(120)
async def test_a_budget_approval_is_input_required_and_answered_on_the_task(
        live_server: Callable[..., Served], http: httpx.AsyncClient) -> None:
    served = live_server(*work_rules("t1"))
    client = await create_client(served.url, ClientConfig(httpx_client=http))
    items = await collect(client.send_message(message(
        new_text_part("write t1"),
        hive_body("t1", budget={"max_tokens": 50}, org=[{"name": "ceo"}]))))
    assert states(items)[-1] == TaskState.TASK_STATE_INPUT_REQUIRED
    task_id = task_id_of(items)
    question = items[-1].status_update.status.message
    assert "approve" in question.parts[0].text
    assert get_data_parts(question.parts)[0]["approvals"][0]["kind"] == "budget_override"

    unsure = await collect(client.send_message(message(new_text_part("maybe"),
                                                       task_id=task_id)))
    assert states(unsure)[-1] == TaskState.TASK_STATE_INPUT_REQUIRED
    assert "'maybe' is not an answer" in unsure[-1].status_update.status.message.parts[0].text
    for _ in range(20):  # each approval doubles the cap; the hive may need a few
        items = await collect(client.send_message(message(new_text_part("approve"),
                                                          task_id=task_id)))
        if states(items)[-1] != TaskState.TASK_STATE_INPUT_REQUIRED:
            break
    assert states(items)[-1] == TaskState.TASK_STATE_COMPLETED
    approvals = served.store.list_approvals()
    assert approvals
    assert all(a.status.value == "approved" and a.decided_by == "local"
                             for a in approvals)


@pytest.mark.timeout(120)
async def test_a_paused_hive_is_input_required_and_resume_goes_on(
        live_server: Callable[..., Served], http: httpx.AsyncClient) -> None:
    served = live_server(*work_rules("t1", delay=1.0))
    client = await create_client(served.url, ClientConfig(httpx_client=http))
    loop = asyncio.get_running_loop()
    claimed = asyncio.Event()

    def on_commit(event: Event) -> None:
        if event.kind == "task_claimed":
            loop.call_soon_threadsafe(claimed.set)

    served.store.add_listener(on_commit)
    following = asyncio.create_task(collect(client.send_message(message(
        new_text_part("write t1"), hive_body("t1")))))
    await claimed.wait()
    hive_id = served.store.list_hives()[0].id
    paused = await http.post(f"{served.url}/api/v2/hives/{hive_id}/pause",
                             json={"reason": "lunch"})
    assert paused.status_code == 200

    items = await following
    assert states(items)[-1] == TaskState.TASK_STATE_INPUT_REQUIRED
    assert "is paused (lunch)" in items[-1].status_update.status.message.parts[0].text
    resumed = await collect(client.send_message(message(new_text_part("resume"),
                                                        task_id=task_id_of(items))))
    assert states(resumed)[-1] == TaskState.TASK_STATE_COMPLETED, (
        served.store.get_hive(hive_id), [(e.kind, e.data) for e in served.store.events(hive_id)])
    assert served.store.get_hive(hive_id).status.value == "done"


async def test_cancel_cancels_the_hive(live_server: Callable[..., Served],
                                       http: httpx.AsyncClient) -> None:
    served = live_server(*work_rules("t1", delay=30.0))
    client = await create_client(served.url, ClientConfig(httpx_client=http))
    request = message(new_text_part("write t1"), hive_body("t1"))
    request.configuration.CopyFrom(SendMessageConfiguration(return_immediately=True))
    client_nostream = await create_client(served.url, ClientConfig(httpx_client=http,
                                                                   streaming=False))
    (first,) = await collect(client_nostream.send_message(request))
    task = first.task
    hive_id = dict(task.metadata)["hive_id"]

    cancelled = await client.cancel_task(CancelTaskRequest(id=task.id))

    assert cancelled.status.state == TaskState.TASK_STATE_CANCELED
    assert served.store.get_hive(hive_id).status.value == "cancelled"
    with pytest.raises(A2AError):
        await client.cancel_task(CancelTaskRequest(id=task.id))


async def test_a_message_with_a_hive_id_posts_a_task_on_that_hive(
        live_server: Callable[..., Served], http: httpx.AsyncClient) -> None:
    # t1's agent waits far longer than the test on its model: the hive stays running.
    served = live_server(*work_rules("t1", delay=60.0), *work_rules("t2"))
    client = await create_client(served.url, ClientConfig(httpx_client=http))
    hive = served.client.post("/api/v2/hives", json={
        "objective": "keep going", "agents": 2, "config": FAST,
        "tasks": [{"title": "t1", "verify": "grep -qx t1 t1.txt"}]}).json()

    items = await collect(client.send_message(message(
        new_text_part("t2"), new_data_part({"verify": "grep -qx t2 t2.txt"}),
        metadata={"hive_id": hive["id"]})))

    assert states(items)[-1] == TaskState.TASK_STATE_COMPLETED
    artifact = next(i.artifact_update.artifact for i in items if i.HasField("artifact_update"))
    posted = get_data_parts(artifact.parts)[0]
    assert posted["hive_id"] == hive["id"]
    assert posted["title"] == "t2"
    assert posted["verified"] is True


def test_a_task_posted_over_a2a_depends_only_on_its_hives_tasks(
        live_server: Callable[..., Served]) -> None:
    # t1's agent waits far longer than the test on its model: the hive stays running.
    served = live_server(*work_rules("t1", delay=60.0))
    hive = served.client.post("/api/v2/hives", json={
        "objective": "keep going", "agents": 1, "config": FAST,
        "tasks": [{"title": "t1"}]}).json()

    for field, value in (("depends_on", ["no-such-task"]), ("parent_id", "no-such-task")):
        refused = rpc(served, "SendMessage", {
            **send_params({"text": "t2"}, {"data": {field: value}}),
            "metadata": {"hive_id": hive["id"]}})
        assert refused.json()["error"]["code"] == -32602
        assert "no task 'no-such-task' in this hive" in refused.json()["error"]["message"]
    assert [t.title for t in served.store.list_tasks(hive["id"])] == ["t1"]


async def test_a_comparison_asked_for_answers_the_compare_report(
        served: Served, http: httpx.AsyncClient) -> None:
    client = await create_client(served.url, ClientConfig(httpx_client=http))
    items = await collect(client.send_message(message(new_data_part({"compare": {
        "workloads": ["bug", "wide"], "modes": ["swarm", "company"], "tasks": 50}}))))

    assert states(items)[-1] == TaskState.TASK_STATE_COMPLETED
    artifact = next(i.artifact_update.artifact for i in items if i.HasField("artifact_update"))
    assert artifact.name == "compare report"
    (digest,) = get_data_parts(artifact.parts)
    assert [r["status"] for r in digest["runs"]] == ["ok"] * 4
    assert {row["workload"] for row in digest["summary"]} == {"bug", "wide"}
    assert f"/reports/{digest['id']}" in get_artifact_text(artifact)
    page = served.client.get(digest["page"])
    assert page.status_code == 200
    assert "bug" in page.text

    for refused in ({"workloads": ["/etc/passwd"]}, {"workloads": ["bug"], "seeds": 10,
                                                    "modes": ["swarm", "company", "solo", "round_robin"],
                                                    "kill_fraction": 0.5}):
        with pytest.raises(A2AError, match=r"built-in workload|at most 60"):
            await collect(client.send_message(message(new_data_part({"compare": refused}))))


def rpc(served: Served, method: str, params: Any, **headers: str) -> httpx.Response:
    return served.client.post(RPC, json={"jsonrpc": "2.0", "id": 1, "method": method,
                                         "params": params},
                              headers={"A2A-Version": "1.0", **headers})


def send_params(*parts: dict[str, Any], task_id: str | None = None) -> dict[str, Any]:
    sent: dict[str, Any] = {"role": "ROLE_USER", "messageId": str(uuid.uuid4()),
                            "parts": list(parts)}
    if task_id:
        sent["taskId"] = task_id
    return {"message": sent}


def test_bad_input_gets_the_protocols_error_never_a_5xx(served: Served) -> None:
    unknown = rpc(served, "GetTask", {"id": "no-such-task"})
    assert unknown.status_code == 200
    assert unknown.json()["error"]["code"] == -32001
    cancel = rpc(served, "CancelTask", {"id": "no-such-task"})
    assert cancel.status_code == 200
    assert cancel.json()["error"]["code"] == -32001
    follow_up = rpc(served, "SendMessage", send_params({"text": "hi"}, task_id="no-such-task"))
    assert follow_up.status_code == 200
    assert "error" in follow_up.json()

    malformed = rpc(served, "SendMessage", {"message": {"role": "ROLE_USER", "parts": [
        {"nonsense": 1}]}})
    assert malformed.status_code == 200
    assert malformed.json()["error"]["code"] in (-32602,
                                                                                  -32600)
    two_data = rpc(served, "SendMessage", send_params({"data": {"agents": 1}},
                                                      {"data": [1, 2]}))
    assert two_data.json()["error"]["code"] == -32602
    wrong_field = rpc(served, "SendMessage", send_params({"text": "x"},
                                                         {"data": {"agentz": 1}}))
    assert wrong_field.json()["error"]["code"] == -32602
    assert "agentz" in wrong_field.json()["error"]["message"]
    huge = rpc(served, "SendMessage", send_params({"text": "x" * 60_000}))
    assert huge.status_code == 200
    assert huge.json()["error"]["code"] == -32602
    over_limit = rpc(served, "SendMessage", send_params({"text": "x" * 2_000_000}))
    assert over_limit.status_code == 413
    not_json = served.client.post(RPC, content=b"{nope", headers={
        "content-type": "application/json", "A2A-Version": "1.0"})
    assert not_json.status_code == 200
    assert not_json.json()["error"]["code"] == -32700
    unknown_hive = rpc(served, "SendMessage", {**send_params({"text": "x"}),
                                               "metadata": {"hive_id": "nope"}})
    assert unknown_hive.json()["error"]["code"] == -32602
    assert served.store.list_hives() == []


def test_a_cross_site_page_cannot_start_a_hive_over_a2a(served: Served) -> None:
    for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example"}):
        refused = rpc(served, "SendMessage", send_params({"text": "pwn"}), **headers)
        assert refused.status_code == 403, refused.text
    assert served.store.list_hives() == []


def test_the_card_says_how_to_authenticate_and_the_endpoint_requires_it(
        make_server: Callable[..., Served]) -> None:
    open_server = make_server()
    card = open_server.client.get("/.well-known/agent-card.json").json()
    assert card["name"] == "ruflo"
    assert "securitySchemes" not in card
    assert card["supportedInterfaces"][0]["url"] == f"{open_server.url}{RPC}"
    assert {s["id"] for s in card["skills"]} == {"swarm", "company", "compare", "task"}

    guarded = make_server(auth="token")
    card = guarded.client.get("/.well-known/agent-card.json").json()
    assert card["securitySchemes"]["bearer"]["httpAuthSecurityScheme"]["scheme"] == "bearer"
    refused = rpc(guarded, "SendMessage", send_params({"text": "x"}))
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"
    assert guarded.store.list_hives() == []


def test_defining_a_remote_agent_over_a2a_needs_an_operator(
        make_server: Callable[..., Served]) -> None:
    from ruflo.server.auth import hash_token

    guarded = make_server(auth="token")
    guarded.store.create_token(token_id="t1", name="t", user_id="ana",
                               token_hash=hash_token("rfl_plain"))
    answer = rpc(guarded, "SendMessage", send_params({"text": "x"}, {"data": {"agents": [
        {"name": "far", "adapter": "a2a", "adapter_config": {"url": "http://127.0.0.1:9"}}]}}),
        Authorization="Bearer rfl_plain")
    error = answer.json()["error"]
    assert error["code"] == -32602
    assert "operator" in error["message"]
    assert guarded.store.list_hives() == []
    assert json.dumps(error)  # a plain JSON-RPC error, nothing else


def test_without_the_sdk_the_server_serves_and_says_a2a_is_off(
        make_server: Callable[..., Served], monkeypatch: pytest.MonkeyPatch) -> None:
    from ruflo.server import a2a

    monkeypatch.setattr(a2a, "available", lambda: False)
    served = make_server()
    assert a2a.trace() == ("a2a: off (a2a-sdk is not installed; install the a2a extra "
                           "(pip install 'ruflo[a2a]'))")
    for answer in (served.client.get("/.well-known/agent-card.json"),
                   rpc(served, "SendMessage", send_params({"text": "x"}))):
        assert answer.status_code == 404
        assert "a2a-sdk is not installed" in answer.json()["message"]
    assert served.client.post("/api/v2/hives", json={"objective": "x"}).status_code == 201
