"""The hive API over real HTTP: create, list, show, pause/resume/cancel, tasks, approvals, ledger,
the event log and its live SSE stream resuming from Last-Event-ID."""

from __future__ import annotations

import threading
import time
from typing import Any

from server_harness import Served

from ruflo.model import Approval, ApprovalKind, CostKind, new_id


def create(served: Served, **body: Any) -> dict[str, Any]:
    answer = served.client.post("/api/v2/hives", json=body)
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def test_create_a_swarm_and_show_it(served: Served) -> None:
    hive = create(served, objective="Write a haiku about bees\nand test it", agents=3)
    assert hive["mode"] == "swarm"
    assert hive["status"] == "running"
    assert hive["name"] == "Write a haiku about bees"
    assert hive["owner"] == "local"
    assert [a["name"] for a in hive["agents"]] == ["agent-1", "agent-2", "agent-3"]
    assert hive["tasks"]["open"] == 1, "the objective is the first task"
    assert hive["spend"] == {"tokens": 0, "cost": 0.0, "calls": 0, "unknown_cost_calls": 0}
    shown = served.client.get(f"/api/v2/hives/{hive['id']}").json()
    assert shown["id"] == hive["id"]
    assert shown["last_seq"] >= 5
    listed = served.client.get("/api/v2/hives").json()
    assert [h["id"] for h in listed["hives"]] == [hive["id"]]
    assert listed["hasMore"] is False
    tasks = served.client.get(f"/api/v2/hives/{hive['id']}/tasks").json()["tasks"]
    assert tasks[0]["title"] == "Write a haiku about bees"


def test_create_a_company_from_an_org_chart(served: Served) -> None:
    org = [{"name": "ceo", "role": "manager", "title": "CEO"},
           {"name": "cto", "role": "manager", "reports_to": "ceo"},
           {"name": "dev", "skills": ["python"], "reports_to": "cto"}]
    hive = create(served, objective="Ship the feature", org=org,
                  tasks=[{"title": "design"}, {"title": "build", "depends_on": ["design"]}],
                  budget={"max_cost": 2.5})
    assert hive["mode"] == "company"
    assert hive["budget"] == {"max_tokens": None, "max_cost": 2.5}
    by_name = {a["name"]: a for a in hive["agents"]}
    assert by_name["ceo"]["reports_to"] is None
    assert by_name["cto"]["reports_to"] == by_name["ceo"]["id"]
    assert by_name["dev"]["reports_to"] == by_name["cto"]["id"]
    assert hive["tasks"]["open"] == 2, "given tasks: the objective is not added"
    tasks = {t["title"]: t for t in served.client.get(
        f"/api/v2/hives/{hive['id']}/tasks").json()["tasks"]}
    assert tasks["build"]["depends_on"] == [tasks["design"]["id"]]


def test_bad_hives_are_refused_with_a_reason(served: Served) -> None:
    cases: list[dict[str, Any]] = [
        {"objective": ""},
        {"objective": "x", "mode": "company"},
        {"objective": "x", "org": [{"name": "a"}, {"name": "b"}]},
        {"objective": "x", "org": [{"name": "a", "reports_to": "b"},
                                   {"name": "b", "reports_to": "a"}]},
        {"objective": "x", "org": [{"name": "a"}, {"name": "a", "reports_to": "a"}]},
        {"objective": "x", "agents": [{"name": "a", "reports_to": "ghost"}]},
        {"objective": "x", "agents": 0},
        {"objective": "x", "agents": 3, "org": [{"name": "a"}]},
        {"objective": "x", "mode": "anarchy"},
        {"objective": "x", "tasks": [{"title": "t", "priority": 10**30}]},
        {"objective": "x", "tasks": [{"title": "t", "depends_on": ["nowhere"]}]},
        {"objective": "x", "budget": {"max_cost": -1}},
    ]
    for body in cases:
        answer = served.client.post("/api/v2/hives", json=body)
        assert answer.status_code == 422, (body, answer.text)
        assert answer.json()["message"], body
    assert served.client.get("/api/v2/hives").json()["hives"] == [], "nothing was created"


