"""E-mail through Resend's HTTP API (`POST /emails`). Depends on notify.base and notify.transport."""

from __future__ import annotations

from typing import Any

from ruflo.notify.base import Delivery, Notification
from ruflo.notify.transport import describe, json_body, post

DEFAULT_API_BASE = "https://api.resend.com"


class ResendSender:
    """Sends a plain-text e-mail; Resend's `message` explains a refusal."""

    name = "email"

    def __init__(self, api_key: str, sender: str, recipients: list[str], *,
                 api_base: str = DEFAULT_API_BASE, timeout: float = 10.0) -> None:
        if not api_key or not sender or not recipients:
            raise ValueError("Resend needs an API key, a from address and at least one recipient")
        self.api_key = api_key
        self.sender = sender
        self.recipients = recipients
        self.api_base = api_base.rstrip("/")
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"ResendSender(from={self.sender!r}, to={self.recipients!r})"

    async def send(self, message: Notification) -> Delivery:
        payload = {"from": self.sender, "to": self.recipients,
                   "subject": " ".join(message.title.split())[:250] or "ruflo",
                   "text": message.text or message.title}
        return await post(
            self.name,
            f"{self.api_base}/emails",
            content=json_body(payload),
            headers={"Content-Type": "application/json",
                     "Authorization": f"Bearer {self.api_key}"},
            http_timeout=self.timeout,
            judge=_judge,
            secrets=(self.api_key,),
        )


def _judge(status: int, answer: Any) -> tuple[bool, str]:
    if 200 <= status < 300 and isinstance(answer, dict) and answer.get("id"):
        return True, f"sent (id {answer['id']})"
    return False, describe(status, answer, "message", "error")


def split_addresses(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]
