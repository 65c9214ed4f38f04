"""A web page from another origin, in Chromium, cannot create, change or read a hive on a local
ruflo server: fetch() (JSON, text, no-cors) and HTML form posts, from a second HTTP server on
loopback (another port, or the name evil.test mapped to 127.0.0.1), plain cross-origin and
DNS-rebinding style (the page's own origin resolving to ruflo's port). The same script run by
ruflo's own page does create a hive: the attack is real, and the server is what stops it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from ui_harness import Servers

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 # A DNS name re-pointed at this machine (rebinding), without touching DNS.
                 "--host-resolver-rules=MAP evil.test 127.0.0.1",
                 # Chromium's own Local Network Access checks off: other browsers (and older
                 # Chromium) have none, and the server's rules are what is tested here.
                 "--disable-features=LocalNetworkAccessChecks,BlockInsecurePrivateNetworkRequests"]

pytestmark = pytest.mark.browser

ATTACK = """
async ({target, hive}) => {
  const results = {};
  async function attempt(name, run) {
    try { results[name] = await run(); } catch (e) { results[name] = "error: " + e.message; }
  }
  const evil = {objective: "pwned", name: "pwned",
                agents: [{name: "shell", adapter: "process",
                          adapter_config: {command: ["sh", "-c", "echo pwned > /tmp/pwned"]}}]};
  const answer = async (r) => r.type === "opaque" ? "opaque" : r.status + " " + await r.text();
  await attempt("create-json", async () => answer(await fetch(target + "/api/v2/hives", {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(evil)})));
  await attempt("create-text", async () => answer(await fetch(target + "/api/v2/hives", {
    method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"},
    body: JSON.stringify(evil)})));
  for (const action of ["pause", "cancel"]) {
    await attempt(action, async () => answer(await fetch(
      target + "/api/v2/hives/" + hive + "/" + action, {method: "POST", mode: "no-cors"})));
  }
  await attempt("task", async () => answer(await fetch(target + "/api/v2/hives/" + hive + "/tasks", {
    method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"},
    body: JSON.stringify({title: "injected"})})));
  await attempt("read", async () => answer(await fetch(target + "/api/v2/hives/" + hive)));
  await attempt("list", async () => answer(await fetch(target + "/api/v2/hives")));
  // Forms: a text/plain one whose body is JSON, and plain url-encoded ones, into iframes.
  async function post(name, action, enctype, field, value) {
    const frame = document.createElement("iframe");
    frame.name = name;
    document.body.appendChild(frame);
    const form = document.createElement("form");
    form.method = "POST"; form.action = action; form.enctype = enctype; form.target = name;
    const input = document.createElement("input");
    input.type = "hidden"; input.name = field; input.value = value;
    form.appendChild(input);
    document.body.appendChild(form);
    const loaded = new Promise((resolve) => frame.addEventListener("load", resolve));
    form.submit();
    await Promise.race([loaded, new Promise((resolve) => setTimeout(resolve, 5000))]);
    results[name] = "submitted";
  }
  await post("form-create", target + "/api/v2/hives", "text/plain",
             '{"objective": "pwned", "name": "pwned", "x": "', '"}');
  await post("form-pause", target + "/api/v2/hives/" + hive + "/pause",
             "application/x-www-form-urlencoded", "reason", "pwned");
  await post("form-cancel", target + "/api/v2/hives/" + hive + "/cancel",
             "multipart/form-data", "reason", "pwned");
  return results;
}
"""


class AttackerPage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<!doctype html><title>another site</title><body><p>hello</p></body>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def attacker() -> Iterator[int]:
    """A second web server on loopback: the other site's pages."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), AttackerPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def evil_browser() -> Iterator[Any]:
    """Chromium resolving evil.test to 127.0.0.1, as a re-pointed DNS name would."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


BLANK = "<!doctype html><title>evil.test</title><body><p>rebound</p></body>"

# (the page's origin, the address its script aims at); P is ruflo's port, Q the other server's.
CASES = {
    "other port, same address": ("http://127.0.0.1:{Q}/", "http://127.0.0.1:{P}"),
    "other site at ruflo's address": ("http://evil.test:{Q}/", "http://127.0.0.1:{P}"),
    "other site at localhost": ("http://evil.test:{Q}/", "http://localhost:{P}"),
    "ruflo under a foreign name": ("http://127.0.0.1:{Q}/", "http://evil.test:{P}"),
    "dns rebinding: the page's own origin": ("http://evil.test:{P}/", "http://evil.test:{P}"),
    "localhost page, other port": ("http://localhost:{Q}/", "http://localhost:{P}"),
}


def refusals(served: Any) -> int:
    return sum(count for (_, _, status), count in served.ctx.metrics.requests.items()
               if status in ("403", "415", "421"))


@pytest.mark.parametrize("case", list(CASES))
def test_a_page_of_another_origin_cannot_touch_a_hive(servers: Servers, evil_browser: Any,
                                                      attacker: int, case: str) -> None:
    served = servers.start(gateway_url=None)
    hive = served.http.post("/api/v2/hives", json={"objective": "mine", "agents": 1,
                                                   "tasks": [{"title": "t"}]})
    assert hive.status_code == 201, hive.text
    hive_id = hive.json()["id"]
    port = served.url.rsplit(":", 1)[1]
    page_url, target = (text.format(P=port, Q=attacker) for text in CASES[case])
    context = evil_browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        if page_url.startswith(f"http://evil.test:{port}/"):
            # The name still pointed at the attacker when the page loaded; it now points at ruflo.
            page.route(page_url, lambda route: route.fulfill(body=BLANK, content_type="text/html"))
        page.goto(page_url)
        assert page.evaluate("location.origin") + "/" == page_url
        results = page.evaluate(ATTACK, {"target": target, "hive": hive_id})
    finally:
        context.close()
    shown = json.dumps(results)
    assert hive_id not in shown, f"{case}: the page read the hive: {shown}"
    for name in ("create-json", "read", "list"):
        assert not results[name].startswith("2"), f"{case}: {name} answered {results[name]}"
    hives = served.store.list_hives(limit=100)
    assert [h.id for h in hives] == [hive_id], f"{case}: the page created a hive: {shown}"
    assert served.store.get_hive(hive_id).status == "running", f"{case}: {shown}"
    assert [t.title for t in served.store.list_tasks(hive_id)] == ["t"]
    # The requests did reach ruflo, and it refused them (not only the browser's own rules).
    assert refusals(served) >= 5, f"{case}: {served.ctx.metrics.requests} {shown}"


def test_the_same_script_on_ruflos_own_page_does_work(servers: Servers, evil_browser: Any) -> None:
    """The control: ruflo's own origin may create and read hives, so the refusals above are the
    server's doing, and the UI's own requests are not caught by the rules."""
    served = servers.start(gateway_url=None)
    hive_id = served.http.post("/api/v2/hives", json={"objective": "mine", "agents": 1}
                               ).json()["id"]
    context = evil_browser.new_context()
    page = context.new_page()
    try:
        page.goto(served.url + "/hives")
        results = page.evaluate(ATTACK, {"target": served.url, "hive": hive_id})
    finally:
        context.close()
    assert results["create-json"].startswith("201"), results
    assert results["read"].startswith("200"), results
    assert hive_id in results["read"]
    # The page's own body-less pause and cancel work, as the UI's buttons do ...
    assert served.store.get_hive(hive_id).status == "cancelled", results
    # ... but not-JSON writes stay refused, even from the same origin.
    assert results["task"].startswith("415"), results
    assert "injected" not in [t.title for t in served.store.list_tasks(hive_id)]
    names = sorted(h.name for h in served.store.list_hives(limit=100))
    assert names == ["mine", "pwned"], names
