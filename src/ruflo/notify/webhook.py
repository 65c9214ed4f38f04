"""Generic webhook sender: a JSON POST, signed with HMAC-SHA256 when a secret is set.

Depends on notify.base and notify.transport. The receiver checks
`X-Ruflo-Signature: sha256=<hex>` against HMAC(secret, raw body).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from ruflo.model import utcnow
from ruflo.notify.base import Delivery, Notification
from ruflo.notify.transport import describe, json_body, post

SIGNATURE_HEADER = "X-Ruflo-Signature"


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookSender:
    """Any 2xx answer means delivered."""

    name = "webhook"

    def __init__(self, url: str, *, secret: str | None = None, timeout: float = 10.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook URL must be http(s), got {url!r}")
        self.url = url
        self.secret = secret
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"WebhookSender(url={self.url!r}, signed={self.secret is not None})"

    async def send(self, message: Notification) -> Delivery:
        body = json_body({
            "source": "ruflo",
            "kind": message.kind,
            "title": message.title,
            "text": message.text,
            "hive_id": message.hive_id,
            "condition": message.condition,
            "data": message.data,
            "sent_at": utcnow().isoformat(),
        })
        headers = {"Content-Type": "application/json", "User-Agent": "ruflo-notify"}
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, body)
        return await post(self.name, self.url, content=body, headers=headers,
                          http_timeout=self.timeout, judge=_judge,
                          secrets=(self.secret,) if self.secret else ())


def _judge(status: int, answer: Any) -> tuple[bool, str]:
    if 200 <= status < 300:
        return True, f"HTTP {status}"
    return False, describe(status, answer, "description", "message", "error", "detail")
