"""The gate before routing, auth and parsing, over real HTTP: foreign Host names (DNS rebinding),
writes from other origins or not as JSON, bodies over the size limit (declared or chunked), heads
and bodies that stall, and JSON nested too deep. Each refusal leaves the store as it was."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_harness import Served

from ruflo.server.guard import (
    MAX_JSON_DEPTH,
    host_allowed,
    hosts_notice,
    json_too_deep,
    origin_host,
)
from waiting import wait_until

HIVE = {"objective": "Guard the gate", "agents": 2,
        "tasks": [{"title": "first"}, {"title": "second"}]}
LIMIT = 64 * 1024


def port_of(served: Served) -> int:
    return int(served.url.rsplit(":", 1)[1])


def snapshot(served: Served) -> Any:
    """What a refused request must not change: hives, their events, conversations, settings."""
    store = served.store
    hives = store.list_hives(limit=1000)
    return ([(hive.id, hive.status, store.last_seq(hive.id)) for hive in hives],
            store.count_conversations(), store.get_user_settings("local"))


def raw(port: int, data: bytes, *, wait: float = 20.0) -> bytes:
    """Send `data` on a fresh connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(data)
        return read_to_close(sock)


def read_to_close(sock: socket.socket) -> bytes:
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk


def status_of(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    return int(answer.split(b" ", 2)[1])


def json_of(answer: bytes) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    return data


def write_routes(served: Served) -> list[tuple[str, str]]:
    """Every state-changing route of the app, as (method, path template), from its OpenAPI
    schema."""
    schema = served.client.get("/openapi.json").json()
    routes = [(method.upper(), path) for path, operations in schema["paths"].items()
              for method in operations if method.upper() in {"POST", "PUT", "PATCH", "DELETE"}]
    assert len(routes) >= 12, routes
    return routes


def fill(template: str, ids: dict[str, str]) -> str:
    path = template
    for name, value in ids.items():
        path = path.replace("{" + name + "}", value)
    assert "{" not in path, path
    return path


# -- the allowlist itself ------------------------------------------------------------------------

@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.1:3000", "localhost:3000", "LOCALHOST",
                                  "LocalHost:8080", "[::1]", "[::1]:3000", "127.9.9.9:1"])
def test_loopback_hosts_are_ours(host: str) -> None:
    assert host_allowed(host)


@pytest.mark.parametrize("host", ["evil.example", "evil.example:3000", "127.0.0.1.evil.example",
                                  "localhost.evil.example:3000", "", " ", "[::2]:3000",
                                  "127.0.0.1:99999", "127.0.0.1:3000:1", "local host",
                                  "127.0.0.1/x", "10.0.0.1:3000", "0.0.0.0:3000"])
def test_other_hosts_are_not(host: str) -> None:
    assert not host_allowed(host)


def test_configured_names_with_and_without_port() -> None:
    allowed = ["ruflo.example.com", "ops.example.com:8443"]
    assert host_allowed("ruflo.example.com", allowed)
    assert host_allowed("RUFLO.example.com:443", allowed)
    assert host_allowed("ops.example.com:8443", allowed)
    assert not host_allowed("ops.example.com", allowed)
    assert not host_allowed("ops.example.com:443", allowed)
    assert not host_allowed("ruflo.example.com.evil.example", allowed)
    assert not host_allowed("evil-ruflo.example.com", allowed)
    assert host_allowed("anything.example:1", ["*"])


@pytest.mark.parametrize(("origin", "host"), [
    ("http://127.0.0.1:3000", "127.0.0.1:3000"), ("https://ruflo.example.com", "ruflo.example.com"),
    ("http://[::1]:3000", "[::1]:3000"), ("http://localhost", "localhost")])
def test_origin_hosts(origin: str, host: str) -> None:
    assert origin_host(origin) == host


@pytest.mark.parametrize("origin", ["null", "", "file://", "chrome-extension://abc",
                                    "http://", "http://a:b", "http://x.example/path"])
