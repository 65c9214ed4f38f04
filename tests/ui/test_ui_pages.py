"""The pages over plain HTTP: they render without touching the gateway, say what is wrong with
it, refuse strangers, list and show stored comparison reports, and keep hostile input inert."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from ui_harness import Servers, closed_port

from ruflo.server.auth import hash_token, new_token

PAGES = ["/", "/hives", "/reports", "/hives/0123abcd", "/conversation/0123456789abcdef01234567"]


def boot_of(html: str) -> dict[str, object]:
    found = re.search(r'<script type="application/json" id="boot">(.*?)</script>', html, re.S)
    assert found is not None
    loaded: dict[str, object] = json.loads(found.group(1))
    return loaded


def test_pages_render_without_asking_the_gateway(servers: Servers) -> None:
    gateway = servers.scripted()
    served = servers.start(gateway_url=gateway.base_url)
    for path in PAGES:
        answer = served.http.get(path)
        assert answer.status_code == 200, path
        assert answer.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in answer.headers["content-security-policy"]
        assert boot_of(answer.text)["signedIn"] is True
    assert gateway.request_count == 0, "a page load must not wait on the gateway"
    for asset in ("ruflo.js", "chat.js", "hive.js", "hives.js", "ruflo.css"):
        answer = served.http.get(f"/static/{asset}")
        assert answer.status_code == 200
        assert "immutable" in answer.headers["cache-control"]


def test_chat_page_says_when_no_gateway_is_configured(servers: Servers) -> None:
    served = servers.start(gateway_url=None)
    answer = served.http.get("/")
    assert answer.status_code == 200
    assert 'data-status="unconfigured"' in answer.text
    assert "set OPENAI_BASE_URL" in answer.text


def test_a_gateway_trouble_seen_before_is_in_the_page_itself(servers: Servers) -> None:
    served = servers.start(gateway_url=f"http://127.0.0.1:{closed_port()}/v1")
    assert served.http.get("/api/v2/models").json() == []
    answer = served.http.get("/")
    assert answer.status_code == 200
    assert 'data-status="unreachable"' in answer.text
    assert "Check that the gateway is running" in answer.text


def test_forward_auth_pages_refuse_a_request_without_the_proxy_header(servers: Servers) -> None:
    # The server on 127.0.0.2: the client connects from 127.0.0.1, the trusted proxy, and
    # never from the server's own address, whose user headers are refused.
    served = servers.start(gateway_url=None, auth="forward", bind="127.0.0.2",
                           env={"RUFLO_TRUSTED_PROXIES": "127.0.0.1"})
    refused = served.http.get("/")
    assert refused.status_code == 401
    assert "X-authentik-username" in refused.text
    hostile = "</script><script>alert(1)</script>"
    answer = served.http.get("/hives", headers={"X-authentik-username": hostile})
    assert answer.status_code == 200
    assert "<script>alert(1)" not in answer.text
    assert boot_of(answer.text)["user"] == hostile


def test_token_auth_pages_ask_for_a_token_and_accept_it_from_the_cookie(
        servers: Servers) -> None:
    served = servers.start(gateway_url=None, auth="token")
    token = new_token()
    served.store.create_token(token_id="t1", name="ui", user_id="ada",
                              token_hash=hash_token(token))
    anonymous = served.http.get("/")
    assert anonymous.status_code == 200
    assert 'id="signin-form"' in anonymous.text
    assert boot_of(anonymous.text)["signedIn"] is False
    signed = served.http.get("/", headers={"Cookie": f"ruflo_token={token}"})
    assert boot_of(signed.text)["user"] == "ada"
    assert 'id="signin-form"' not in signed.text
    wrong = served.http.get("/reports", headers={"Cookie": "ruflo_token=rfl_wrong"})
    assert 'id="signin-form"' in wrong.text
    assert "Stored reports" not in wrong.text
    # The API itself still wants the header: a cookie alone is no key to it.
    assert served.http.get("/api/v2/conversations",
                           headers={"Cookie": f"ruflo_token={token}"}).status_code == 401


def test_reports_page_has_an_honest_empty_state(servers: Servers) -> None:
    served = servers.start(gateway_url=None)
    answer = served.http.get("/reports")
    assert answer.status_code == 200
    assert "No comparison reports yet" in answer.text
    assert str(Path(served.settings.data_dir) / "reports") in answer.text


def test_reports_page_lists_and_shows_stored_reports(servers: Servers) -> None:
    served = servers.start(gateway_url=None)
    folder = Path(served.settings.data_dir) / "reports"
    folder.mkdir(parents=True)
    report = {"workloads": ["ticket", "bug"], "seeds": 3, "created_at": "2026-05-04T10:00:00Z",
              "runs": [{"mode": "swarm", "workload": "bug", "success": True, "makespan": 12.5,
                        "cost": {"work": 0.01, "coordination": 0.0}},
                       {"mode": "company", "workload": "bug", "success": False,
                        "makespan": 30.25, "note": "<b>escalated</b>"}],
              "summary": {"winner": "swarm"}}
    (folder / "compare-1.json").write_text(json.dumps(report))
    (folder / "broken.json").write_text("{not json")
    (folder / "compare-1.html").write_text("<html><script>1</script></html>")

    listing = served.http.get("/reports").text
    assert 'href="/reports/compare-1"' in listing
    assert 'href="/reports/broken"' in listing

    shown = served.http.get("/reports/compare-1")
    assert shown.status_code == 200
    page = shown.text
    assert "<th scope=\"col\">makespan</th>" in page
    assert "30.25" in page
    assert "<td>company</td>" in page
    assert "&lt;b&gt;escalated&lt;/b&gt;" in page
    assert "<b>escalated</b>" not in page
    assert "<dt>winner</dt><dd>swarm</dd>" in page
    assert 'href="/reports/compare-1/charts"' in page

    charts = served.http.get("/reports/compare-1/charts")
    assert charts.status_code == 200
    assert charts.headers["content-security-policy"] == "sandbox allow-scripts"

    broken = served.http.get("/reports/broken")
    assert broken.status_code == 200
    assert "could not be read" in broken.text


@pytest.mark.parametrize("path", [
    "/reports/..%2f..%2fruflo.db", "/reports/%2e%2e", "/reports/nothing-here",
    "/reports/broken/charts", "/static/..%2fpages.py", "/static/chat.html",
    "/hives/..%2f..%2fetc", "/hives/%3Cscript%3E",
])
def test_hostile_or_unknown_paths_are_404s(servers: Servers, path: str) -> None:
    served = servers.start(gateway_url=None)
    folder = Path(served.settings.data_dir) / "reports"
    folder.mkdir(parents=True)
    (folder / "broken.json").write_text("{}")
    answer = served.http.get(path)
    assert answer.status_code == 404, (path, answer.status_code)
    assert "<script>" not in answer.text.lower(), "the path came back unescaped"
