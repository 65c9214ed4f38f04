"""The action-policy API on a real server: read and set a hive's and an agent's policy, bad
policies refused (422) with nothing changed, policies given at creation checked too."""

from __future__ import annotations

from typing import Any

from ruflo.event_kinds import EventKind


def created(served: Any, **body: Any) -> dict[str, Any]:
    answer = served.client.post("/api/v2/hives", json={"objective": "tidy up", **body})
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def test_a_hive_policy_is_set_read_and_recorded(served: Any) -> None:
    hive = created(served, agents=[{"name": "ada"}])
    start = served.client.get(f"/api/v2/hives/{hive['id']}/actions").json()
    assert start["actions"] == {}
    assert any("rm -rf" in rule["why"] for rule in start["safe_defaults"])

    policy = {"write": "ask", "run_command": {"rules": [{"glob": "npm publish*",
                                                         "decision": "deny"}]}}
    answer = served.client.put(f"/api/v2/hives/{hive['id']}/actions", json={"actions": policy})
    assert answer.status_code == 200, answer.text
    assert answer.json()["actions"] == policy
    answer = served.client.put(f"/api/v2/hives/{hive['id']}/agents/ada/actions",
                               json={"actions": {"write": "allow"}})
    assert answer.status_code == 200, answer.text

    read = served.client.get(f"/api/v2/hives/{hive['id']}/actions").json()
    assert read["actions"] == policy
    assert read["agents"] == {"ada": {"write": "allow"}}
    assert served.store.get_hive(hive["id"]).config["actions"] == policy
    changes = served.store.events(hive["id"], kinds=[EventKind.ACTIONS_CHANGED])
    assert [e.data["scope"] for e in changes] == ["hive", "agent"]


def test_bad_policies_are_refused_and_nothing_changes(served: Any) -> None:
    hive = created(served, agents=[{"name": "ada"}])
    url = f"/api/v2/hives/{hive['id']}/actions"
    served.client.put(url, json={"actions": {"edit": "deny"}})
    for body, said in [({"actions": {"edit": "sometimes"}}, "unknown decision 'sometimes'"),
                       ({"actions": {"run_command": {"rules": [{"regex": "[",
                                                                "decision": "ask"}]}}},
                        "does not compile"),
                       ({"actions": {"launch": "allow"}}, "unknown action 'launch'")]:
        answer = served.client.put(url, json=body)
        assert answer.status_code == 422, answer.text
        assert said in answer.text
        assert "nothing was changed" in answer.text
    assert served.client.put(url, json={"policy": {}}).status_code == 422
    assert served.client.put(f"/api/v2/hives/{hive['id']}/agents/nobody/actions",
                             json={"actions": {}}).status_code == 404
    assert served.client.get(url).json()["actions"] == {"edit": "deny"}


def test_policies_given_at_creation_are_checked(served: Any) -> None:
    answer = served.client.post("/api/v2/hives", json={
        "objective": "x", "config": {"actions": {"write": "perhaps"}}})
    assert answer.status_code == 422
    assert "config: actions: 1 problem" in answer.text
    answer = served.client.post("/api/v2/hives", json={
        "objective": "x", "agents": [{"name": "ada", "adapter_config": {
            "actions": {"run_command": {"rules": [{"glob": "rm *"}]}}}}]})
    assert answer.status_code == 422
    assert "agent ada: actions" in answer.text
    hive = created(served, config={"actions": {"merge": "ask"}},
                   agents=[{"name": "ada", "adapter_config": {"actions": {"memory": "deny"}}}])
    read = served.client.get(f"/api/v2/hives/{hive['id']}/actions").json()
    assert read["actions"] == {"merge": "ask"}
    assert read["agents"] == {"ada": {"memory": "deny"}}