def test_pause_resume_cancel(served: Served) -> None:
    hive = create(served, objective="Count to ten", agents=2)
    base = f"/api/v2/hives/{hive['id']}"
    paused = served.client.post(f"{base}/pause", json={"reason": "lunch"}).json()
    assert paused["status"] == "paused"
    assert paused["pause_reason"] == "lunch"
    assert served.client.post(f"{base}/pause").json()["status"] == "paused", "idempotent"
    assert served.client.post(f"{base}/resume").json()["status"] == "running"
    cancelled = served.client.post(f"{base}/cancel").json()
    assert cancelled["status"] == "cancelled"
    assert served.client.get(base).json()["tasks"].get("open", 0) == 0
    assert served.client.get(f"{base}/tasks", params={"state": "cancelled"}).json()["tasks"]
    refused = served.client.post(f"{base}/resume")
    assert refused.status_code == 409
    assert "cancelled" in refused.json()["message"]
    late = served.client.post(f"{base}/tasks", json={"title": "too late"})
    assert late.status_code == 409
    assert served.client.post("/api/v2/hives/nope/pause").status_code == 404
    kinds = [e["kind"] for e in served.client.get(f"{base}/events").json()["events"]]
    assert kinds[-1] == "hive_cancelled"
    assert "hive_paused" in kinds


def test_a_cancelled_hive_cancels_its_approvals_and_deciding_one_is_a_409(
        served: Served) -> None:
    hive = create(served, objective="Clean up", agents=1)
    base = f"/api/v2/hives/{hive['id']}"
    [task] = served.client.get(f"{base}/tasks").json()["tasks"]
    action = served.store.create_approval(Approval(
        id=new_id(), hive_id=hive["id"], kind=ApprovalKind.ACTION, subject="run `rm -rf build`",
        data={"task_id": task["id"], "journal_id": "j1", "turn": 1}))
    budget = served.store.create_approval(Approval(
        id=new_id(), hive_id=hive["id"], kind=ApprovalKind.BUDGET_OVERRIDE, subject="raise it",
        data={"scope": "hive", "scope_id": hive["id"]}))
    assert served.client.post(f"{base}/cancel").status_code == 200

    assert served.client.get(base).json()["approvals"] == []
    listed = served.client.get(f"{base}/approvals", params={"status": "cancelled"}).json()
    assert {a["id"]: a["data"]["reason"] for a in listed["approvals"]} == {
        action.id: "the task is cancelled", budget.id: "the hive is cancelled"}
    refused = served.client.post(f"{base}/approvals/{action.id}", json={"decision": "approved"})
    assert refused.status_code == 409
    assert refused.json()["message"] == (
        f"approval {action.id} was cancelled (the task is cancelled): it can no longer be "
        "decided; nothing was changed")
    assert served.store.get_approval(action.id).status.value == "cancelled"


def test_post_tasks_approvals_and_ledger(served: Served) -> None:
    hive = create(served, objective="Plan a trip", agents=1)
    base = f"/api/v2/hives/{hive['id']}"
    first = served.client.post(f"{base}/tasks", json={"title": "book flights",
                                                      "skills": ["travel"], "priority": 5})
    assert first.status_code == 201
    second = served.client.post(f"{base}/tasks", json={"title": "pack",
                                                       "depends_on": [first.json()["id"]]})
    assert second.json()["depends_on"] == [first.json()["id"]]
    assert served.client.get(f"{base}/tasks/{first.json()['id']}").json()["priority"] == 5
    assert served.client.post(f"{base}/tasks", json={"title": "x", "depends_on": ["nope"]}
                              ).status_code == 422
    other = create(served, objective="Other", agents=1)
    assert served.client.get(f"/api/v2/hives/{other['id']}/tasks/{first.json()['id']}"
                             ).status_code == 404

    approval = served.store.create_approval(Approval(
        id=new_id(), hive_id=hive["id"], kind=ApprovalKind.HIRE, subject="hire a designer"))
    assert [a["id"] for a in served.client.get(base).json()["approvals"]] == [approval.id]
    assert served.client.post(f"{base}/approvals/{approval.id}",
                              json={"decision": "maybe"}).status_code == 422
    decided = served.client.post(f"{base}/approvals/{approval.id}",
                                 json={"decision": "approved"})
    assert decided.status_code == 200
    assert decided.json()["status"] == "approved"
    assert decided.json()["decided_by"] == "local"
    again = served.client.post(f"{base}/approvals/{approval.id}", json={"decision": "rejected"})
    assert again.status_code == 409
    assert served.client.post(f"/api/v2/hives/{other['id']}/approvals/{approval.id}",
                              json={"decision": "rejected"}).status_code == 404
    assert served.client.get(f"{base}/approvals", params={"status": "approved"}).json()[
        "approvals"][0]["id"] == approval.id

    served.store.add_ledger_entry(model="scripted", prompt_tokens=10, completion_tokens=5,
                                  cost=0.25, cost_source="gateway", kind=CostKind.WORK,
                                  hive_id=hive["id"])
    ledger = served.client.get(f"{base}/ledger").json()
    assert ledger["spend"]["tokens"] == 15
    assert ledger["spend"]["cost"] == 0.25
    assert ledger["entries"][0]["model"] == "scripted"
    assert served.client.get(base).json()["spend"]["calls"] == 1