def test_origins_that_name_no_host(origin: str) -> None:
    assert origin_host(origin) is None


def test_depth_counts_brackets_outside_strings() -> None:
    over, at = MAX_JSON_DEPTH + 1, MAX_JSON_DEPTH
    assert json_too_deep(b"[" * over + b"]" * over)
    assert not json_too_deep(b"[" * at + b"]" * at)
    assert json_too_deep(b'{"a":' * (over + 8) + b"1" + b"}" * (over + 8))
    assert not json_too_deep(json.dumps({"text": "[" * 500 + '"\\' + "{" * 500}).encode())
    assert json_too_deep(b'["\\"", ' + b"[" * (over + 8) + b"]" * (over + 8) + b"]")
    assert not json_too_deep(b"[]" * 10_000)


# -- Host over HTTP ------------------------------------------------------------------------------

@pytest.mark.parametrize("host", ["evil.example", "127.0.0.1.evil.example", "evil.example:{port}",
                                  "localhost.evil.example:{port}", "[::2]:{port}"])
def test_foreign_host_reads_and_writes_nothing(served: Served, host: str) -> None:
    made = served.client.post("/api/v2/hives", json=HIVE)
    assert made.status_code == 201
    hive_id = made.json()["id"]
    before = snapshot(served)
    name = host.format(port=port_of(served))
    for method, path, body in [("GET", "/api/v2/hives", None), ("GET", f"/api/v2/hives/{hive_id}",
                                                                None),
                               ("POST", "/api/v2/hives", HIVE),
                               ("POST", f"/api/v2/hives/{hive_id}/pause", {}),
                               ("POST", f"/api/v2/hives/{hive_id}/cancel", None),
                               ("GET", "/hives", None), ("GET", "/readyz", None)]:
        answer = served.client.request(method, path, json=body, headers={"Host": name})
        assert answer.status_code == 421, (method, path, answer.text)
        assert answer.json()["error"] == "misdirected"
        assert "RUFLO_ALLOWED_HOSTS" in answer.json()["message"]
    assert snapshot(served) == before


def test_empty_and_missing_host_are_refused(served: Served) -> None:
    port = port_of(served)
    empty = raw(port, b"GET /api/v2/hives HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n")
    assert status_of(empty) == 421
    missing = raw(port, b"GET /api/v2/hives HTTP/1.0\r\n\r\n")
    assert status_of(missing) == 421


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST:{port}",
                                  "[::1]:{port}", "127.0.0.1", "localhost"])
def test_loopback_hosts_are_answered(served: Served, host: str) -> None:
    name = host.format(port=port_of(served))
    answer = served.client.post("/api/v2/hives", json=HIVE, headers={"Host": name})
    assert answer.status_code == 201, answer.text
    assert served.client.get("/api/v2/hives", headers={"Host": name}).status_code == 200


def test_configured_public_names_are_answered(make_server: Callable[..., Served]) -> None:
    served = make_server(extra_env={"RUFLO_ALLOWED_HOSTS": "ruflo.example.com, ops.example:8443"})
    for name in ["ruflo.example.com", "Ruflo.Example.Com:443", "ops.example:8443"]:
        assert served.client.get("/api/v2/hives", headers={"Host": name}).status_code == 200
    for name in ["ops.example", "evil.example", "ruflo.example.com.evil.example"]:
        assert served.client.get("/api/v2/hives", headers={"Host": name}).status_code == 421
    # Behind a proxy the page's origin is the public name, whatever Host the proxy sends on.
    made = served.client.post("/api/v2/hives", json=HIVE, headers={
        "Origin": "https://ruflo.example.com", "Sec-Fetch-Site": "same-origin"})
    assert made.status_code == 201, made.text


def test_probe_path_stays_answered_for_any_host(served: Served) -> None:
    """The kubelet asks with the pod's address as Host; the probe answer is static."""
    for name in ["10.42.0.7:3000", "evil.example"]:
        answer = served.client.get("/api/v2/feature-flags", headers={"Host": name})
        assert answer.status_code == 200


