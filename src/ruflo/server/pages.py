"""The web pages: chat, hives, one hive's live board, and stored comparison reports. Pages are
server-rendered shells that never wait for the gateway; their data comes from the JSON/SSE API
after they are shown. Depends on Jinja2, the server context and the auth seam.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import markupsafe
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from ruflo.server.auth import AuthMode, Unauthenticated
from ruflo.server.context import ServerContext
from ruflo.server.gateway_status import UNCONFIGURED, GatewayState

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
TOKEN_COOKIE = "ruflo_token"
REPORT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,150}")
REPORT_MAX_BYTES = 20_000_000
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


def _viewer(request: Request) -> Viewer | Response:
    ctx: ServerContext = request.app.state.ctx
    client = request.scope.get("client")
    host = client[0] if client else None
    headers: dict[str, str] = dict(request.headers)
    cookie = request.cookies.get(TOKEN_COOKIE)
    if ctx.auth.mode is AuthMode.TOKEN and cookie and "authorization" not in headers:
        # A browser can't put a bearer token on a page load; the sign-in form keeps it in a
        # cookie the pages read (the API still wants the header, which the scripts send).
        headers["authorization"] = f"Bearer {cookie}"
    try:
        return Viewer(ctx.auth.user(host, headers), ctx.auth.mode.value)
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
            "user": viewer.user, "defaultModel": str(ctx.settings.model),
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


@dataclass(frozen=True, slots=True)
class StoredReport:
    name: str
    """The file name without `.json`; the page's URL names it."""
    bytes: int
    modified: datetime
    charts: bool
    """A `<name>.html` beside it holds the report's charts."""


def list_reports(folder: Path) -> list[StoredReport]:
    """The stored reports, newest first."""
    if not folder.is_dir():
        return []
    found = []
    for path in folder.glob("*.json"):
        if path.is_file() and REPORT_NAME.fullmatch(path.stem):
            stat = path.stat()
            found.append(StoredReport(path.stem, stat.st_size,
                                      datetime.fromtimestamp(stat.st_mtime, UTC),
                                      path.with_suffix(".html").is_file()))
    found.sort(key=lambda r: r.modified, reverse=True)
    return found


@dataclass(frozen=True, slots=True)
class Table:
    columns: list[str]
    rows: list[list[str]]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)[:200]
    return "" if value is None else str(value)


def as_table(items: Any, limit: int = 500) -> Table | None:
    """A list of flat records as a table (columns in first-seen order), or None."""
    if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
        return None
    columns: list[str] = []
    for item in items[:limit]:
        for key, value in item.items():
            if key not in columns and not isinstance(value, (dict, list)):
                columns.append(str(key))
    return Table(columns, [[_cell(item.get(c)) for c in columns] for item in items[:limit]])


def read_report(path: Path) -> tuple[Any, str | None]:
    """A report's JSON, or why it can't be shown."""
    if path.stat().st_size > REPORT_MAX_BYTES:
        return None, f"the report is larger than {REPORT_MAX_BYTES // 1_000_000} MB; open the file"
    try:
        return json.loads(path.read_text(encoding="utf-8")), None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return None, f"the report could not be read: {error}"


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
    reports = list_reports(folder) if viewer.user is not None else []
    chosen = None
    if name is not None and viewer.user is not None:
        chosen = next((r for r in reports if r.name == name), None)
        if chosen is None:
            return _not_found(request, f"no report named {name[:150]!r} in {folder}")
    shown: dict[str, Any] | None = None
    if chosen is not None:
        data, problem = read_report(folder / f"{chosen.name}.json")
        shown = {"name": chosen.name, "problem": problem, "charts": chosen.charts}
        if isinstance(data, dict):
            shown["facts"] = [(k, _cell(v)) for k, v in data.items()
                              if not isinstance(v, (dict, list))]
            shown["tables"] = [(k, t) for k, v in data.items()
                               if (t := as_table(v)) is not None]
            shown["sections"] = [(k, _cell(v) if not isinstance(v, dict) else None,
                                  [(ik, _cell(iv)) for ik, iv in v.items()]
                                  if isinstance(v, dict) else [])
                                 for k, v in data.items() if isinstance(v, dict)]
        else:
            table = as_table(data)
            shown.update(facts=[], tables=[("runs", table)] if table else [], sections=[])
        shown["raw"] = json.dumps(data, indent=2, ensure_ascii=False)[:200_000] \
            if problem is None else ""
    return _render("reports.html", {
        "title": "Report " + chosen.name if chosen else "Comparison reports",
        "page": "reports", "viewer": viewer, "banner": None, "reports": reports,
        "notice": getattr(request.app.state, "notice", None),
        "folder": str(folder), "shown": shown,
        "boot": {"page": "reports", "auth": viewer.auth, "signedIn": viewer.user is not None}})


@router.get("/reports/{name}/charts")
async def report_charts(request: Request, name: str) -> Response:
    """The report's own HTML (charts), sandboxed: its scripts run without this site's rights."""
    viewer = _viewer(request)
    if isinstance(viewer, Response):
        return viewer
    ctx: ServerContext = request.app.state.ctx
    folder = reports_dir(ctx)
    if viewer.user is None or not any(r.name == name and r.charts
                                       for r in list_reports(folder)):
        return _not_found(request, f"no charts for a report named {name[:150]!r}")
    return Response((folder / f"{name}.html").read_bytes(), media_type="text/html",
                    headers={"content-security-policy": "sandbox allow-scripts",
                             "x-content-type-options": "nosniff"})


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
