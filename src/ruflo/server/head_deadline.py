"""uvicorn's HTTP protocol (httptools) with a deadline and a size limit for each request head,
which uvicorn lacks: its keep-alive timer runs only between requests, and httptools buffers a
header whole. Bodies are bounded in ruflo.server.guard. Depends on uvicorn only."""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 1024 * 1024
"""Bytes received while a head is incomplete; a read may carry the start of a body with it, so
the limit is well above any real head (browsers send a few KiB)."""

TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain\r\n"
             b"content-length: 43\r\nconnection: close\r\n\r\n"
             b"request head over 1 MiB; nothing was done\r\n")


class HeadDeadlineProtocol(HttpToolsProtocol):
    """HttpToolsProtocol whose request heads must be complete within `head_seconds` of the
    connection opening or of the first byte of the next request on it, and within
    MAX_HEAD_BYTES."""

    head_seconds: float = 15.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_timer: asyncio.TimerHandle | None = None
        self.head_bytes = 0

    def data_received(self, data: bytes) -> None:
        if self.head_timer is not None:
            self.head_bytes += len(data)
            if self.head_bytes > MAX_HEAD_BYTES:
                self._disarm()
                self.transport.write(TOO_LARGE)
                self.transport.close()
                return
        super().data_received(data)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.head_timer is None:
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def _arm(self) -> None:
        self._disarm()
        self.head_bytes = 0
        self.head_timer = self.loop.call_later(self.head_seconds, self._head_too_slow)

    def _disarm(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _head_too_slow(self) -> None:
        self.head_timer = None
        if not self.transport.is_closing():
            self.logger.info("closed a connection whose request head took over %g s",
                             self.head_seconds)
            self.transport.close()


def with_head_deadline(seconds: float) -> type[HeadDeadlineProtocol]:
    """The protocol class for uvicorn's `http` option, with this deadline."""
    return type("HeadDeadlineProtocol", (HeadDeadlineProtocol,), {"head_seconds": seconds})
