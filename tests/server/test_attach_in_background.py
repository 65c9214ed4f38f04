"""The server is ready as soon as it listens and the store answers: taking up the running hives
(the runner's attach, which may load big boards) goes on in the background, and neither a slow
nor a failing attach keeps the server from serving or from stopping."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path

import httpx
import pytest

from ruflo.config import load_settings
from ruflo.server import create_app
from ruflo.server.hive_runner import StoreRunner
from ruflo.store import open_store
from ruflo.store.sql import SqlStore
from server_thread import ServerThread
from waiting import wait_until


class SlowAttach(StoreRunner):
    """Attaching takes until `let_go()` (as a board of thousands might)."""

    def __init__(self, store: SqlStore, *, fail: bool = False) -> None:
        super().__init__(store)
        self.fail = fail
        self.started = threading.Event()
        self._go: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.outcome: str | None = None
        self.closed = False

    def let_go(self) -> None:
        """From the test's thread: let the attach finish."""
        assert self._loop is not None
        assert self._go is not None
        self._loop.call_soon_threadsafe(self._go.set)

    async def attach(self) -> None:
        self._go = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self.started.set()
        if self.fail:
            self.outcome = "failed"
            raise RuntimeError("the store said no")
        try:
            await self._go.wait()
            self.outcome = "attached"
        except asyncio.CancelledError:
            self.outcome = "cancelled"
            raise

    async def aclose(self) -> None:
        self.closed = True


def serve(tmp_path: Path, runner_of: type[SlowAttach], **kwargs: bool) -> tuple[ServerThread,
                                                                                SlowAttach, str]:
    settings = load_settings({"RUFLO_DATA_DIR": str(tmp_path), "RUFLO_CONFIG": ""})
    store = open_store(settings)
    runner = runner_of(store, **kwargs)
    thread = ServerThread(create_app(settings, store, None, runner), None)
    return thread, runner, thread.start()


def test_ready_while_the_hives_are_still_being_taken_up(tmp_path: Path) -> None:
    thread, runner, url = serve(tmp_path, SlowAttach)
    try:
        assert runner.started.wait(5)
        answer = httpx.get(f"{url}/readyz", timeout=5)
        assert answer.status_code == 200, answer.text
        assert runner.outcome is None, "attach is still running"
        runner.let_go()
        wait_until(lambda: runner.outcome is not None, what="attach never ended")
        assert runner.outcome == "attached"
    finally:
        thread.stop()
    assert runner.closed


def test_stopping_while_attaching_cancels_it(tmp_path: Path) -> None:
    thread, runner, url = serve(tmp_path, SlowAttach)
    assert runner.started.wait(5)
    assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
    started = time.monotonic()
    thread.stop()
    assert time.monotonic() - started < 10
    assert runner.outcome == "cancelled"
    assert runner.closed, "the runner still stops its engines"


def test_a_failing_attach_is_logged_and_the_server_serves_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="ruflo.server")
    thread, runner, url = serve(tmp_path, SlowAttach, fail=True)
    try:
        assert runner.started.wait(5)
        wait_until(lambda: any("running hives" in r.getMessage() for r in caplog.records),
                   what="the failure was not logged")
        assert httpx.get(f"{url}/readyz", timeout=5).status_code == 200
        assert httpx.get(f"{url}/api/v2/hives", timeout=5).status_code == 200
    finally:
        thread.stop()
    assert runner.outcome == "failed"