# -- origins -------------------------------------------------------------------------------------

FOREIGN = [
    {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
    {"Origin": "http://evil.example"},
    {"Origin": "null", "Sec-Fetch-Site": "cross-site"},
    {"Origin": "null"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
    {"Origin": "http://127.0.0.1:1", "Sec-Fetch-Site": "same-site"},
    {"Origin": "http://localhost:{port}"},
    {"Origin": "http://127.0.0.1:{port}.evil.example"},
]


@pytest.mark.parametrize("headers", FOREIGN)
def test_writes_from_other_origins_are_refused(served: Served, headers: dict[str, str]) -> None:
    port = port_of(served)
    sent = {name: value.format(port=port) for name, value in headers.items()}
    made = served.client.post("/api/v2/hives", json=HIVE)
    hive_id = made.json()["id"]
    before = snapshot(served)
    for path, body in [("/api/v2/hives", HIVE), (f"/api/v2/hives/{hive_id}/pause", None),
                       (f"/api/v2/hives/{hive_id}/cancel", None),
                       (f"/api/v2/hives/{hive_id}/tasks", {"title": "injected"}),
                       ("/api/v2/conversations", {}), ("/api/v2/user/settings",
                                                       {"activeModel": "x"})]:
        answer = served.client.post(path, json=body, headers=sent)
        assert answer.status_code == 403, (path, sent, answer.text)
        assert answer.json()["error"] == "forbidden"
        assert "nothing was done" in answer.json()["message"]
    assert snapshot(served) == before


@pytest.mark.parametrize("headers", [
    {"Origin": "http://127.0.0.1:{port}", "Sec-Fetch-Site": "same-origin"},
    {"Origin": "http://127.0.0.1:{port}"},
    {"Sec-Fetch-Site": "same-origin"},
    {"Sec-Fetch-Site": "none"},
    {}])
def test_same_origin_and_non_browser_writes_work(served: Served, headers: dict[str, str]) -> None:
    sent = {name: value.format(port=port_of(served)) for name, value in headers.items()}
    made = served.client.post("/api/v2/hives", json=HIVE, headers=sent)
    assert made.status_code == 201, made.text
    hive_id = made.json()["id"]
    paused = served.client.post(f"/api/v2/hives/{hive_id}/pause", headers=sent)
    assert paused.status_code == 200, paused.text
    assert served.store.get_hive(hive_id).status == "paused"


def test_cross_site_reads_of_the_api_are_refused_but_pages_open(served: Served) -> None:
    hive_id = served.client.post("/api/v2/hives", json=HIVE).json()["id"]
    for site in ["cross-site", "same-site"]:
        for path in ["/api/v2/hives", f"/api/v2/hives/{hive_id}", f"/api/v2/hives/{hive_id}/tasks",
                     "/api/v2/conversations"]:
            answer = served.client.get(path, headers={"Sec-Fetch-Site": site})
            assert answer.status_code == 403, (site, path)
            assert hive_id not in answer.text
        # A link from another site to a page still opens it (a navigation, not a read).
        assert served.client.get("/hives", headers={"Sec-Fetch-Site": site}).status_code == 200


# -- JSON bodies for every write -----------------------------------------------------------------

NOT_JSON = [("text/plain", b'{"objective": "x"}'),
            ("text/plain;charset=UTF-8", b""),
            ("application/x-www-form-urlencoded", b"objective=x&agents=1"),
            ("multipart/form-data; boundary=b", b"--b\r\nContent-Disposition: form-data; "
                                                b"name=\"objective\"\r\n\r\nx\r\n--b--\r\n"),
            ("application/xml", b"<hive/>"),
            (None, b'{"objective": "x"}')]


def test_every_write_route_takes_json_only(served: Served) -> None:
    made = served.client.post("/api/v2/hives", json=HIVE)
    hive_id = made.json()["id"]
    task_id = served.store.list_tasks(hive_id)[0].id
    conversation = served.client.post("/api/v2/conversations", json={}).json()
    ids = {"hive_id": hive_id, "task_id": task_id, "approval_id": "approval-1",
           "conversation_id": conversation["conversationId"], "call_id": "call-1", "agent_id": "agent-1",
           "name": "some-server"}
    before = snapshot(served)
    routes = write_routes(served)
    for method, template in routes:
        path = fill(template, ids)
        for content_type, body in NOT_JSON:
            headers = {} if content_type is None else {"Content-Type": content_type}
            answer = served.client.request(method, path, content=body, headers=headers)
            assert answer.status_code == 415, (method, path, content_type, answer.text)
            assert "application/json" in answer.json()["message"]
        # Without a body and from another site: refused as well.
        answer = served.client.request(method, path, headers={"Origin": "http://evil.example"})
        assert answer.status_code == 403, (method, path)
    assert snapshot(served) == before
    assert {"/api/v2/hives/{hive_id}/pause", "/api/v2/hives/{hive_id}/resume",
            "/api/v2/hives/{hive_id}/cancel", "/api/v2/hives",
            "/api/v2/hives/{hive_id}/tasks", "/api/v2/hives/{hive_id}/approvals/{approval_id}",
            "/api/v2/conversations/{conversation_id}/messages"} <= {path for _, path in routes}


def test_bodiless_writes_from_scripts_keep_working(served: Served) -> None:
    """curl -X POST .../pause: no Content-Type, no body, no Origin."""
    hive_id = served.client.post("/api/v2/hives", json=HIVE).json()["id"]
    port = port_of(served)
    for action, status in [("pause", "paused"), ("resume", "running"), ("cancel", "cancelled")]:
        answer = raw(port, f"POST /api/v2/hives/{hive_id}/{action} HTTP/1.1\r\n"
                           f"Host: 127.0.0.1:{port}\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n"
                           "Connection: close\r\n\r\n".encode())
        assert status_of(answer) == 200, answer
        assert served.store.get_hive(hive_id).status == status


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8",
                                          "Application/JSON", "application/merge-patch+json"])
