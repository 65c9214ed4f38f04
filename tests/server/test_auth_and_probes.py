"""Auth modes (forward auth from trusted proxies only, bearer tokens), probes that need no auth
and never ask the gateway, metrics, the error shape and the OpenAPI schema."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from server_harness import Served

from ruflo.errors import ConfigError
from ruflo.server.auth import hash_token, is_loopback_host, new_token

PROBES = ("/api/v2/feature-flags", "/healthz", "/readyz", "/metrics", "/openapi.json")


def client_from(served: Served, address: str) -> httpx.Client:
    """A client whose connections leave from `address` (another loopback address)."""
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=served.url, transport=transport, timeout=10)


def test_forward_auth_trusts_headers_only_from_the_proxy(
        make_server: Callable[..., Served]) -> None:
    served = make_server(auth="forward", trusted_proxies="127.0.0.2/32, 10.0.0.0/8")
    proxy = client_from(served, "127.0.0.2")
    stranger = client_from(served, "127.0.0.1")
    try:
        ok = proxy.get("/api/v2/user/settings", headers={"X-authentik-username": "alice"})
        assert ok.status_code == 200
        assert proxy.post("/api/v2/conversations", json={},
                          headers={"Remote-User": "bob"}).status_code == 201
        # The same header from an address that is not the proxy: refused.
        spoofed = stranger.get("/api/v2/conversations",
                               headers={"X-authentik-username": "alice"})
        assert spoofed.status_code == 401
        assert spoofed.json()["error"] == "unauthenticated"
        assert "proxy" in spoofed.json()["message"]
        # X-Forwarded-For does not make a stranger the proxy.
        forwarded = stranger.get("/api/v2/conversations", headers={
            "X-authentik-username": "alice", "X-Forwarded-For": "127.0.0.2"})
        assert forwarded.status_code == 401
        # The proxy without a user header: refused too.
        assert proxy.get("/api/v2/conversations").status_code == 401
        assert proxy.get("/api/v2/hives", headers={"Remote-User": "a\tb"}).status_code == 401
        # Probes need no auth, from anywhere.
        for path in PROBES:
            assert stranger.get(path).status_code == 200, path
        flags = stranger.get("/api/v2/feature-flags").json()
        assert flags["loginEnabled"] is True
        assert proxy.get("/api/v2/conversations", headers={"X-authentik-username": "alice"}
                         ).json()["conversations"] == []
    finally:
        proxy.close()
        stranger.close()


def test_forward_auth_without_trusted_proxies_will_not_start(tmp_path: object) -> None:
    from ruflo.server.auth import Authenticator

    with pytest.raises(ConfigError, match="RUFLO_TRUSTED_PROXIES"):
        Authenticator("forward", store=None, trusted_proxies=[])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="not an IP"):
        Authenticator("forward", store=None,  # type: ignore[arg-type]
                      trusted_proxies=["proxy.local"])


def test_bearer_tokens(make_server: Callable[..., Served]) -> None:
    served = make_server(auth="token")
    token = new_token()
    served.store.create_token(token_id="t1", name="laptop", user_id="carol",
                              token_hash=hash_token(token))
    good = {"Authorization": f"Bearer {token}"}
    assert served.client.get("/api/v2/conversations", headers=good).status_code == 200
    created = served.client.post("/api/v2/conversations", json={}, headers=good).json()
    exported = served.client.get("/api/v2/export", headers=good).json()
    assert exported["user"] == "carol"
    assert [c["id"] for c in exported["conversations"]] == [created["conversationId"]]
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": token},
                    {"Authorization": f"Basic {token}"}, {"Remote-User": "carol"}):
        refused = served.client.get("/api/v2/conversations", headers=headers)
        assert refused.status_code == 401, headers
        assert refused.headers["www-authenticate"] == "Bearer"
    served.store.revoke_token("t1")
    assert served.client.get("/api/v2/conversations", headers=good).status_code == 401
    for path in PROBES:
        assert served.client.get(path).status_code == 200, path


def test_probes_answer_without_store_or_gateway(served: Served) -> None:
    served.gateway.revoke_key("sk-test")
    flags = served.client.get("/api/v2/feature-flags")
    assert flags.status_code == 200
    assert flags.json() == {"enableAssistants": False, "loginEnabled": False, "isAdmin": False,
                            "transcriptionEnabled": False}
    assert served.client.get("/healthz").json() == {"status": "ok"}
    served.gateway.stop()
    assert served.client.get("/api/v2/feature-flags").status_code == 200
    ready = served.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["store"] == "ok"
    assert served.gateway.request_count == 0, "no probe asked the gateway"


def test_readyz_fails_when_the_store_is_gone(served: Served) -> None:
    served.store.close()
    ready = served.client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["status"] == "not ready"
    assert served.client.get("/api/v2/feature-flags").status_code == 200


def test_metrics_in_prometheus_format(served: Served) -> None:
    conversation = served.client.post("/api/v2/conversations", json={}).json()
    with served.client.stream("POST", f"/api/v2/conversations/{conversation['conversationId']}"
                                      "/messages", json={"inputs": "hello"}) as answer:
        answer.read()
    served.client.post("/api/v2/hives", json={"objective": "count", "agents": 1})
    served.client.get("/api/v2/feature-flags")
    text = served.client.get("/metrics")
    assert text.headers["content-type"].startswith("text/plain; version=0.0.4")
    lines = text.text.splitlines()
    assert 'ruflo_http_requests_total{method="GET",route="/api/v2/feature-flags",status="200"} 1' \
        in lines
    assert 'ruflo_http_requests_total{method="POST",route="/api/v2/conversations",status="201"} 1' \
        in lines
    assert 'ruflo_gateway_calls_total{kind="chat"} 1' in lines
    assert any(line.startswith('ruflo_tokens_total{kind="chat"} ') and not line.endswith(" 0")
               for line in lines)
    assert any(line.startswith('ruflo_spend_usd_total{kind="chat"} 0.0002') for line in lines)
    assert 'ruflo_tasks{state="open"} 1' in lines
    assert 'ruflo_hives{status="running"} 1' in lines
    for line in lines:
        if line and not line.startswith("#"):
            name_and_labels, value = line.rsplit(" ", 1)
            float(value)
            assert name_and_labels.startswith("ruflo_")


def test_errors_have_one_shape_and_openapi_lists_the_routes(served: Served) -> None:
    missing = served.client.get("/no/such/route")
    assert missing.status_code == 404
    assert missing.json() == {"message": "no route /no/such/route", "error": "not_found"}
    wrong_method = served.client.put("/api/v2/conversations")
    assert wrong_method.status_code == 405
    assert set(wrong_method.json()) == {"message", "error"}
    schema = served.client.get("/openapi.json").json()
    paths = set(schema["paths"])
    assert {"/api/v2/feature-flags", "/healthz", "/readyz", "/metrics", "/api/v2/models",
            "/api/v2/models/refresh", "/api/v2/conversations",
            "/api/v2/conversations/{conversation_id}",
            "/api/v2/conversations/{conversation_id}/messages",
            "/api/v2/conversations/{conversation_id}/stop-generating", "/api/v2/user/settings",
            "/api/v2/export", "/api/v2/hives", "/api/v2/hives/{hive_id}",
            "/api/v2/hives/{hive_id}/pause", "/api/v2/hives/{hive_id}/resume",
            "/api/v2/hives/{hive_id}/cancel", "/api/v2/hives/{hive_id}/tasks",
            "/api/v2/hives/{hive_id}/approvals/{approval_id}", "/api/v2/hives/{hive_id}/ledger",
            "/api/v2/hives/{hive_id}/stream"} <= paths


def test_loopback_hosts() -> None:
    assert is_loopback_host("127.0.0.1")
    assert is_loopback_host("127.3.2.1")
    assert is_loopback_host("::1")
    assert is_loopback_host("localhost")
    assert not is_loopback_host("0.0.0.0")
    assert not is_loopback_host("::")
    assert not is_loopback_host("10.1.2.3")
    assert not is_loopback_host("example.org")
