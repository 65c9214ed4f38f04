"""`ruflo mcp --transport http` as a real subprocess on a free loopback port, with its own store:
the MCP server the chat tests add."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from server_thread import free_port
from waiting import wait_until

BIN = Path(sys.executable).parent


@contextmanager
def ruflo_mcp_http(root: Path) -> Iterator[tuple[str, Path]]:
    """(its /mcp URL, its data dir), stopped on exit."""
    data = root / "mcp-data"
    data.mkdir()
    (data / "config.toml").write_text("")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RUFLO_", "OPENAI_", "LITELLM_", "DATABASE_"))}
    env.update(RUFLO_DATA_DIR=str(data), RUFLO_CONFIG=str(data / "config.toml"),
               PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    port = free_port()
    process = subprocess.Popen([str(BIN / "ruflo"), "mcp", "--transport", "http", "--port",
                                str(port)], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)

    def listening() -> bool:
        assert process.poll() is None, f"ruflo mcp exited with {process.returncode}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            return False
        return True

    try:
        wait_until(listening, what=f"ruflo mcp did not listen on {port}")
        yield f"http://127.0.0.1:{port}/mcp", data
    finally:
        process.terminate()
        process.wait(timeout=20)
