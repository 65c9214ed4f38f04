"""A remote A2A agent as a hive member, in a real server running the live engine: the hive sends
the task to the remote agent (a2a-sdk's server on loopback, tests/a2a_remote.py), its messages
are in the hive's log, and the task's verify decides; defining one needs an operator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from server_harness import GATEWAY_KEY, Served

from a2a_remote import Remote, remote_agent
from ruflo.server.auth import hash_token
from waiting import wait_until

FAST = {"time_unit": 0.05, "lease_seconds": 2.0}


def remote_hive(url: str) -> dict[str, Any]:
    return {"objective": "write calc", "config": FAST,
            "agents": [{"name": "far", "adapter": "a2a", "adapter_config": {"url": url}}],
            "tasks": [{"title": "calc", "verify": "grep -qx ok calc.txt"}]}


def test_a_hive_with_one_a2a_agent_completes_a_verified_task(
        make_server: Callable[..., Served]) -> None:
    served = make_server(script={"keys": [GATEWAY_KEY], "rules": []}, live=True)
    with remote_agent("write") as url:
        created = served.client.post("/api/v2/hives", json=remote_hive(url))
        assert created.status_code == 201, created.text
        hive_id = created.json()["id"]
        wait_until(lambda: served.store.get_hive(hive_id).status.value == "done")

    (task,) = served.store.list_tasks(hive_id)
    assert task.state.value == "done"
    assert task.verified is True
    assert task.result == "wrote calc.txt"
    assert "Task: calc" in Remote.prompts[0]
    kinds = {e.kind for e in served.store.events(hive_id)}
    assert {"a2a_request", "a2a_status", "a2a_file", "a2a_response"} <= kinds


def test_only_an_operator_may_define_an_a2a_agent(make_server: Callable[..., Served]) -> None:
    served = make_server(auth="token")
    served.store.create_token(token_id="t1", name="t", user_id="ana",
                              token_hash=hash_token("rfl_plain"))
    refused = served.client.post("/api/v2/hives", json=remote_hive("http://127.0.0.1:9"),
                                 headers={"Authorization": "Bearer rfl_plain"})
    assert refused.status_code == 403
    assert "agents[0].adapter (a2a)" in refused.json()["message"]
    assert served.store.list_hives() == []