def test_json_content_types_are_accepted(served: Served, content_type: str) -> None:
    answer = served.client.post("/api/v2/hives", content=json.dumps(HIVE).encode(),
                                headers={"Content-Type": content_type})
    assert answer.status_code == 201, answer.text


# -- body size -----------------------------------------------------------------------------------

@pytest.fixture
def limited(make_server: Callable[..., Served]) -> Served:
    return make_server(extra_env={"RUFLO_MAX_BODY_BYTES": str(LIMIT)})


@pytest.mark.parametrize("auth", ["none", "token"])
@pytest.mark.parametrize("declared", [LIMIT + 1, 10_000_000, 50 * 1024 * 1024, 2**62])
def test_declared_length_over_the_limit_is_refused_unread(
        make_server: Callable[..., Served], auth: str, declared: int) -> None:
    served = make_server(auth=auth, extra_env={"RUFLO_MAX_BODY_BYTES": str(LIMIT)})
    port = port_of(served)
    before = snapshot(served)
    # Only the head is sent: the answer comes at once, without waiting for the body.
    answer = raw(port, f"POST /api/v2/hives HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                       f"Content-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
                       .encode())
    assert status_of(answer) == 413, answer  # before auth: not 401
    body = json_of(answer)
    assert body["error"] == "too_large"
    assert "RUFLO_MAX_BODY_BYTES" in body["message"]
    assert "not read" in body["message"]
    assert b"connection: close" in answer.lower()
    assert snapshot(served) == before


@pytest.mark.parametrize("chunk_size", [1000, 16 * 1024, 100_000])
def test_chunked_body_is_cut_at_the_limit(limited: Served, chunk_size: int) -> None:
    port = port_of(limited)
    before = snapshot(limited)
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(f"POST /api/v2/hives HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                     "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                     .encode())
        payload = b"x" * chunk_size
        sent = 0
        sock.settimeout(0.05)
        answer = b""
        # Keep sending until the server answers: it must answer once the limit is passed.
        while not answer and sent < 50 * LIMIT:
            try:
                sock.sendall(f"{chunk_size:x}\r\n".encode() + payload + b"\r\n")
                sent += chunk_size
            except (BrokenPipeError, ConnectionResetError):
                break
            try:
                answer = sock.recv(65536)
            except TimeoutError:
                continue
        sock.settimeout(20)
        answer += read_to_close(sock)
    assert status_of(answer) == 413, answer
    assert "reading stopped" in json_of(answer)["message"]
    assert sent < 50 * LIMIT
    assert snapshot(limited) == before


