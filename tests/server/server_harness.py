"""The server tests' harness: a real ruflo server on a free loopback port (uvicorn in a thread),
the ScriptedGateway as the model, and an SSE reader."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from ruflo.config import Settings
from ruflo.gateway.scripted import ScriptedGateway
from ruflo.server.context import ServerContext
from ruflo.store.sql import SqlStore

GATEWAY_KEY = "sk-test"
SCRIPT: dict[str, Any] = {
    "models": ["gpt-4o-mini", "scripted"],
    "keys": [GATEWAY_KEY],
    "cost": 0.0002,
    "rules": [
        {"name": "title", "match": {"system": "title"}, "reply": {"content": "Greetings Exchange"}},
        {"name": "slow", "match": {"last_user": "(?i)long story"},
         "reply": {"content": "once upon a time " * 3000, "chunk": 1}},
        {"name": "hello", "match": {"last_user": "(?i)hello"},
         "reply": {"content": "Hello there, how can I help?", "chunk": 4}},
    ],
    "default": {"echo": True, "chunk": 5},
}


@dataclass
class Served:
    url: str
    store: SqlStore
    gateway: ScriptedGateway
    settings: Settings
    ctx: ServerContext
    client: httpx.Client

    def sse(self, path: str, *, method: str = "GET", until: Callable[[list[dict[str, Any]]],
                                                                     bool] | None = None,
            headers: dict[str, str] | None = None, json_body: Any = None,
            timeout: float = 20.0) -> list[dict[str, Any]]:
        """Read SSE frames (id + parsed data) until the stream ends or `until` says enough."""
        frames: list[dict[str, Any]] = []
        with self.client.stream(method, path, headers=headers, json=json_body,
                                timeout=timeout) as answer:
            assert answer.status_code == 200, answer.read()
            assert answer.headers["content-type"].startswith("text/event-stream")
            for frame in iter_frames(answer.iter_lines()):
                frames.append(frame)
                if until is not None and until(frames):
                    break
        return frames


def iter_frames(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    current: dict[str, Any] = {}
    for line in lines:
        if line == "":
            if "data" in current:
                yield current
            current = {}
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                current["data"] = json.loads(value)
            elif name == "id":
                current["id"] = int(value)
            elif name == "event":
                current["event"] = value


