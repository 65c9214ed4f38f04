"""The web pages: chat, hives, one hive's live board, and stored comparison reports. Pages are
server-rendered shells that never wait for the gateway; their data comes from the JSON/SSE API
after they are shown. Depends on Jinja2, the server context and the auth seam.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import markupsafe
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from ruflo.server.auth import AuthMode, Unauthenticated
from ruflo.server.context import ServerContext
from ruflo.server.gateway_status import UNCONFIGURED, GatewayState
from ruflo.server.reports import (
    COMPARE_FORMAT,
    StoredReport,
    compare_view,
    find_report,
    generic_view,
    is_compare,
    list_reports,
    read_report,
)

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
TOKEN_COOKIE = "ruflo_token"
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".svg": "image/svg+xml"}

# The pages' own scripts and styles only: no inline script, nothing from elsewhere.
PAGE_HEADERS = {
    "content-security-policy": ("default-src 'self'; script-src 'self'; style-src 'self'; "
                                "img-src 'self' data:; connect-src 'self'; object-src 'none'; "
                                "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}

GATEWAY_ADVICE = {
    "unconfigured": "Set OPENAI_BASE_URL (or LITELLM_BASE_URL) and OPENAI_API_KEY, then "
                    "restart ruflo.",
    "refused": "Put a key the gateway accepts in OPENAI_API_KEY (behind LiteLLM: a LiteLLM "
               "virtual key, not the provider's key) and restart ruflo.",
    "unreachable": "Check that the gateway is running and that OPENAI_BASE_URL points at it; "
                   "ruflo asks again on the next request.",
}

router = APIRouter(include_in_schema=False)


@cache
def _templates() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                             autoescape=jinja2.select_autoescape(default=True),
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    env.globals["static"] = static_url
    return env


@cache
def _static_files() -> dict[str, tuple[bytes, str, str]]:
    """Every file of the static folder by name: bytes, content type and a short content hash
    (the URL carries it, so browsers may keep a file forever and still see each new one)."""
    files: dict[str, tuple[bytes, str, str]] = {}
    for path in sorted(STATIC.iterdir()):
        kind = STATIC_TYPES.get(path.suffix)
        if path.is_file() and kind is not None:
            body = path.read_bytes()
            files[path.name] = (body, kind, hashlib.sha256(body).hexdigest()[:12])
    return files


def static_url(name: str) -> str:
    return f"/static/{name}?v={_static_files()[name][2]}"


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who looks at a page: a user, or nobody yet (token auth without a token: the page asks)."""

    user: str | None
    auth: str
    operator: bool = False
    """Pages hide the controls of hives the viewer may only look at (the API refuses anyway)."""


def _viewer(request: Request) -> Viewer | Response:
    ctx: ServerContext = request.app.state.ctx
    client, server = request.scope.get("client"), request.scope.get("server")
    headers: dict[str, str] = dict(request.headers)
    cookie = request.cookies.get(TOKEN_COOKIE)
    if ctx.auth.mode is AuthMode.TOKEN and cookie and "authorization" not in headers:
        # A browser can't put a bearer token on a page load; the sign-in form keeps it in a
        # cookie the pages read (the API still wants the header, which the scripts send).
        headers["authorization"] = f"Bearer {cookie}"
    try:
        caller = ctx.auth.caller(client[0] if client else None, headers,
                                 server_host=server[0] if server else None)
        return Viewer(caller.name, ctx.auth.mode.value, caller.operator)
    except Unauthenticated as refused:
        if ctx.auth.mode is AuthMode.TOKEN:
            return Viewer(None, ctx.auth.mode.value)
        return _render("refused.html", {"title": "Not signed in", "reason": str(refused),
                                        "viewer": Viewer(None, ctx.auth.mode.value),
                                        "page": "refused"}, status=401)


def script_json(value: Any) -> markupsafe.Markup:
    """JSON to put inside <script type="application/json">: no `<`, `>` or `&` left in it,
    so no text in the data can end the script element."""
    text = json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e")
    return markupsafe.Markup(text.replace("&", "\\u0026"))


def _render(template: str, values: dict[str, Any], *, status: int = 200) -> HTMLResponse:
    values = {"banner": None, "boot": {}, **values}
    values["boot"] = script_json(values["boot"])
    html = _templates().get_template(template).render(**values)
    return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)


def gateway_banner(ctx: ServerContext) -> dict[str, str] | None:
    """What the page can say about the gateway without asking it: the last state seen, or
    nothing yet (the page's script asks the API once the page is shown)."""
    state: GatewayState | None = UNCONFIGURED if ctx.gateway is None else ctx.gateway_state
    if state is None or state.status == "ok":
        return None
    return {"status": state.status, "message": state.message or state.status,
            "advice": GATEWAY_ADVICE.get(state.status, "Check the gateway; ruflo asks again "
                                                       "on the next request.")}


def _page(request: Request, template: str, page: str, title: str,
          **values: Any) -> Response:
    viewer = _viewer(request)
    if isinstance(viewer, Response):
        return viewer
    ctx: ServerContext = request.app.state.ctx
    boot = {"page": page, "auth": viewer.auth, "signedIn": viewer.user is not None,
            "user": viewer.user, "operator": viewer.operator,
            "defaultModel": str(ctx.settings.model),
            "advice": GATEWAY_ADVICE, **values.pop("boot", {})}
    return _render(template, {"title": title, "page": page, "viewer": viewer,
                              "banner": gateway_banner(ctx), "boot": boot,
                              "notice": getattr(request.app.state, "notice", None), **values})