def test_bodies_up_to_the_limit_pass(limited: Served) -> None:
    body = json.dumps({**HIVE, "objective": "o" * 40_000}).encode()
    assert len(body) < LIMIT
    assert limited.client.post("/api/v2/hives", content=body, headers={
        "Content-Type": "application/json"}).status_code == 201
    exact = json.dumps({**HIVE, "name": "n", "objective": "o"}).encode()
    exact = exact[:-1] + b" " * (LIMIT - len(exact)) + b"}"
    assert len(exact) == LIMIT
    assert limited.client.post("/api/v2/hives", content=exact, headers={
        "Content-Type": "application/json"}).status_code == 201
    over = exact[:-1] + b" }"
    answer = limited.client.post("/api/v2/hives", content=over, headers={
        "Content-Type": "application/json"})
    assert answer.status_code == 413


# -- time ----------------------------------------------------------------------------------------

@pytest.fixture
def hasty(make_server: Callable[..., Served]) -> Served:
    return make_server(extra_env={"RUFLO_READ_TIMEOUT_SECONDS": "1"})


@pytest.mark.slow
@pytest.mark.parametrize("partial", [
    b"",
    b"POST /api/v2/hi",
    b"POST /api/v2/hives HTTP/1.1\r\n",
    b"POST /api/v2/hives HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-",
    b"GET /api/v2/hives HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n"])
def test_stalled_heads_are_dropped(hasty: Served, partial: bytes) -> None:
    # The read waits far longer than the server's 1 s: it ends because the server closed.
    answer = raw(port_of(hasty), partial, wait=30)
    assert answer == b""


