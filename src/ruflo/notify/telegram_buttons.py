"""Approve/reject buttons in Telegram: the inline keyboard an approval's message carries, and the
poller that reads the presses through the Bot API's getUpdates (long polling: ruflo calls out,
nothing calls in) and answers each with answerCallbackQuery.
Depends on httpx and notify.transport only; the caller hands in `decide`.

Only presses in the configured chat count: anyone who can press a button there may decide, like
anyone who holds the hive's page. Telegram gives updates to one poller per bot (and none while a
webhook is set), so run one ruflo process with Telegram configured per bot.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

from ruflo.notify.transport import parse_answer

log = logging.getLogger("ruflo.notify")

PREFIX = "ruflo"
"""callback_data is `ruflo:approve:<approval id>` or `ruflo:reject:<approval id>` (≤ 64 bytes)."""

Decide = Callable[[str, bool, str], str]
"""decide(approval_id, approve, who) → the words shown to the person who pressed (e.g. "approved",
"already rejected by bob"); called in a worker thread."""


def approval_buttons(approval_id: str) -> dict[str, Any]:
    """The reply_markup of an approval's message."""
    return {"inline_keyboard": [[
        {"text": "✅ Approve", "callback_data": f"{PREFIX}:approve:{approval_id}"},
        {"text": "❌ Reject", "callback_data": f"{PREFIX}:reject:{approval_id}"}]]}


def read_press(data: object) -> tuple[str, bool] | None:
    """(approval id, approve?) from a button's callback_data; None when it is not ruflo's."""
    if not isinstance(data, str):
        return None
    parts = data.split(":")
    if len(parts) != 3 or parts[0] != PREFIX or parts[1] not in ("approve", "reject") \
            or not parts[2]:
        return None
    return parts[2], parts[1] == "approve"


class TelegramButtons:
    """Reads button presses for one bot and chat, decides them, answers each press."""

    def __init__(self, token: str, chat_id: str, decide: Decide, *, api_base: str,
                 poll_seconds: int = 25, timeout: float = 10.0) -> None:
        self.url = f"{api_base.rstrip('/')}/bot{token}"
        self.token = token
        self.chat_id = str(chat_id)
        self.decide = decide
        self.poll_seconds = poll_seconds
        self.timeout = timeout
        self.offset: int | None = None
        self.decided = 0
        """Presses decided so far (a test or a status line reads it)."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    async def poll_once(self, client: Any) -> int:
        """One getUpdates (waiting up to `poll_seconds` for a press); returns the presses
        handled. Every update read is confirmed by the next call's offset, handled or not."""
        query: dict[str, Any] = {"timeout": self.poll_seconds,
                                 "allowed_updates": ["callback_query"]}
        if self.offset is not None:
            query["offset"] = self.offset
        response = await client.post(f"{self.url}/getUpdates", json=query,
                                     timeout=self.poll_seconds + self.timeout)
        answer = parse_answer(response)
        if not (isinstance(answer, dict) and answer.get("ok") is True
                and isinstance(answer.get("result"), list)):
            raise RuntimeError(f"getUpdates: HTTP {response.status_code}: "
                               f"{str(answer)[:300]}".replace(self.token, "<redacted>"))
        handled = 0
        for update in answer["result"]:
            if not isinstance(update, dict) or not isinstance(update.get("update_id"), int):
                continue
            self.offset = update["update_id"] + 1
            press = update.get("callback_query")
            if isinstance(press, dict):
                handled += await self._press(client, press)
        return handled

    async def _press(self, client: Any, press: dict[str, Any]) -> int:
        message = _mapping(press.get("message"))
        chat = _mapping(message.get("chat"))
        read = read_press(press.get("data"))
        if read is None or str(chat.get("id")) != self.chat_id:
            text, handled = "not a ruflo approval of this chat: nothing was decided", 0
        else:
            approval_id, approve = read
            who = _mapping(press.get("from"))
            name = who.get("username") or who.get("id") or "someone"
            text = await asyncio.to_thread(self.decide, approval_id, approve, f"telegram:{name}")
            handled = 1
            self.decided += 1
        await client.post(f"{self.url}/answerCallbackQuery", timeout=self.timeout,
                          json={"callback_query_id": press.get("id"), "text": text[:200]})
        return handled

    async def run(self, *, retry_seconds: float = 5.0) -> None:
        """Poll until stopped; a failed poll is logged and tried again after `retry_seconds`."""
        import httpx

        async with httpx.AsyncClient() as client:
            while not self._stop.is_set():
                try:
                    await self.poll_once(client)
                except (httpx.HTTPError, RuntimeError) as error:
                    log.warning("telegram buttons: %s; trying again in %g s",
                                str(error).replace(self.token, "<redacted>"), retry_seconds)
                    await asyncio.to_thread(self._stop.wait, retry_seconds)

    def start(self) -> None:
        """Poll in a thread of its own (with its own event loop)."""
        self._thread = threading.Thread(target=lambda: asyncio.run(self.run()),
                                        name="ruflo-telegram-buttons", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop after the poll in flight (at most `poll_seconds`) ends."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout if timeout is not None else self.poll_seconds + 5)


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
