"""One HTTP POST to a provider, turned into a Delivery. Depends on httpx and notify.base only.

Provider and network trouble never raises: it becomes a Delivery with `ok` False, a description a
person can act on, and whether trying again may help.
"""

from __future__ import annotations

import functools
import json
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import certifi

from ruflo.notify.base import Delivery

if TYPE_CHECKING:
    import httpx

ANSWER_LIMIT = 2000
"""Characters of a provider's answer kept in a Delivery (enough to read, bounded for logs)."""


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every send: building it reads the CA bundle (~100 ms), which would
    stall the dispatcher's loop if done per request."""
    return ssl.create_default_context(cafile=certifi.where())


def warm_up() -> None:
    """Build the shared TLS context now rather than inside the first send."""
    _tls()


def parse_answer(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:ANSWER_LIMIT]


async def post(
    sender: str,
    url: str,
    *,
    content: bytes,
    headers: dict[str, str],
    http_timeout: float,
    judge: Callable[[int, Any], tuple[bool, str]],
    secrets: tuple[str, ...] = (),
) -> Delivery:
    """POST `content` and let `judge(status, answer)` say whether the provider accepted it and in
    which words. `secrets` are blanked out of every description (a bot token sits in Telegram's
    URL, and transport errors may quote the URL)."""

    def redact(text: str) -> str:
        for secret in secrets:
            if secret:
                text = text.replace(secret, "<redacted>")
        return text

    import httpx  # only on a send: its import costs a server start ~0.1 s of CPU

    try:
        async with httpx.AsyncClient(timeout=http_timeout, verify=_tls()) as client:
            response = await client.post(url, content=content, headers=headers)
    except httpx.TimeoutException:
        return Delivery(sender, False, f"no answer within {http_timeout:g} s", retryable=True)
    except httpx.HTTPError as error:
        kind = type(error).__name__
        return Delivery(sender, False, redact(f"{kind}: {error}" if str(error) else kind),
                        retryable=True)
    answer = parse_answer(response)
    ok, description = judge(response.status_code, answer)
    retry_after: float | None = None
    if response.status_code == 429:
        retry_after = _retry_after(response, answer)
    return Delivery(
        sender,
        ok,
        redact(description),
        status_code=response.status_code,
        answer=answer,
        retryable=not ok and (response.status_code == 429 or response.status_code >= 500),
        retry_after=retry_after,
    )


def _retry_after(response: httpx.Response, answer: Any) -> float | None:
    if isinstance(answer, dict):
        parameters = answer.get("parameters")
        if isinstance(parameters, dict) and isinstance(parameters.get("retry_after"), int | float):
            return float(parameters["retry_after"])
    header = response.headers.get("retry-after")
    try:
        return float(header) if header is not None else None
    except ValueError:
        return None


def json_body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str).encode()


def describe(status: int, answer: Any, *keys: str) -> str:
    """The provider's own explanation: the first of `keys` present in a JSON answer, else the
    answer text, else the bare status."""
    if isinstance(answer, dict):
        for key in keys:
            value = answer.get(key)
            if isinstance(value, str) and value:
                return value
        return f"HTTP {status}: {json.dumps(answer)[:300]}"
    if isinstance(answer, str) and answer.strip():
        return f"HTTP {status}: {answer.strip()[:300]}"
    return f"HTTP {status}"
