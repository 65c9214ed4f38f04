"""The gate every request passes before routing, auth and parsing: the Host must be one of ours
(DNS rebinding), writes must come from our own origin as JSON (cross-site forms and fetches), and
bodies are bounded in size, time and JSON depth while they are read. Depends on stdlib only.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import json
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from itertools import accumulate
from typing import Any
from urllib.parse import urlsplit

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK_NAMES = ("localhost",)
"""Names answered without configuration, besides loopback IP literals (127.0.0.0/8, ::1)."""
MAX_JSON_DEPTH = 64
"""Nesting deeper than this in a request body is refused before any parser recurses into it.
Free-form fields inside a body have a tighter limit of their own (server/schemas.py), which
names the field."""
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
FOREIGN_FETCH_SITES = frozenset({b"cross-site", b"same-site"})

_HOST = re.compile(r"(?:\[(?P<ip6>[0-9a-f:.]+)\]|(?P<name>[a-z0-9.-]+))(?::(?P<port>\d{1,5}))?")
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = bytes(range(256)).translate(None, b"[]{}")  # every byte but the brackets
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def split_host(value: str) -> tuple[str, int | None] | None:
    """A Host header (or an allowlist entry) as (lower-case name, port), IPv6 without brackets;
    None when it is not a host name with an optional port."""
    match = _HOST.fullmatch(value.strip().lower())
    if match is None:
        return None
    port = int(match["port"]) if match["port"] else None
    if port is not None and not 0 < port < 65536:
        return None
    return (match["ip6"] or match["name"]), port


def is_loopback_name(name: str) -> bool:
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_allowed(host: str, allowed: Iterable[str] = ()) -> bool:
    """Whether a request naming `host` (its Host header, e.g. "127.0.0.1:3000") is for us: a
    loopback name or literal on any port, or an `allowed` entry ("name" matches any port,
    "name:port" that port only, "*" anything). The one allowlist of the web server and the MCP
    HTTP transport."""
    parsed = split_host(host)
    if parsed is None:
        return False
    name, port = parsed
    if is_loopback_name(name):
        return True
    for entry in allowed:
        if entry == "*":
            return True
        wanted = split_host(entry)
        if wanted is not None and wanted[0] == name and wanted[1] in (None, port):
            return True
    return False


def hosts_notice(bind: str, allowed: Iterable[str]) -> str:
    """The boot line saying which Host names the server answers, and a warning when it listens
    beyond loopback with no public name configured (then only loopback names would work)."""
    extra = list(allowed)
    if "*" in extra:
        return "hosts: answering any Host name (RUFLO_ALLOWED_HOSTS=*)"
    line = "hosts: answering " + ", ".join(["localhost", "127.0.0.1", "[::1]", *extra])
    if not extra and not is_loopback_name(bind.strip("[]").lower()):
        line += (f"; listening on {bind} but RUFLO_ALLOWED_HOSTS is not set, so requests that "
                 "name this machine's address or a public name get 421: set it to the name "
                 "people use")
    return line


def origin_host(origin: str) -> str | None:
    """The host[:port] of an Origin header, the scheme's default port left out; None for "null"
    and anything that is not an http(s) origin."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        return None
    name = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default = 443 if parts.scheme == "https" else 80
    return name if port in (None, default) else f"{name}:{port}"


def same_host(a: str, b: str) -> bool:
    """Two host[:port] values naming the same host and port (a missing port being 80 or 443)."""
    first, second = split_host(a), split_host(b)
    if first is None or second is None or first[0] != second[0]:
        return False
    return first[1] == second[1] or {first[1], second[1]} <= {None, 80, 443}


