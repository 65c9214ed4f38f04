"""Approve/reject buttons in Telegram: the inline keyboard an approval's message carries, and the
poller that reads the presses through the Bot API's getUpdates (long polling: ruflo calls out,
nothing calls in) and answers each with answerCallbackQuery. A person who wants to say why
replies to the approval's message instead ("reject not on Fridays"): the words after the first
reach the agent as the reason, and the bot answers the reply with what happened.
Depends on httpx and notify.transport only; the caller hands in `decide`.

Only presses in the configured chat count: anyone who can press a button there may decide, like
anyone who holds the hive's page. Telegram gives updates to one poller per bot (and none while a
webhook is set), so run one ruflo process with Telegram configured per bot.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Callable
from typing import Any

from ruflo.notify.transport import parse_answer

log = logging.getLogger("ruflo.notify")

PREFIX = "ruflo"
"""callback_data is `ruflo:approve:<approval id>` or `ruflo:reject:<approval id>` (≤ 64 bytes)."""

Decide = Callable[[str, bool, str, str | None], str]
"""decide(approval_id, approve, who, reason) → the words shown to the person who pressed or
replied (e.g. "approved", "already rejected by bob"); called in a worker thread."""

REPLY_HINT = ("Reply to this message with `reject` and why (or `approve`) to tell the agent "
              "your reason.")
"""The last line of an approval's message in Telegram."""

_WORDS = {"approve": True, "approved": True, "yes": True, "ok": True,
          "reject": False, "rejected": False, "no": False, "deny": False}
_ASKED_IN_TEXT = re.compile(r"ruflo approval (?:approve|reject) ([A-Za-z0-9_-]{1,64})")
MAX_REASON = 2000


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
                                 "allowed_updates": ["callback_query", "message"]}
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
            reply = update.get("message")
            if isinstance(reply, dict):
                handled += await self._reply(client, reply)
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
            text = await asyncio.to_thread(self.decide, approval_id, approve, f"telegram:{name}",
                                           None)
            handled = 1
            self.decided += 1
        await client.post(f"{self.url}/answerCallbackQuery", timeout=self.timeout,
                          json={"callback_query_id": press.get("id"), "text": text[:200]})
        return handled

    async def _reply(self, client: Any, message: dict[str, Any]) -> int:
        """A message in the chat: when it replies to an approval's message, decide that approval
        with the reply's first word and the rest as the reason; other messages are not ruflo's."""
        asked = _mapping(message.get("reply_to_message"))
        text = message.get("text")
        if str(_mapping(message.get("chat")).get("id")) != self.chat_id or not asked \
                or not isinstance(text, str):
            return 0
        approval_id = approval_asked(asked)
        if approval_id is None:
            return 0
        first, _, rest = text.strip().partition(" ")
        approve = _WORDS.get(first.strip(".,:;!").lower())
        if approve is None:
            answer, handled = (f"start the reply with approve or reject, then why (not "
                               f"{first[:40]!r}); nothing was decided"), 0
        else:
            who = _mapping(message.get("from"))
            name = who.get("username") or who.get("id") or "someone"
            answer = await asyncio.to_thread(self.decide, approval_id, approve,
                                             f"telegram:{name}",
                                             rest.strip()[:MAX_REASON] or None)
            handled = 1
            self.decided += 1
        await client.post(f"{self.url}/sendMessage", timeout=self.timeout, json={
            "chat_id": self.chat_id, "text": answer[:4000],
            "reply_parameters": {"message_id": message.get("message_id"),
                                 "allow_sending_without_reply": True}})
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


def approval_asked(message: dict[str, Any]) -> str | None:
    """The approval a message of ruflo's asks about: from its buttons, else from the command
    its text names (a client that leaves the keyboard out of a replied-to message)."""
    markup = _mapping(message.get("reply_markup")).get("inline_keyboard")
    if isinstance(markup, list) and markup and isinstance(markup[0], list):
        for button in markup[0]:
            read = read_press(_mapping(button).get("callback_data"))
            if read is not None:
                return read[0]
    text = message.get("text")
    found = _ASKED_IN_TEXT.search(text) if isinstance(text, str) else None
    return found.group(1) if found else None


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