@pytest.mark.slow
def test_stalled_head_after_a_kept_alive_request_is_dropped(hasty: Served) -> None:
    port = port_of(hasty)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        first = b""
        while b"\r\n\r\n" not in first:
            first += sock.recv(65536)
        head, rest = first.split(b"\r\n\r\n", 1)
        length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
        while len(rest) < length:
            rest += sock.recv(65536)
        assert status_of(first) == 200
        sock.sendall(b"GET /api/v2/hives HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        assert read_to_close(sock) == b""


@pytest.mark.slow
@pytest.mark.parametrize(("declared", "sent"), [(100, 50), (10_000, 1), (20_000, 0)])
def test_stalled_bodies_get_408(hasty: Served, declared: int, sent: int) -> None:
    port = port_of(hasty)
    before = snapshot(hasty)
    answer = raw(port, f"POST /api/v2/hives HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                       f"Content-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
                       .encode() + b"{" + b" " * max(sent - 1, 0), wait=30)
    assert status_of(answer) == 408, answer
    assert "RUFLO_READ_TIMEOUT_SECONDS" in json_of(answer)["message"]
    assert snapshot(hasty) == before


def test_oversized_head_gets_431(served: Served) -> None:
    port = port_of(served)
    answer = raw(port, f"GET /api/v2/hives HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Pad: "
                       .encode() + b"a" * (2 * 1024 * 1024) + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 431"), answer[:100]


# -- JSON depth ----------------------------------------------------------------------------------

@pytest.mark.parametrize("body", [
    b'{"objective": ' + b"[" * 300 + b"]" * 300 + b"}",
    b'{"objective": "deep", "config": ' + b'{"a":' * 33 + b"1" + b"}" * 33 + b"}",
    b'{"objective": "deep", "tasks": [' + b"[" * 100_000 + b"]}",
    b"[" * 60_000])
def test_deep_json_is_refused_before_parsing(served: Served, body: bytes) -> None:
    before = snapshot(served)
    answer = served.client.post("/api/v2/hives", content=body,
                                headers={"Content-Type": "application/json"})
    assert answer.status_code == 422, answer.text
    # Past 64 levels the body is refused unparsed; a free-form field past 32 by its own check.
    assert re.search(r"nested deeper than (64|32)", answer.json()["message"])
    assert "nothing was stored" in answer.json()["message"]
    assert snapshot(served) == before


def test_deep_json_is_refused_on_chat_and_tasks_too(served: Served) -> None:
    hive_id = served.client.post("/api/v2/hives", json=HIVE).json()["id"]
    conversation = served.client.post("/api/v2/conversations", json={}).json()["conversationId"]
    before = snapshot(served)
    deep = b'{"inputs": "hi", "x": ' + b"[" * 300 + b"]" * 300 + b"}"
    for path in [f"/api/v2/conversations/{conversation}/messages", f"/api/v2/hives/{hive_id}/tasks",
                 f"/api/v2/hives/{hive_id}/pause", "/api/v2/user/settings"]:
        answer = served.client.post(path, content=deep,
                                    headers={"Content-Type": "application/json"})
        assert answer.status_code == 422, (path, answer.text)
        assert "nested deeper" in answer.json()["message"]
    assert snapshot(served) == before


def test_brackets_inside_strings_are_not_depth(served: Served) -> None:
    answer = served.client.post("/api/v2/hives", json={**HIVE, "objective": "[" * 300 + "{" * 300})
    assert answer.status_code == 201, answer.text


# -- `ruflo serve` itself --------------------------------------------------------------------------

def test_the_boot_line_names_the_hosts_and_warns_about_an_open_bind() -> None:
    assert hosts_notice("127.0.0.1", []) == "hosts: answering localhost, 127.0.0.1, [::1]"
    assert "ruflo.example.com" in hosts_notice("0.0.0.0", ["ruflo.example.com"])
    assert "not set" not in hosts_notice("0.0.0.0", ["ruflo.example.com"])
    for bind in ["0.0.0.0", "::", "10.0.0.5", "ruflo.internal"]:
        assert "RUFLO_ALLOWED_HOSTS is not set" in hosts_notice(bind, [])
    assert "any Host" in hosts_notice("0.0.0.0", ["*"])


@pytest.mark.integration
@pytest.mark.slow
def test_ruflo_serve_applies_the_gate_and_the_head_deadline(tmp_path: Path) -> None:
    """The real command, as a person starts it: hosts, origins, limits and deadlines."""
    port = free_port()
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("RUFLO_", "OPENAI_", "LITELLM_", "DATABASE_URL"))}
    env.update(RUFLO_DATA_DIR=str(tmp_path), RUFLO_CONFIG="", RUFLO_READ_TIMEOUT_SECONDS="1",
               RUFLO_MAX_BODY_BYTES=str(LIMIT))
    process = subprocess.Popen([sys.executable, "-c", "from ruflo.cli import main; main()",
                                "serve", "--port", str(port)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: process.poll() is not None or ok(f"{url}/healthz"),
                   what="ruflo serve did not answer")
        assert process.poll() is None, "ruflo serve exited"
        assert httpx.get(f"{url}/api/v2/hives", headers={"Host": "evil.example"}
                         ).status_code == 421
        assert httpx.post(f"{url}/api/v2/hives", json=HIVE, headers={
            "Origin": "http://evil.example"}).status_code == 403
        assert httpx.post(f"{url}/api/v2/hives", json=HIVE).status_code == 201
        assert status_of(raw(port, f"POST /api/v2/hives HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                                   "Content-Type: application/json\r\nContent-Length: "
                                   f"{50 * 2**20}\r\n\r\n".encode())) == 413
        assert raw(port, b"GET /api/v2/hives HTTP/1.1\r\nHost: 127.0.0.1", wait=30) == b""
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert "hosts: answering localhost, 127.0.0.1, [::1]" in stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