def json_too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the JSON text nests arrays/objects deeper than `limit`, found without parsing:
    strings are cut out, the brackets left are counted (C-speed steps, no recursion)."""
    brackets = _JSON_STRING.sub(b"", body).translate(None, _BRACKETS)
    if len(brackets) <= 2 * limit:
        return False
    return max(accumulate(_STEP[byte] for byte in brackets)) > limit


def is_json_type(content_type: str) -> bool:
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind == "application/json" or (kind.startswith("application/")
                                          and kind.endswith("+json"))


class ClientGone(Exception):
    """The client disconnected before its body was complete."""


class Refused(Exception):
    """A request the gate answers itself; the connection is closed after the answer when
    `close` (a body may still be on its way, and it is never read)."""

    def __init__(self, status: int, error: str, message: str, *, close: bool = False) -> None:
        super().__init__(message)
        self.status, self.error, self.message, self.close = status, error, message, close


async def answer(send: Send, refused: Refused) -> None:
    body = json.dumps({"message": refused.message, "error": refused.error}).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    if refused.close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": refused.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """The ASGI middleware applying the rules to each HTTP request, in this order (each refusal
    is a JSON error `{"message", "error"}` and changes nothing):

    - Host not in the allowlist (loopback names and literals, then RUFLO_ALLOWED_HOSTS) -> 421.
    - Sec-Fetch-Site `cross-site`/`same-site` on a write or an /api/ read, or an Origin that is
      not the request's own host (nor an allowed host) on a write -> 403. Requests without
      either header (curl, scripts, the CLI) are not browsers' and pass.
    - A write whose Content-Type is present or whose body is not empty must be JSON -> 415.
    - Content-Length over the limit -> 413 before a byte of the body is read; a chunked body is
      counted as it arrives and cut at the limit -> 413; a body not complete within the read
      timeout -> 408; a JSON body nested deeper than `max_json_depth` -> 422. These close the
      connection, so the rest of a body is never read.
    """

    def __init__(self, app: ASGIApp, *, allowed_hosts: Iterable[str] = (),
                 max_body_bytes: int = 1024 * 1024, read_timeout_seconds: float = 15.0,
                 max_json_depth: int = MAX_JSON_DEPTH) -> None:
        self.app = app
        self.allowed_hosts = tuple(allowed_hosts)
        self.max_body_bytes = max_body_bytes
        self.read_timeout = read_timeout_seconds
        self.max_json_depth = max_json_depth
        # Clients name the same few hosts over and over: parse each once (bounded, so a flood
        # of made-up names costs a parse each and no memory).
        self.host_ok = functools.lru_cache(maxsize=64)(
            lambda host: host_allowed(host, self.allowed_hosts))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name, value)  # the first of repeated headers, as Starlette reads
        try:
            self.check_head(scope, headers)
            body = await self.read_body(headers, receive)
        except Refused as refused:
            await answer(send, refused)
            return
        except ClientGone:
            return  # nobody to answer, nothing done
        if body is None:
            await self.app(scope, receive, send)
            return
        handed = False

        async def replay() -> Message:
            nonlocal handed
            if not handed:
                handed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def check_head(self, scope: Scope, headers: Mapping[bytes, bytes]) -> None:
        host = headers.get(b"host", b"").decode("latin-1")
        if not self.host_ok(host):
            raise Refused(421, "misdirected",
                          f"this server does not answer for host {host!r}: it answers "
                          "localhost, loopback addresses and RUFLO_ALLOWED_HOSTS; nothing was "
                          "done")
        write = scope["method"] in WRITE_METHODS
        site = headers.get(b"sec-fetch-site", b"").lower()
        if site in FOREIGN_FETCH_SITES and (write or scope["path"].startswith("/api/")):
            raise Refused(403, "forbidden", f"refused a {site.decode()} request from another "
                                            "web page; nothing was done")
        if not write:
            return
        origin = headers.get(b"origin")
        if origin is not None:
            own = origin_host(origin.decode("latin-1"))
            if own is None or not (same_host(own, host) or any(
                    entry != "*" and same_host(own, entry) for entry in self.allowed_hosts)):
                raise Refused(403, "forbidden",
                              f"refused a write from origin {origin.decode('latin-1')!r}, "
                              "which is not this server's own; nothing was done")
        content_type = headers.get(b"content-type")
        if (content_type is not None or has_body(headers)) and not is_json_type(
                (content_type or b"").decode("latin-1")):
            shown = content_type.decode("latin-1") if content_type is not None else "none"
            raise Refused(415, "unsupported_media_type",
                          f"writes take JSON (Content-Type: application/json), not {shown!r}; "
                          "nothing was done")

    async def read_body(self, headers: Mapping[bytes, bytes], receive: Receive) -> bytes | None:
        """The whole body, read within the limits; None when the request has none."""
        if not has_body(headers):
            return None
        limit = self.max_body_bytes
        length = headers.get(b"content-length")
        if length is not None and length.strip().isdigit() and int(length) > limit:
            raise Refused(413, "too_large", f"request body of {int(length)} bytes is over the "
                                            f"limit of {limit} (RUFLO_MAX_BODY_BYTES); it was "
                                            "not read, nothing was done", close=True)
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.read_timeout):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":
                        raise ClientGone
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > limit:
                        raise Refused(413, "too_large",
                                      f"request body over the limit of {limit} bytes "
                                      "(RUFLO_MAX_BODY_BYTES); reading stopped there, nothing "
                                      "was done", close=True)
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            raise Refused(408, "timeout", f"the request body did not arrive within "
                                          f"{self.read_timeout:g} s (RUFLO_READ_TIMEOUT_SECONDS); "
                                          "nothing was done", close=True) from None
        body = b"".join(chunks)
        content_type = headers.get(b"content-type", b"").decode("latin-1")
        if is_json_type(content_type) and json_too_deep(body, self.max_json_depth):
            raise Refused(422, "invalid_request",
                          f"JSON body nested deeper than {self.max_json_depth} levels; it was "
                          "not parsed, nothing was stored", close=True)
        return body


def has_body(headers: Mapping[bytes, bytes]) -> bool:
    length = headers.get(b"content-length")
    if length is not None:
        return length.strip() not in (b"0", b"")
    return b"transfer-encoding" in headers
