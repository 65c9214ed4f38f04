"""A local stand-in of the Telegram Bot API for tests: sendMessage (kept, with its buttons),
getUpdates (long polling, offsets confirm, as Telegram does) and answerCallbackQuery (kept). A
test presses a message's button with `press`, or replies to a message with `reply`. Starlette under uvicorn, on a loopback port."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from server_thread import ServerThread

TOKEN = "123456:stand-in-token"
CHAT = "4242"


class BotApi:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.answers: list[dict[str, Any]] = []
        self.polls = 0
        self._updates: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._new: asyncio.Event | None = None
        app = Starlette(routes=[Route("/bot{token}/{method}", self._call, methods=["POST"])])
        self.thread = ServerThread(app, None)

    def start(self) -> str:
        self.url = self.thread.start()
        return self.url

    def stop(self) -> None:
        self.thread.stop()

    def press(self, message: dict[str, Any], button: int, *, chat: str = CHAT,
              user: str = "ops", data: str | None = None) -> None:
        """A person presses button `button` (0 approve, 1 reject) under `message` (or a client
        sends `data` as if it were a button's)."""
        if data is None:
            data = message["reply_markup"]["inline_keyboard"][0][button]["callback_data"]
        with self._lock:
            update_id = 1000 + len(self._updates)
            self._updates.append({"update_id": update_id, "callback_query": {
                "id": f"cq{update_id}", "from": {"id": 7, "username": user}, "data": data,
                "message": {"message_id": message["message_id"], "chat": {"id": int(chat)}}}})
        if self._loop is not None and self._new is not None:
            self._loop.call_soon_threadsafe(self._new.set)

    def reply(self, message: dict[str, Any], text: str, *, chat: str = CHAT, user: str = "ops",
              keyboard: bool = True) -> None:
        """A person replies to `message` with `text`; Telegram puts the replied-to message in
        the update (`keyboard`: with its inline keyboard, as sent)."""
        asked = {"message_id": message["message_id"], "chat": {"id": int(CHAT)},
                 "text": message["text"]}
        if keyboard and "reply_markup" in message:
            asked["reply_markup"] = message["reply_markup"]
        with self._lock:
            update_id = 1000 + len(self._updates)
            self._updates.append({"update_id": update_id, "message": {
                "message_id": 500 + update_id, "chat": {"id": int(chat)},
                "from": {"id": 7, "username": user}, "text": text,
                "reply_to_message": asked}})
        if self._loop is not None and self._new is not None:
            self._loop.call_soon_threadsafe(self._new.set)

    async def _call(self, request: Request) -> JSONResponse:
        if request.path_params["token"] != TOKEN:
            return JSONResponse({"ok": False, "error_code": 401,
                                 "description": "Unauthorized"}, status_code=401)
        body = await request.json()
        method = request.path_params["method"]
        if method == "sendMessage":
            with self._lock:
                message = {**body, "message_id": len(self.sent) + 1}
                self.sent.append(message)
            return JSONResponse({"ok": True, "result": {"message_id": message["message_id"]}})
        if method == "answerCallbackQuery":
            self.answers.append(body)
            return JSONResponse({"ok": True, "result": True})
        if method == "getUpdates":
            return JSONResponse({"ok": True, "result": await self._updates_after(body)})
        return JSONResponse({"ok": False, "error_code": 404, "description": "Not Found"},
                            status_code=404)

    async def _updates_after(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        self.polls += 1
        self._loop = asyncio.get_running_loop()
        self._new = self._new or asyncio.Event()
        offset = int(body.get("offset") or 0)
        with self._lock:  # an offset confirms (forgets) every update before it
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        deadline = self._loop.time() + min(float(body.get("timeout") or 0), 2.0)
        while True:
            with self._lock:
                ready = list(self._updates)
            if ready or self._loop.time() >= deadline:
                return ready
            self._new.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new.wait(), deadline - self._loop.time())