def test_event_stream_resumes_without_loss_or_duplication(served: Served) -> None:
    hive = create(served, objective="Stream me", agents=1)
    base = f"/api/v2/hives/{hive['id']}"
    last = served.client.get(base).json()["last_seq"]
    history = served.sse(f"{base}/stream", until=lambda frames: frames[-1]["id"] >= last)
    assert [f["id"] for f in history] == list(range(1, last + 1))
    assert history[0]["data"]["kind"] == "hive_created"

    # Live: events appended by another thread while we listen arrive in order, once each.
    listening = threading.Event()

    def append_later() -> None:
        assert listening.wait(20), "the stream never started"
        for n in range(30):
            served.store.append_event(hive["id"], "agent_turn", data={"n": n})

    writer = threading.Thread(target=append_later)
    writer.start()
    resume_from = last - 2
    frames = served.sse(f"{base}/stream", headers={"Last-Event-ID": str(resume_from)},
                        until=lambda frames: listening.set() or frames[-1]["id"] >= last + 30)
    writer.join()
    assert [f["id"] for f in frames] == list(range(resume_from + 1, last + 31))
    assert [f["data"]["data"]["n"] for f in frames[2:]] == list(range(30))
    # And again from the middle of the burst.
    tail = served.sse(f"{base}/stream", headers={"Last-Event-ID": str(last + 25)},
                      until=lambda frames: frames[-1]["id"] >= last + 30)
    assert [f["id"] for f in tail] == list(range(last + 26, last + 31))
    assert served.client.get(f"{base}/stream", headers={"Last-Event-ID": "x"}
                             ).status_code == 422
    page = served.client.get(f"{base}/events", params={"after": last, "limit": 10}).json()
    assert [e["seq"] for e in page["events"]] == list(range(last + 1, last + 11))


def test_event_stream_catches_events_from_other_processes(make_server: Any) -> None:
    """An event committed through another store handle (as a worker process would) does not
    fire this server's listener: the safety-net poll must deliver it."""
    from ruflo.store import open_store

    served = make_server(poll_seconds=0.2)
    hive = create(served, objective="Elsewhere", agents=1)
    base = f"/api/v2/hives/{hive['id']}"
    last = served.client.get(base).json()["last_seq"]
    other = open_store(served.settings)
    try:
        def append_elsewhere() -> None:
            # The stream shows nothing before this event, so nothing says it listens: give
            # it the time to (were it late, the history would deliver it, passing vacuously).
            time.sleep(0.3)
            other.append_event(hive["id"], "http_response")

        writer = threading.Thread(target=append_elsewhere)
        writer.start()
        frames = served.sse(f"{base}/stream", headers={"Last-Event-ID": str(last)},
                            until=lambda frames: True, timeout=10)
        writer.join()
    finally:
        other.close()
    assert frames[0]["id"] == last + 1
    assert frames[0]["data"]["kind"] == "http_response"
