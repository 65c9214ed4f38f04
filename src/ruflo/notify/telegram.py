"""Telegram Bot API sender (`sendMessage`), with credentials from settings, env or a file. An
approval's message carries Approve/Reject buttons (notify/telegram_buttons.py reads the presses).

Depends on notify.base, notify.transport and notify.telegram_buttons.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ruflo.notify.base import Delivery, Notification
from ruflo.notify.telegram_buttons import REPLY_HINT, approval_buttons
from ruflo.notify.transport import describe, json_body, post

TEXT_LIMIT = 4096
"""Telegram's cap on a message, counted in UTF-16 code units."""

DEFAULT_API_BASE = "https://api.telegram.org"


def telegram_text(message: Notification) -> str:
    """Title and body, cut to Telegram's limit without splitting a character; never empty."""
    text = f"{message.title}\n\n{message.text}".strip() if message.text else message.title.strip()
    text = text or "(ruflo sent an empty notification)"
    if _utf16_len(text) <= TEXT_LIMIT:
        return text
    marker = "\n… (cut)"
    budget = TEXT_LIMIT - _utf16_len(marker)
    kept: list[str] = []
    used = 0
    for char in text:
        width = _utf16_len(char)
        if used + width > budget:
            break
        kept.append(char)
        used += width
    return "".join(kept) + marker


def approval_of(message: Notification) -> str | None:
    """The approval a message asks a person to decide (it then carries Approve/Reject buttons)."""
    if message.kind != "approval_requested":
        return None
    facts = message.data.get("data")
    approval_id = facts.get("approval_id") if isinstance(facts, dict) else None
    return approval_id if isinstance(approval_id, str) and approval_id else None


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class TelegramSender:
    """Sends to one chat through a bot. The answer's `description` is what Telegram says went
    wrong (e.g. "Bad Request: chat not found")."""

    name = "telegram"

    def __init__(self, token: str, chat_id: str, *, api_base: str = DEFAULT_API_BASE,
                 timeout: float = 10.0) -> None:
        if not token or not chat_id:
            raise ValueError("Telegram needs both a bot token and a chat id")
        self.token = token
        self.chat_id = chat_id
        self.api_base = api_base.rstrip("/")
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"TelegramSender(chat_id={self.chat_id!r}, api_base={self.api_base!r})"

    async def send(self, message: Notification) -> Delivery:
        approval_id = approval_of(message)
        if approval_id is not None:
            message = dataclasses.replace(message, text=f"{message.text}\n{REPLY_HINT}")
        payload: dict[str, Any] = {"chat_id": self.chat_id, "text": telegram_text(message),
                                   "disable_web_page_preview": True}
        if approval_id is not None:
            payload["reply_markup"] = approval_buttons(approval_id)
        return await post(
            self.name,
            f"{self.api_base}/bot{self.token}/sendMessage",
            content=json_body(payload),
            headers={"Content-Type": "application/json"},
            http_timeout=self.timeout,
            judge=_judge,
            secrets=(self.token,),
        )


def _judge(status: int, answer: Any) -> tuple[bool, str]:
    if isinstance(answer, dict) and answer.get("ok") is True and 200 <= status < 300:
        result = answer.get("result")
        message_id = result.get("message_id") if isinstance(result, dict) else None
        return True, f"sent (message_id {message_id})" if message_id is not None else "sent"
    return False, describe(status, answer, "description")


def read_credentials_file(path: Path) -> tuple[str | None, str | None]:
    """TOKEN=... and CHAT_ID=... lines (any prefix such as FRANK_C2_TELEGRAM_BOT_TOKEN, optional
    `export ` and quotes), as written for SSH sessions whose environment is scrubbed.
    Raises OSError when the file can't be read."""
    token: str | None = None
    chat_id: str | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        key = key.strip().upper()
        value = value.strip().strip("'\"")
        if key.endswith("TOKEN"):
            token = value or token
        elif key.endswith("CHAT_ID") or key == "CHAT":
            chat_id = value or chat_id
    return token, chat_id