@router.get("/", response_class=HTMLResponse)
async def chat_page(request: Request) -> Response:
    return _page(request, "chat.html", "chat", "Chat")


@router.get("/conversation/{conversation_id}", response_class=HTMLResponse)
async def conversation_page(request: Request, conversation_id: str) -> Response:
    # The id is only handed to the script, which asks the API (a wrong one is its 404 there).
    shown = conversation_id if re.fullmatch(r"[0-9a-f]{24}", conversation_id) else None
    return _page(request, "chat.html", "chat", "Chat", boot={"conversationId": shown})


@router.get("/hives", response_class=HTMLResponse)
async def hives_page(request: Request) -> Response:
    return _page(request, "hives.html", "hives", "Hives")


@router.get("/hives/{hive_id}", response_class=HTMLResponse)
async def hive_page(request: Request, hive_id: str) -> Response:
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,100}", hive_id):
        return _not_found(request, f"no hive {hive_id[:100]!r}")
    return _page(request, "hive.html", "hive", "Hive", hive_id=hive_id,
                 boot={"hiveId": hive_id})


# -- comparison reports ---------------------------------------------------------------------

def reports_dir(ctx: ServerContext) -> Path:
    return Path(ctx.settings.data_dir) / "reports"


@router.get("/reports", response_class=HTMLResponse)
async def reports_page(request: Request) -> Response:
    return _report_page(request, None)


@router.get("/reports/{name}", response_class=HTMLResponse)
async def report_page(request: Request, name: str) -> Response:
    return _report_page(request, name)


def _report_page(request: Request, name: str | None) -> Response:
    viewer = _viewer(request)
    if isinstance(viewer, Response):
        return viewer
    ctx: ServerContext = request.app.state.ctx
    folder = reports_dir(ctx)
    listed: list[StoredReport] = []
    trouble = None
    if viewer.user is not None:
        try:
            listed = list_reports(folder)
        except OSError as error:
            trouble = f"the reports folder could not be read: {error}"
    chosen = None
    if name is not None and viewer.user is not None:
        chosen = next((r for r in listed if r.name == name), None)
        if chosen is None:
            return _not_found(request, f"no report named {name[:150]!r} in {folder}")
    shown: dict[str, Any] | None = None
    if chosen is not None:
        shown = {"name": chosen.name, "report": chosen, "problem": None, "compare": None,
                 "generic": None}
        if chosen.json_path is None:
            shown["problem"] = ("this comparison has no report.json yet: it is still running, "
                                "or it stopped before its end (then its folder "
                                f"{folder / chosen.name} holds only the runs' workspaces)")
        else:
            data, shown["problem"] = read_report(chosen.json_path)
            if shown["problem"] is None and is_compare(data):
                try:
                    shown["compare"] = compare_view(data)
                except (KeyError, TypeError, ValueError, AttributeError) as error:
                    shown["problem"] = (f"the report says it is {COMPARE_FORMAT} but is not "
                                        f"shaped like it ({type(error).__name__}: {error}); "
                                        "its content is shown as it is")
            if shown["compare"] is None and data is not None:
                shown["generic"] = generic_view(data)
    return _render("reports.html", {
        "title": "Report " + chosen.name if chosen else "Comparison reports",
        "page": "reports", "viewer": viewer, "banner": None, "reports": listed,
        "trouble": trouble, "notice": getattr(request.app.state, "notice", None),
        "folder": str(folder), "shown": shown,
        "boot": {"page": "reports", "auth": viewer.auth, "signedIn": viewer.user is not None}})


def _report_file(request: Request, name: str, which: str) -> Response:
    """The report's own file: its charts (report.html, sandboxed: its scripts run without this
    site's rights) or its report.json."""
    viewer = _viewer(request)
    if isinstance(viewer, Response):
        return viewer
    chosen = find_report(reports_dir(request.app.state.ctx), name) \
        if viewer.user is not None else None
    path = None if chosen is None else chosen.html_path if which == "charts" \
        else chosen.json_path
    if path is None:
        return _not_found(request, f"no {which} for a report named {name[:150]!r}")
    if which == "charts":
        return FileResponse(path, media_type="text/html", headers={
            "content-security-policy": "sandbox allow-scripts",
            "x-content-type-options": "nosniff", "cache-control": "no-store"})
    return FileResponse(path, media_type="application/json", headers={
        "x-content-type-options": "nosniff", "cache-control": "no-store",
        "content-security-policy": "default-src 'none'; sandbox"})


@router.get("/reports/{name}/charts")
async def report_charts(request: Request, name: str) -> Response:
    return _report_file(request, name, "charts")


@router.get("/reports/{name}/report.json")
async def report_json(request: Request, name: str) -> Response:
    return _report_file(request, name, "report.json")


def _not_found(request: Request, reason: str) -> Response:
    ctx: ServerContext = request.app.state.ctx
    return _render("refused.html", {"title": "Not found", "reason": reason, "page": "missing",
                                    "viewer": Viewer(None, ctx.auth.mode.value)}, status=404)


@router.get("/static/{name}")
async def static_file(name: str) -> Response:
    found = _static_files().get(name)
    if found is None:
        return Response("no such file", status_code=404, media_type="text/plain")
    body, kind, _ = found
    return Response(body, media_type=kind, headers={
        "cache-control": "public, max-age=31536000, immutable",
        "x-content-type-options": "nosniff"})
